"""Content-keyed cache of calibration statistics, so calibration runs once per model and subset.

An entry is named by the sha256 of its key (FP32 ONNX sha256, manifest sha256, method, method
parameters, ONNX Runtime version); that name is the only lookup. The activation ranges are
written and read by ONNX Runtime's own ``save_tensors_data`` / ``load_tensors_data`` (the file
``quantize_static(calibration_cache_path=...)`` reads); a small record beside it holds the image
count and the key it was made for. Histogram methods also keep their raw histograms in an
``.npz`` side file keyed without the threshold parameter, so another percentile is recomputed
without inference.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from resnext_deploy.errors import DeployError
from resnext_deploy.files import atomic_path, read_json, write_text

CACHE_ENV = "RESNEXT_DEPLOY_CACHE"
STATS_FORMAT = 1
THRESHOLD_PARAMS = frozenset({"percentile", "num_quantized_bins"})
MAX_RECORD_BYTES = 1024 * 1024  # the .record.json beside an entry: an image count and a key
MAX_RANGES_BYTES = 32 * 1024 * 1024  # ~300 bytes per tensor: room for 100k tensors
MAX_TENSORS = 100_000
Number = StrictFloat | StrictInt


class _Float32(BaseModel):
    """One range bound as ORT's ``CalibrationCacheEncoder`` writes a numpy value: a float32 scalar, nothing else."""

    model_config = ConfigDict(extra="forbid", strict=True)

    CLS: Literal["numpy.array"]
    dtype: Literal["float32"]
    data: Number | Annotated[list[Number], Field(min_length=1, max_length=1)]


