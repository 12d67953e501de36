"""Artifact metadata: every ONNX artifact carries its own record in ``metadata_props``.

Values are JSON-encoded strings under plain keys, so any ONNX tool can read them and every
later stage (calibration, engines, verification, bundles) reads the artifact, not a side file.
"""

from __future__ import annotations

import json
import math
import os
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from resnext_deploy.errors import InputError, check_record, shorten

MAX_PROP_CHARS = 1024 * 1024  # one metadata_props value: ours are a few KB; larger is refused before parsing
MAX_INPUT_SIZE = 4096  # pixels per side of the network input; ImageNet models use 160..600
MAX_RESIZE = 8192  # shorter side before the center crop (input_size / crop_pct)
MAX_CLASSES = 100_000
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
Name = Annotated[StrictStr, Field(min_length=1, max_length=512)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class Preprocessing(BaseModel):
    """The eval transform, bounded: the sizes decide how much memory decoding one image takes."""

    model_config = ConfigDict(extra="allow", strict=True)

    input_size: Annotated[StrictInt, Field(ge=1, le=MAX_INPUT_SIZE)]
    crop_pct: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]
    interpolation: Literal[INTERPOLATIONS]  # type: ignore[valid-type]
    mean: Annotated[list[Finite], Field(min_length=3, max_length=3)]
    std: Annotated[list[Annotated[float, Field(gt=0.0, allow_inf_nan=False)]], Field(min_length=3, max_length=3)]

    @field_validator("crop_pct")
    @classmethod
    def _resize_bounded(cls, crop_pct: float, info: Any) -> float:
        size = info.data.get("input_size")
        if size is not None and math.floor(size / crop_pct) > MAX_RESIZE:
            raise ValueError(f"input_size / crop_pct = {size / crop_pct:.0f} exceeds {MAX_RESIZE} pixels")
        return crop_pct


class ArtifactMetadata(BaseModel):
    """The metadata_props readers use, typed and bounded (a bare ONNX file may come from anywhere)."""

    model_config = ConfigDict(extra="allow", strict=True)

    model_name: Name | None = None
    num_classes: Annotated[StrictInt, Field(ge=1, le=MAX_CLASSES)] | None = None
    precision: Literal["fp32", "fp16", "int8"] | None = None
    preprocess: Preprocessing | None = None
    weights: dict[Name, Any] | None = None
    input_name: Name | None = None
    output_name: Name | None = None


class _Claims(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    precision: Literal["fp32", "fp16", "int8"] | None = None


def claimed_precision(metadata: dict[str, Any], where: str) -> str | None:
    """The ``precision`` metadata claims (typed), for readers that need nothing else (building an engine)."""
    return check_record(_Claims, metadata, f"{where} metadata_props", "re-export it with `resnext-deploy export`").precision


def check_metadata(metadata: dict[str, Any], where: str) -> ArtifactMetadata:
    """``metadata`` typed; ``InputError`` (exit 2) naming each mistyped or out-of-bounds field."""
    return check_record(ArtifactMetadata, metadata, f"{where} metadata_props",
                        "the file's metadata was edited or written by another tool; re-export it with `resnext-deploy export`")

from resnext_deploy.onnx_io import load_model


def set_metadata(model: Any, values: dict[str, Any]) -> None:
    """Merge ``values`` into an ``onnx.ModelProto``'s metadata_props (JSON-encoded)."""
    existing = {prop.key: prop for prop in model.metadata_props}
    for key, value in values.items():
        encoded = json.dumps(value, sort_keys=True)
        if key in existing:
            existing[key].value = encoded
        else:
            prop = model.metadata_props.add()
            prop.key, prop.value = key, encoded


def get_metadata(model: Any) -> dict[str, Any]:
    """Decode an ``onnx.ModelProto``'s metadata_props (non-JSON values stay strings)."""
    decoded: dict[str, Any] = {}
    for prop in model.metadata_props:
        if len(prop.value) > MAX_PROP_CHARS or len(prop.key) > MAX_PROP_CHARS:
            raise InputError(f"metadata_props {shorten(repr(prop.key), 80)} is {len(prop.value):,} characters, more than "
                             f"any of ours ({MAX_PROP_CHARS:,})", hint="re-export the model with `resnext-deploy export`")
        try:
            decoded[prop.key] = json.loads(prop.value)
        except json.JSONDecodeError:
            decoded[prop.key] = prop.value
        except RecursionError:
            raise InputError(f"metadata_props {shorten(repr(prop.key), 80)} is nested too deeply to be ours",
                             hint="re-export the model with `resnext-deploy export`") from None
    return decoded


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the metadata of an ONNX file without loading external weight data."""

    return get_metadata(load_model(path))
