"""Cutting the switchable graph between blocks: each site runs from its cut, with the same logits as the whole graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from resnext_deploy.calibration.graph_cuts import data_nodes, extract, single_tensor_cuts
from resnext_deploy.calibration.qdq_switch import MASK_INPUT, build_switchable
from resnext_deploy.calibration.quantize import QuantizeConfig, prepare_quantization
from resnext_deploy.calibration.sensitivity import FULL_INT8, _session, nsr, plan_cuts, run_masks
from tests.calibration.quant_support import smooth_images


@pytest.fixture(scope="module")
def random_tiny(copy_random_tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    return copy_random_tiny(tmp_path_factory.mktemp("cuts"))


def test_cuts_are_the_block_boundaries_of_the_fp32_graph(random_tiny: Path) -> None:
    import onnx

    model = onnx.load(random_tiny)
    nodes = data_nodes(model, "input")
    cuts = single_tensor_cuts(model, "input")
    assert cuts[0].position == 0 and cuts[0].tensor == "input"
    # between two residual blocks exactly one tensor is live: the output of the block's last Relu
    adds = [index for index, node in enumerate(nodes) if node.op_type == "Add"]
    assert adds, "the tiny ResNeXt has residual Adds"
    for position in adds:
        relu = nodes[position + 1]
        assert relu.op_type == "Relu"
        assert any(cut.position == position + 2 and cut.tensor == relu.output[0] for cut in cuts)
    # inside a block the shortcut is live beside the branch: no cut between a block's first conv and its Add
    first_conv = next(index for index, node in enumerate(nodes) if node.op_type == "Conv" and index > adds[0])
    assert not any(first_conv < cut.position <= adds[1] for cut in cuts)


def test_part_after_a_cut_computes_the_rest_of_the_graph(random_tiny: Path) -> None:
    import onnx

    model = onnx.load(random_tiny)
    cut = single_tensor_cuts(model, "input")[len(single_tensor_cuts(model, "input")) // 2]
    images = smooth_images(4, seed=5)
    head = _session(extract(model, ["input"], [cut.tensor]), 1).run(None, {"input": images})[0]
    tail = _session(extract(model, [cut.tensor], ["logits"]), 1).run(None, {cut.tensor: head})[0]
    whole = _session(model, 1).run(None, {"input": images})[0]
    np.testing.assert_allclose(tail, whole, rtol=1e-5, atol=1e-5 * float(np.abs(whole).max()))


@pytest.mark.parametrize("recipe", ["openvino", "tensorrt"])
def test_every_site_from_its_cut_equals_the_whole_switchable_graph(random_tiny: Path, tmp_path: Path, recipe: str) -> None:
    images = smooth_images(6, seed=3)
    config = QuantizeConfig(manifest_sha256="cuts", method="minmax", recipe=recipe, cache_dir=tmp_path, progress=False)
    with prepare_quantization(random_tiny, smooth_images(16, seed=2), config) as setup:
        full, _ = setup.quantize(represent=False)
        branched = build_switchable(full, setup.prepared_model(), setup.recipe.output_quant_excluded,
                                    setup.recipe_excluded, weights="branch")
    masks = {site.index: branched.site_mask([site.index]) for site in branched.sites}
    masks[FULL_INT8] = branched.mask(branched.layers)
    masks["none"] = branched.mask([])
    cut_logits = run_masks(branched.model, "input", images, masks, threads=2)
    one_at_a_time = run_masks(branched.model, "input", images, masks, threads=2, parallel=False)
    for key in masks:  # side by side on one core each, or one after another on both: the same kernels, bitwise
        np.testing.assert_array_equal(cut_logits[key], one_at_a_time[key])
    session = _session(branched.model, 1)
    assert cut_logits.keys() == masks.keys()
    reference = session.run(None, {"input": images, MASK_INPUT: masks["none"]})[0]
    scale = float(np.abs(reference).max())
    # every site off: the FP32 graph, from its parts; equal up to float rounding
    np.testing.assert_allclose(cut_logits["none"], reference, rtol=0, atol=1e-5 * scale)
    worst = 0.0
    for key, mask in masks.items():
        whole = session.run(None, {"input": images, MASK_INPUT: mask})[0]
        noise, cut_noise = nsr(reference, whole), nsr(reference, cut_logits[key])
        if key != "none":
            worst = max(worst, abs(cut_noise - noise) / noise)
    # the parts compute in another order (fused, blocked layouts): a value on a rounding boundary may land one
    # quantization step over, so the noise a site causes moves a little, never its size
    assert worst < 0.05, worst
    plan = plan_cuts(branched.model, "input", masks)
    assert len(plan) >= 3, "the runs really start from several cuts"
    assert plan[0][0].position == 0 and FULL_INT8 in plan[0][1] and "none" in plan[0][1]
    assert sorted(key for _, keys in plan for key in keys if isinstance(key, int)) == sorted(range(len(branched.sites)))


def test_cuts_with_few_masks_each_share_parts_and_no_part_starts_too_early(
    random_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real ResNeXt has a cut per block and a few sites per block: the plan gathers the masks of consecutive cuts
    into parts of at least 1/MAX_CUTS of them, each from the first of its cuts, instead of running every mask from the
    input (which made each site pass the whole network)."""
    from resnext_deploy.calibration import sensitivity

    config = QuantizeConfig(manifest_sha256="cuts", method="minmax", recipe="openvino", cache_dir=tmp_path, progress=False)
    with prepare_quantization(random_tiny, smooth_images(16, seed=2), config) as setup:
        full, _ = setup.quantize(represent=False)
        branched = build_switchable(full, setup.prepared_model(), setup.recipe.output_quant_excluded,
                                    setup.recipe_excluded, weights="branch")
    masks = {site.index: branched.site_mask([site.index]) for site in branched.sites}
    monkeypatch.setattr(sensitivity, "MAX_CUTS", len(masks))  # every cut its own part
    own = plan_cuts(branched.model, "input", masks)
    largest = max(len(keys) for _, keys in own)
    assert len(own) >= 3 and len(masks) >= 3 * largest
    monkeypatch.setattr(sensitivity, "MAX_CUTS", len(masks) / (largest + 0.5))  # every cut alone is too small
    plan = plan_cuts(branched.model, "input", masks)
    threshold = largest + 0.5
    assert len(plan) >= 2, "consecutive cuts' masks gathered into parts, not all into the first"
    assert all(len(keys) >= threshold for _, keys in plan[:-1])
    first_cut = {key: cut.position for cut, keys in own for key in keys}
    for cut, keys in plan:  # a mask runs from its own cut or an earlier one, never a later one
        assert all(cut.position <= first_cut[key] for key in keys)
    assert sorted(key for _, keys in plan for key in keys) == sorted(masks)
