"""The tiny ResNeXt zoo entry builds as declared and its in-session training learns the task."""

from __future__ import annotations

import pytest

from resnext_deploy.zoo import get_model_spec
from tests.support.tiny import TINY_SPEC, build_tiny


def test_tiny_spec_builds_with_declared_figures(tiny_spec) -> None:
    import timm
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    assert get_model_spec("resnext_tiny") is tiny_spec is TINY_SPEC
    model = timm.create_model(tiny_spec.timm_name, pretrained=False, num_classes=10, **tiny_spec.timm_kwargs)
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    assert params_m == pytest.approx(tiny_spec.params_m, rel=0.01)
    size = tiny_spec.preprocess.input_size
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        logits = model.eval()(torch.zeros(2, 3, size, size))
    assert logits.shape == (2, 10)
    assert counter.get_total_flops() / 2 / 2 / 1e9 == pytest.approx(tiny_spec.gmacs, rel=0.02)
    grouped = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert len(grouped) == 4 and all(m.groups == 8 for m in grouped)


@pytest.mark.slow
def test_tiny_checkpoint_is_trained_and_loads(tiny_checkpoint, tiny_spec) -> None:
    import torch

    assert tiny_checkpoint.val_accuracy is not None and tiny_checkpoint.val_accuracy >= 0.80
    assert tiny_checkpoint.train_accuracy >= tiny_checkpoint.val_accuracy - 0.05
    state = torch.load(tiny_checkpoint.checkpoint, map_location="cpu", weights_only=True)
    model = build_tiny(tiny_spec)
    model.load_state_dict(state, strict=True)
    running_vars = [v for k, v in state.items() if k.endswith("running_var")]
    assert running_vars and not all(torch.allclose(v, torch.ones_like(v)) for v in running_vars)
