"""Content-keyed cache of sensitivity analyses, next to the statistics cache.

An analysis depends on the statistics it quantizes with (their key: FP32 sha256, calibration
manifest sha256, method and parameters, ONNX Runtime version), the tuning images (their sha256 in
the manifest), the recipe and the number of probe images; a second export of the same model with
another accuracy target reads it back instead of analysing again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from resnext_deploy.calibration.stats_cache import StatsKey, default_cache_dir
from resnext_deploy.errors import DeployError
from resnext_deploy.files import read_json, write_text

SENSITIVITY_FORMAT = 3  # 2: the latency cost model (layer edges); 3: every number on the probe images, sites from cuts
MAX_ENTRY_BYTES = 16 * 1024 * 1024  # ~300 bytes per layer and per site: room for tens of thousands of each
MAX_ITEMS = 100_000
Name = Annotated[StrictStr, Field(max_length=4096)]
Number = StrictFloat | StrictInt


class _Layer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name
    label: Name
    op_type: Name
    position: Annotated[StrictInt, Field(ge=0)]
    cost_share: Number
    output_nsr: Number
    local_sqnr_db: Number | None
    weight_sqnr_db: Number | None
    rank: Annotated[StrictInt, Field(ge=0)] = 0
    cosine_drop: Number | None = None


class _Site(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    index: Annotated[StrictInt, Field(ge=0)]
    kind: Literal["activation", "weight"]
    tensor: Name
    requesters: Annotated[list[Name], Field(max_length=MAX_ITEMS)]
    follows: Annotated[StrictInt, Field(ge=0)] | None
    output_nsr: Number


class SensitivityRecord(BaseModel):
    """The ``result`` of an entry, typed and bounded as ``SensitivityResult.to_dict`` writes it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    recipe: Name
    method: Name
    layers: Annotated[list[_Layer], Field(max_length=MAX_ITEMS)]
    sites: Annotated[list[_Site], Field(max_length=MAX_ITEMS)]
    tuning_images: Annotated[StrictInt, Field(ge=0)]
    probe_images: Annotated[StrictInt, Field(ge=0)]
    full_int8: dict[Name, Number]
    seconds: Number
    key: Name = ""
    cache_hit: StrictBool = False
    extra: dict[Name, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class SensitivityKey:
    """Everything a sensitivity analysis depends on."""

    stats: StatsKey
    tuning_sha256: str
    recipe: dict[str, Any]
    probe_images: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SENSITIVITY_FORMAT,
            "stats": self.stats.to_dict(),
            "tuning_sha256": self.tuning_sha256,
            "recipe": self.recipe,
            "probe_images": self.probe_images,
            **self.extra,
        }

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode("utf-8")).hexdigest()


class SensitivityCache:
    """Analyses as ``<root>/sensitivity/<recipe>-<digest>.json``."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.folder = self.root / "sensitivity"

    def path(self, key: SensitivityKey) -> Path:
        return self.folder / f"{key.recipe.get('name', 'recipe')}-{key.digest()[:24]}.json"

    def load(self, key: SensitivityKey) -> dict[str, Any] | None:
        """The cached analysis (as written by :meth:`save`) or None: an entry larger than any analysis, not for this
        key, or whose result is not typed as ``SensitivityResult.to_dict`` writes it is a miss (and is rewritten)."""
        try:
            payload = read_json(self.path(key), None, None, MAX_ENTRY_BYTES)
            if not isinstance(payload, dict) or payload.get("key") != key.to_dict():
                return None
            SensitivityRecord.model_validate(payload.get("result"))
            return dict(payload["result"])
        except (OSError, ValueError, KeyError, TypeError, DeployError, ValidationError):
            return None

    def save(self, key: SensitivityKey, result: dict[str, Any]) -> Path:
        """Write an analysis atomically."""
        path = self.path(key)
        write_text(path, json.dumps({"key": key.to_dict(), "result": result}, indent=1) + "\n")
        return path
