"""The statistics cache stores ranges with ONNX Runtime's own save/load and finds them by content key alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from resnext_deploy.calibration.stats_cache import StatsCache, StatsKey


@pytest.fixture
def tensors():  # type: ignore[no-untyped-def]
    """ORT calibrator-like output: ranges plus histogram fields the cache must strip."""
    from onnxruntime.quantization import CalibrationMethod, TensorData, TensorsData

    data = {
        name: TensorData(lowest=np.float32(-i - 0.5), highest=np.float32(i + 1.25), hist=np.arange(4),
                         hist_edges=np.linspace(-1, 1, 5, dtype=np.float32))
        for i, name in enumerate(("conv_out", "relu_out"))
    }
    return TensorsData(CalibrationMethod.Percentile, data)


def _key(**changes: object) -> StatsKey:
    fields = {"model_sha256": "a" * 64, "manifest_sha256": "m", "method": "percentile",
              "params": {"num_bins": 2048, "percentile": 99.999}} | changes
    return StatsKey(**fields)  # type: ignore[arg-type]


def test_round_trip_through_onnxruntime_save_and_load(tmp_path: Path, tensors) -> None:  # type: ignore[no-untyped-def]
    from onnxruntime.quantization import CalibrationMethod, load_tensors_data

    cache = StatsCache(tmp_path)
    saved = cache.save(_key(), tensors, image_count=7)
    loaded = cache.load(_key())
    assert loaded is not None and loaded.path == saved.path and loaded.image_count == 7
    assert loaded.tensors.calibration_method == CalibrationMethod.Percentile
    for name, data in tensors.items():
        assert loaded.tensors[name].range_value == pytest.approx(data.range_value)  # float32 survives JSON exactly
        assert not hasattr(loaded.tensors[name], "hist")
    assert load_tensors_data(saved.path).keys() == tensors.keys()  # the entry is ORT's file, as ORT reads it


def test_another_key_is_a_miss_and_a_damaged_entry_is_a_miss(tmp_path: Path, tensors) -> None:  # type: ignore[no-untyped-def]
    cache = StatsCache(tmp_path)
    saved = cache.save(_key(), tensors, image_count=7)
    assert cache.load(_key(manifest_sha256="other")) is None
    assert cache.load(_key(params={"num_bins": 2048, "percentile": 99.9})) is None
    saved.path.write_text("{not json")
    assert cache.load(_key()) is None
    cache.save(_key(), tensors, image_count=7)
    cache.record_path(_key()).unlink()  # ranges without their record: a partial entry
    assert cache.load(_key()) is None
