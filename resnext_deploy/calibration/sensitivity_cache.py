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
from typing import Any

from resnext_deploy.calibration.stats_cache import StatsKey, default_cache_dir
from resnext_deploy.files import write_text

SENSITIVITY_FORMAT = 2  # 2: the latency cost model (layer edges) is part of the analysis


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
        """The cached analysis (as written by :meth:`save`) or None; a damaged or foreign file is a miss."""
        try:
            payload = json.loads(self.path(key).read_text(encoding="utf-8"))
            if payload["key"] != key.to_dict():
                return None
            return dict(payload["result"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, key: SensitivityKey, result: dict[str, Any]) -> Path:
        """Write an analysis atomically."""
        path = self.path(key)
        write_text(path, json.dumps({"key": key.to_dict(), "result": result}, indent=1) + "\n")
        return path
