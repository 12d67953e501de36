"""A cache is a hint: another model's entry copied under a key, a hostile dtype, a missing tensor or a malformed
sensitivity result is a miss that is recalibrated (or re-analysed) and rewritten, never used and never a crash."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from resnext_deploy.calibration.quantize import QuantizeConfig, quantize_int8
from tests.calibration.quant_support import smooth_images


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, copy_random_tiny) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """Two tiny models of one architecture (same tensor names), different weights."""
    import onnx
    from onnx import numpy_helper

    folder = tmp_path_factory.mktemp("models")
    b = copy_random_tiny(folder, "b.onnx")
    proto = onnx.load(str(b))
    weights = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weights.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights) * 1.5, weights.name))
    onnx.save(proto, str(folder / "a.onnx"))
    return folder / "a.onnx", b


def _quantize(model: Path, cache: Path, images: np.ndarray | None = None):  # type: ignore[no-untyped-def]
    return quantize_int8(model, model.with_name(model.stem + ".int8.onnx"), images if images is not None else smooth_images(8, seed=2),
                         QuantizeConfig(manifest_sha256="m", method="minmax", cache_dir=cache, progress=False))


def _entry(result) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    stats = Path(result.stats_file)
    return stats, stats.with_suffix(".record.json")


def test_another_models_entry_copied_under_this_key_is_a_miss_and_rewritten(models, tmp_path: Path) -> None:
    a, b = models
    cache = tmp_path / "cache"
    own = _entry(_quantize(b, cache))
    foreign = _entry(_quantize(a, cache))
    for source, target in zip(foreign, own):
        shutil.copyfile(source, target)
    again = _quantize(b, cache)
    assert again.stats_cache_hit is False and again.stats_source == "calibrated"
    assert json.loads(own[1].read_text())["key"]["model_sha256"] != json.loads(foreign[1].read_text())["key"]["model_sha256"]
    assert _quantize(b, cache).stats_cache_hit is True  # the rewritten entry is b's own


def _edit_ranges(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _hostile_dtype(data: dict) -> None:
    bound = next(iter(data["data"].values()))
    bound["highest"] = {"CLS": "numpy.array", "dtype": "(300000000,)f4", "data": [1.0]}


def _one_tensor_less(data: dict) -> None:
    data["data"].pop(next(iter(data["data"])))


def _extra_tensor(data: dict) -> None:
    data["data"]["not_in_this_graph"] = next(iter(data["data"].values()))


def _string_bound(data: dict) -> None:
    next(iter(data["data"].values()))["lowest"] = "-1"


@pytest.fixture(scope="module")
def calibrated(models, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A cache holding b's statistics entry, calibrated once (read-only: copy it), and the entry's path in it."""
    cache = tmp_path_factory.mktemp("calibrated") / "cache"
    stats, _ = _entry(_quantize(models[1], cache))
    return cache, stats.relative_to(cache)


# ~2 s each under tracemalloc: the hostile dtype (the allocation this guards against) also runs in `-m "not slow"`
MALFORMED = [_hostile_dtype, *(pytest.param(edit, marks=pytest.mark.slow)
                               for edit in (_one_tensor_less, _extra_tensor, _string_bound))]


@pytest.mark.parametrize("edit", MALFORMED)
def test_a_malformed_entry_is_a_miss_that_allocates_nothing_and_is_rewritten(models, calibrated, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                            edit) -> None:
    _, b = models
    cache = Path(shutil.copytree(calibrated[0], tmp_path / "cache"))
    stats = cache / calibrated[1]
    _edit_ranges(stats, edit)
    tracemalloc.start()
    try:
        again = _quantize(b, cache)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert again.stats_cache_hit is False and again.stats_source == "calibrated"
    assert peak < 300 * 1024 * 1024  # (300000000,)f4 would allocate 1.2 GB
    assert _quantize(b, cache).stats_cache_hit is True  # rewritten
