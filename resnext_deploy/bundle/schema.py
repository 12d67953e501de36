"""The fields of manifest.json and preprocess.json, typed and bounded (pydantic), checked before anything is used.

A bundle comes from elsewhere: every field a reader relies on must be present, of the right type
and within sane bounds (an ``input_size`` of 100000 would make ``predict`` allocate tens of GB)
before a byte is allocated for it. Unknown extra fields are kept (newer packers may add some).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from resnext_deploy.errors import InputError, describe_validation
from resnext_deploy.metadata import (  # noqa: F401 - the bounds and the transform are the metadata's, re-exported
    INTERPOLATIONS,
    MAX_CLASSES,
    MAX_INPUT_SIZE,
    MAX_RESIZE,
    Name,
    Preprocessing,
)

DTYPES = ("float32", "float16", "int8", "uint8")

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
    return describe_validation(exc)


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
