"""Stand-ins for a trained ResNeXt when no pretrained weights can be downloaded; two named proxies.

``benchmark``: random timm weights with each residual branch's last BatchNorm scaled to
``residual_gamma`` and all BatchNorm statistics re-estimated on images with natural-image
statistics. timm initialises that scale to 0 (the branches then add nothing, so quantizing them is
never exercised); trained networks end with small values. At 1.0 every branch adds unit variance
to the stream and the random network turns chaotic: even FP16 then loses more than 1e-4 of logits
cosine, unlike any trained model.

``harsh``: the same, but each residual branch's last BatchNorm gets per-channel scales drawn from
|N(0, 0.25)|, as trained networks have: a few channels of the residual stream are much larger than
the rest, which per-tensor INT8 activations represent badly, and the error spreads over many layers
(the case mixed-precision fallback is for).
"""

from __future__ import annotations

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)
DEFAULT_RESIDUAL_GAMMA = 0.2
HARSH_RESIDUAL_STD = 0.25
PROXIES = ("benchmark", "harsh")


def natural_images(count: int, size: int, seed: int) -> np.ndarray:
    """Normalized (N,3,H,W) float32 images: pink-noise texture plus dead-leaves discs."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0
    yy, xx = np.mgrid[0:size, 0:size]
    mixing = np.array([[1.0, 0.0, 0.0], [0.85, 0.5, 0.0], [0.7, 0.3, 0.6]], dtype=np.float32)
    out = np.empty((count, 3, size, size), dtype=np.float32)
    for i in range(count):
        alpha = rng.uniform(0.8, 1.3)
        spectrum = (rng.standard_normal((3,) + radius.shape) + 1j * rng.standard_normal((3,) + radius.shape)) / radius**alpha
        texture = np.fft.irfft2(spectrum, s=(size, size)).astype(np.float32)
        texture = np.einsum("ij,jhw->ihw", mixing, texture)
        texture = (texture - texture.mean()) / (texture.std() + 1e-6) * rng.uniform(0.08, 0.2)
        image = np.broadcast_to(rng.uniform(0.2, 0.8, (3, 1, 1)), (3, size, size)).copy()
        for _ in range(rng.integers(5, 25)):
            cy, cx = rng.uniform(0, size, 2)
            r = size * rng.uniform(0.03, 0.35)
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            image[:, mask] = rng.uniform(0.0, 1.0, (3, 1))
        out[i] = np.clip(image + texture, 0.0, 1.0)
    return (out - MEAN) / STD


def build_proxy(  # type: ignore[no-untyped-def]
    bn_images: np.ndarray, residual_gamma: float = DEFAULT_RESIDUAL_GAMMA, seed: int = 0,
    model_name: str = "resnext50d_32x4d", proxy: str = "benchmark", **timm_kwargs: object,
):
    """``model_name`` (timm) with random weights, scaled residual branches and BN re-estimated on ``bn_images``.

    ``proxy="harsh"`` draws each residual branch's per-channel scale from |N(0, 0.25)| instead of
    setting all of them to ``residual_gamma``. ``timm_kwargs`` go to ``timm.create_model`` (a zoo entry's
    ``num_classes`` and ``timm_kwargs``).
    """
    import timm
    import torch

    from tests.support.batchnorm import reestimate_batchnorm  # the bench scripts put the repository on sys.path

    if proxy not in PROXIES:
        raise ValueError(f"unknown proxy {proxy!r}; choose one of {PROXIES}")
    torch.manual_seed(seed)
    model = timm.create_model(model_name, pretrained=False, zero_init_last=False, **timm_kwargs)
    scales = torch.Generator().manual_seed(seed + 1)
    for module in model.modules():
        if type(module).__name__ == "Bottleneck":
            if proxy == "harsh":
                with torch.no_grad():
                    drawn = torch.randn(module.bn3.weight.shape, generator=scales) * HARSH_RESIDUAL_STD
                    module.bn3.weight.copy_(drawn.abs())
            else:
                torch.nn.init.constant_(module.bn3.weight, residual_gamma)
    return reestimate_batchnorm(model, bn_images, batch_size=32)
