"""Typed pieces the engines' sidecars share: bounded text, and a file a sidecar vouches for."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

Text = Annotated[StrictStr, Field(max_length=1024)]
Sha256 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]


class FileRecord(BaseModel):
    """A file a sidecar vouches for: its name beside the sidecar, sha256, size and mtime."""

    model_config = ConfigDict(extra="allow", strict=True)

    path: Text
    sha256: Sha256
    size: Annotated[StrictInt, Field(ge=0)]
    mtime_ns: StrictInt | None = None
