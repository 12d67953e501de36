"""A tiny timm ResNeXt zoo entry and its in-session training on the synthetic task.

Training reads the JPEGs through :func:`data.preprocess.load_images`, i.e. the exact eval
preprocessing, so an exported model evaluated on the same files sees the same inputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resnext_deploy.data.datasets import scan_images
from resnext_deploy.data.preprocess import load_images
from resnext_deploy.files import atomic_path
from resnext_deploy.zoo import ModelSpec, PreprocessConfig
from tests.support.batchnorm import reestimate_batchnorm

TINY_SPEC = ModelSpec(
    name="resnext_tiny",
    timm_name="resnext50_32x4d",
    pretrained_tag="",
    preprocess=PreprocessConfig(input_size=64, crop_pct=0.875, interpolation="bilinear"),
    params_m=1.01,
    gmacs=0.024,
    top1=None,
    top5=None,
    weights_source="trained in the test session on a synthetic task",
    num_classes=10,
    timm_kwargs=dict(layers=(1, 1, 1, 1), cardinality=8, base_width=4, channels=(32, 64, 128, 256), stem_width=32),
    description="ResNeXt with one bottleneck per stage, for tests (64x64 input, 10 classes)",
)


def build_tiny(spec: ModelSpec = TINY_SPEC):  # type: ignore[no-untyped-def]
    """The untrained timm model of ``spec``."""
    import timm

    return timm.create_model(spec.timm_name, pretrained=False, num_classes=spec.num_classes, **spec.timm_kwargs)


@dataclass(frozen=True)
class TrainResult:
    """Where the trained state_dict went and how well it does (fractions, eval mode)."""

    checkpoint: Path
    train_accuracy: float
    val_accuracy: float | None
    seconds: float
    epochs: int


def _accuracy(model, images: np.ndarray, labels: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    import torch

    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(images[i : i + 128])) for i in range(0, len(images), 128)])
    return float((logits.argmax(1).numpy() == labels).mean())


def train_tiny(
    data_root: Path, out_path: Path, seed: int = 0, epochs: int = 12, batch_size: int = 32, lr: float = 3e-3,
    threads: int = 1,
) -> TrainResult:
    """Train the tiny ResNeXt on ``data_root/train`` (and score ``data_root/val``); save a timm state_dict.

    One intra-op thread by default: on a shared 2-core machine two OpenMP threads measured
    7x slower (wall) than one. The process-wide thread count is restored afterwards.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(Path(data_root), Path(out_path), seed, epochs, batch_size, lr)
    finally:
        torch.set_num_threads(previous)


def _train(data_root: Path, out_path: Path, seed: int, epochs: int, batch_size: int, lr: float) -> TrainResult:
    import torch

    torch.manual_seed(seed)
    start = time.perf_counter()
    cfg = TINY_SPEC.preprocess
    train = load_images(scan_images(data_root, split="train").records, cfg, progress=False)
    assert train.labels is not None
    x = torch.from_numpy(train.array).contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(train.labels)
    model = build_tiny().to(memory_format=torch.channels_last)
    steps_per_epoch = -(-len(x) // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.25)
    generator = torch.Generator().manual_seed(seed)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            batch = _shift(x[idx], generator)
            loss = loss_fn(model(batch), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    reestimate_batchnorm(model, x)  # exact population statistics of the un-augmented train set
    train_acc = _accuracy(model, train.array, train.labels)
    val_acc = None
    if (Path(data_root) / "val").is_dir():
        val = load_images(scan_images(data_root, split="val").records, cfg, progress=False)
        assert val.labels is not None
        val_acc = _accuracy(model, val.array, val.labels)
    model = model.to(memory_format=torch.contiguous_format)
    with atomic_path(out_path) as tmp:
        torch.save(model.state_dict(), tmp)
    return TrainResult(Path(out_path), train_acc, val_acc, time.perf_counter() - start, epochs)


def _shift(batch, generator, max_shift: int = 6):  # type: ignore[no-untyped-def]
    """Light augmentation: a random translation per batch (keeps stripe orientation)."""
    import torch

    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=generator))
    return torch.roll(batch, shifts=(dy, dx), dims=(2, 3)).contiguous(memory_format=torch.channels_last)