class _Range(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    CLS: Literal["TensorData"] = "TensorData"
    lowest: Number | _Float32
    highest: Number | _Float32


class _Method(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    CLS: Literal["CalibrationMethod"]
    value: Annotated[StrictStr, Field(max_length=64)]


class RangesFile(BaseModel):
    """A ranges file as our ``save`` writes it through ORT's ``save_tensors_data``: every bound a float32 scalar."""

    model_config = ConfigDict(extra="allow", strict=True)

    CLS: Literal["TensorsData"] = "TensorsData"
    calibration_method: _Method
    data: Annotated[dict[Annotated[StrictStr, Field(max_length=4096)], _Range], Field(min_length=1, max_length=MAX_TENSORS)]


class StatsRecord(BaseModel):
    """The ``.record.json`` beside an entry."""

    model_config = ConfigDict(extra="allow", strict=True)

    image_count: Annotated[StrictInt, Field(ge=1)]
    key: dict[str, Any]


def default_cache_dir() -> Path:
    """``$RESNEXT_DEPLOY_CACHE``, else ``$XDG_CACHE_HOME/resnext-deploy``, else ``~/.cache/resnext-deploy``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "resnext-deploy"


def _onnxruntime_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


@dataclass(frozen=True)
class StatsKey:
    """What calibration statistics depend on: the graph, the images, the method and its parameters."""

    model_sha256: str
    manifest_sha256: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    onnxruntime_version: str = field(default_factory=_onnxruntime_version)

    def to_dict(self) -> dict[str, Any]:
        return {"format": STATS_FORMAT, **asdict(self)}

    def digest(self) -> str:
        """sha256 of the whole key: names the ranges file."""
        return _digest(self.to_dict())

    def histogram_digest(self) -> str:
        """sha256 of the key without threshold parameters: names the histogram file."""
        data = self.to_dict()
        data["params"] = {k: v for k, v in self.params.items() if k not in THRESHOLD_PARAMS}
        return _digest(data)


def _digest(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedStats:
    """Ranges loaded from (or just written to) the cache, with where they live."""

    tensors: Any  # onnxruntime.quantization.calibrate.TensorsData
    path: Path
    image_count: int


class StatsCache:
    """Ranges as ``<root>/calibration/<method>-<digest>.json`` (+ ``.record.json``), histograms as ``...-hist-<digest>.npz``."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.folder = self.root / "calibration"

    def stats_path(self, key: StatsKey) -> Path:
        return self.folder / f"{key.method}-{key.digest()[:24]}.json"

    def record_path(self, key: StatsKey) -> Path:
        return self.stats_path(key).with_suffix(".record.json")

    def histogram_path(self, key: StatsKey) -> Path:
        return self.folder / f"{key.method}-hist-{key.histogram_digest()[:24]}.npz"

    def load(self, key: StatsKey, tensors: frozenset[str] | None = None) -> CachedStats | None:
        """The cached ranges for ``key``, or None on a miss.

        A cache is a hint: an entry is used only when its record names this very key, its sizes are
        bounded, every bound is a float32 scalar and (given ``tensors``, the tensors the calibrator
        measures in this graph) it holds exactly those tensors. Anything else (damaged, partial, another
        model's entry copied here, a hostile dtype) is a miss, which the caller recalibrates and rewrites.
        """
        from onnxruntime.quantization.calibrate import TensorsData

        path = self.stats_path(key)
        try:
            record = StatsRecord.model_validate(read_json(self.record_path(key), None, None, MAX_RECORD_BYTES))
            if record.key != key.to_dict():
                return None
            data = read_json(path, None, None, MAX_RANGES_BYTES)
            RangesFile.model_validate(data)
            if tensors is not None and set(data["data"]) != tensors:
                return None
            return CachedStats(TensorsData.from_dict(data), path, record.image_count)
        except (OSError, ValueError, KeyError, TypeError, DeployError, ValidationError):
            return None

    def save(self, key: StatsKey, tensors: Any, image_count: int) -> CachedStats:
        """Write ranges for ``key`` with ORT's ``save_tensors_data`` (histograms stripped), then the record."""
        from onnxruntime.quantization import TensorData, TensorsData, save_tensors_data

        ranges = TensorsData(
            tensors.calibration_method,
            {name: TensorData(lowest=d.range_value[0], highest=d.range_value[1]) for name, d in tensors.items()},
        )
        path = self.stats_path(key)
        save_tensors_data(ranges, path)  # atomic: a temp file in the same folder, then os.replace
        record = {"image_count": int(image_count), "key": key.to_dict()}
        write_text(self.record_path(key), json.dumps(record, indent=1, sort_keys=True) + "\n")
        return CachedStats(ranges, path, int(image_count))

    def adopt(self, path: str | os.PathLike[str], key: StatsKey, tensors: frozenset[str] | None = None) -> CachedStats | None:
        """Copy a ranges file written by :meth:`save` (an export directory keeps one) into the cache if it is ``key``'s."""
        try:
            text = Path(path).read_text(encoding="utf-8") if Path(path).stat().st_size <= MAX_RANGES_BYTES else "{}"
            if json.loads(text)["resnext_deploy"]["key"] != key.to_dict():
                return None
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            return None
        write_text(self.stats_path(key), text)
        return self.load(key, tensors)

    def load_histograms(self, key: StatsKey) -> tuple[dict[str, tuple[np.ndarray, ...]], int] | None:
        """Raw histograms collected for ``key`` (any threshold parameter) and their image count, or None."""
        path = self.histogram_path(key)
        try:
            with np.load(path, allow_pickle=False) as data:
                names = [str(n) for n in data["names"]]
                arity = int(data["arity"])
                histograms = {
                    name: tuple(data[f"t{i}_{j}"] for j in range(arity)) for i, name in enumerate(names)
                }
                return histograms, int(data["image_count"])
        except (OSError, ValueError, KeyError):
            return None

    def save_histograms(self, key: StatsKey, histograms: dict[str, tuple[Any, ...]], image_count: int) -> Path:
        """Write raw histograms atomically as npz (no pickles)."""
        arrays: dict[str, np.ndarray] = {}
        arity = len(next(iter(histograms.values()))) if histograms else 0
        for i, values in enumerate(histograms.values()):
            for j, value in enumerate(values):
                arrays[f"t{i}_{j}"] = np.asarray(value)
        path = self.histogram_path(key)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(
                    handle,
                    names=np.array(list(histograms), dtype=str),
                    arity=np.array(arity),
                    image_count=np.array(image_count),
                    **arrays,
                )
        return path
