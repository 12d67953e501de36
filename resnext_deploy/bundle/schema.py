"""The fields of manifest.json and preprocess.json, typed and bounded (pydantic), checked before anything is used.

A bundle comes from elsewhere: every field a reader relies on must be present, of the right type
and within sane bounds (an ``input_size`` of 100000 would make ``predict`` allocate tens of GB)
before a byte is allocated for it. Unknown extra fields are kept (newer packers may add some).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, field_validator

from resnext_deploy.errors import InputError

MAX_INPUT_SIZE = 4096  # pixels per side of the network input; ImageNet models use 160..600
MAX_RESIZE = 8192  # shorter side before the center crop (input_size / crop_pct)
MAX_CLASSES = 100_000
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
DTYPES = ("float32", "float16", "int8", "uint8")

Name = Annotated[StrictStr, Field(min_length=1, max_length=512)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    name: Name
    num_classes: Annotated[StrictInt, Field(ge=1, le=MAX_CLASSES)]
    weights: dict[str, Any] = Field(default_factory=dict)
    random_weights: StrictBool


class _Tensor(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    name: Name
    shape: Annotated[list[StrictInt | StrictStr], Field(min_length=1, max_length=8)]
    dtype: Literal[DTYPES]  # type: ignore[valid-type]


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


class _Artifacts(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: Name
    fp32: Name
    preprocess: Name
    classes: Name


class BundleManifest(BaseModel):
    """What readers of manifest.json rely on (schema, version and the file list are checked before this)."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: _Model
    precision: Literal["fp32", "fp16", "int8"]
    artifacts: _Artifacts
    input: _Tensor
    output: _Tensor
    preprocessing: Preprocessing
    toolchain: dict[str, Any] = Field(default_factory=dict)
    targets: list[dict[str, Any]] = Field(default_factory=list)


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:4]:
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        problems.append(f"{where}: {error['msg']}" + (f" (got {error['input']!r})" if error["type"] != "missing" else ""))
    more = f"; and {len(exc.errors()) - 4} more" if len(exc.errors()) > 4 else ""
    return "; ".join(problems) + more


def check_manifest_fields(manifest: dict[str, Any], where: str, hint: str) -> None:
    """``InputError`` naming every missing, mistyped or out-of-bounds field the readers use."""
    try:
        BundleManifest.model_validate(manifest)
    except ValidationError as exc:
        raise InputError(f"{where} is malformed: {_describe(exc)}", hint=hint) from None


def check_preprocessing(data: Any, where: str, hint: str) -> Preprocessing:
    """The validated eval transform of preprocess.json (or a manifest's ``preprocessing``)."""
    try:
        return Preprocessing.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{where} is not a valid preprocessing config: {_describe(exc)}", hint=hint) from None
