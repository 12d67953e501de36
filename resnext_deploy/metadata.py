"""Artifact metadata: every ONNX artifact carries its own record in ``metadata_props``.

Values are JSON-encoded strings under plain keys, so any ONNX tool can read them and every
later stage (calibration, engines, verification, bundles) reads the artifact, not a side file.
"""

from __future__ import annotations

import json
import os
from typing import Any

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
        try:
            decoded[prop.key] = json.loads(prop.value)
        except json.JSONDecodeError:
            decoded[prop.key] = prop.value
    return decoded


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the metadata of an ONNX file without loading external weight data."""

    return get_metadata(load_model(path))
