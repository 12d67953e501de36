"""The switchable Q/DQ model reproduces ONNX Runtime's quantizer for any set of layers left in float."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from resnext_deploy.calibration.qdq_switch import MASK_INPUT, build_switchable
from resnext_deploy.calibration.quantize import QuantizeConfig, prepare_quantization
from tests.calibration.quant_support import smooth_images


@pytest.fixture(scope="module")
def random_tiny(tmp_path_factory: pytest.TempPathFactory, copy_random_tiny) -> Path:  # type: ignore[no-untyped-def]
    return copy_random_tiny(tmp_path_factory.mktemp("switch"))


def _run(model, images: np.ndarray, mask: np.ndarray | None = None, optimize: bool = False) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Logits; optimizations off by default, so a Q/DQ graph runs as written (fake quantization in float)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"input": images} if mask is None else {"input": images, MASK_INPUT: mask}
    return session.run(None, feed)[0]


@pytest.mark.parametrize("recipe", ["onnxruntime", "tensorrt"])
def test_switched_sites_match_the_quantizer_with_nodes_excluded(random_tiny: Path, tmp_path: Path, recipe: str) -> None:
    images = smooth_images(8, seed=3)
    with prepare_quantization(random_tiny, smooth_images(16, seed=2), QuantizeConfig(manifest_sha256="switch", method="minmax", recipe=recipe, cache_dir=tmp_path, progress=False)) as setup:
        full, _ = setup.quantize(represent=False)
        prepared = setup.prepared_model()
        switchable = build_switchable(full, prepared, setup.recipe.output_quant_excluded, setup.recipe_excluded)
        branched = build_switchable(full, prepared, setup.recipe.output_quant_excluded, setup.recipe_excluded,
                                    weights="branch")
        reference = _run(prepared, images)
        scale = float(np.abs(reference).max())
        # every site off is the FP32 model (folded Relus re-applied), every site on the full INT8 model
        assert np.abs(_run(switchable.model, images, switchable.mask([])) - reference).max() <= 1e-5 * scale
        assert np.abs(_run(switchable.model, images, switchable.mask(switchable.layers)) - _run(full, images)).max() <= 1e-5 * scale
        rng = random.Random(0)
        for _ in range(3):
            in_float = rng.sample(switchable.layers, len(switchable.layers) // 3)
            quantized, _ = setup.quantize(in_float, represent=False)
            simulated = _run(switchable.model, images, switchable.mask(set(switchable.layers) - set(in_float)))
            # same Q/DQ pairs, same scales: equal up to float rounding (the quantization noise itself is ~1e-2)
            assert np.abs(simulated - _run(quantized, images)).max() <= 1e-4 * scale
            # the If-branched graph (what the analysis runs, ORT optimizations on) computes the same
            mask = branched.mask(set(branched.layers) - set(in_float))
            assert np.abs(_run(branched.model, images, mask, optimize=True) - simulated).max() <= 1e-4 * scale
    assert {site.kind for site in switchable.sites} == {"activation", "weight"}
    assert all(site.requesters or site.follows is not None for site in switchable.sites)
