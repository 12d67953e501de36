"""BatchNorm statistics re-estimated on given images: the one copy for the tiny test model, the
quantization tests' random model and the benchmarks' proxy (``bench/proxy_model.py``)."""

from __future__ import annotations

from typing import Any


def reestimate_batchnorm(model: Any, images: Any, batch_size: int = 64) -> Any:
    """Replace every BatchNorm's running statistics by their average over ``images`` (NCHW array or tensor).

    Each layer is reset and accumulates a cumulative average (``momentum=None``) over forward passes
    in train mode, without gradients; momentum is restored and the model returned in eval mode.
    """
    import torch

    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    model.train()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            model(torch.as_tensor(images[start : start + batch_size]))
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    return model.eval()
