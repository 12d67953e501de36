"""A small sample image folder for the offline demo: natural-looking JPEGs in ImageFolder layout.

Each class folder is a real ImageNet-1k wnid; images are smooth colour fields with soft shapes,
seeded per (seed, class, index), so the same call always writes the same files. They only
exercise the pipeline (calibration, verification, prediction); they are not ImageNet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resnext_deploy.data.datasets import imagenet_wnids
from resnext_deploy.files import atomic_path

SIZE = (160, 128)  # (width, height), smaller than the 224 crop is fine: preprocessing resizes


def _image(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    width, height = SIZE
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = base + rng.normal(0, 0.08, 3)
    ground = base[::-1] * 0.8 + rng.normal(0, 0.08, 3)
    horizon = height * rng.uniform(0.35, 0.7) + 8 * np.sin(xx / rng.uniform(12, 30) + rng.uniform(0, 6))
    image = np.where((yy < horizon)[..., None], sky, ground) * (0.75 + 0.25 * (yy / height))[..., None]
    for _ in range(int(rng.integers(1, 4))):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(10, 40)
        blob = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))[..., None]
        image = image * (1 - blob) + rng.uniform(0, 1, 3) * blob
    image += rng.normal(0, 0.03, image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def write_sample_images(root: Path, classes: int = 8, per_class: int = 8, seed: int = 0) -> Path:
    """Write ``root/<wnid>/<wnid>_<i>.JPEG`` for the first ``classes`` ImageNet classes; return ``root``."""
    from PIL import Image

    root = Path(root)
    wnids = imagenet_wnids()
    for cls in range(classes):
        wnid = wnids[cls * (len(wnids) // classes)]
        base = np.random.default_rng([seed, cls]).uniform(0.1, 0.9, 3)
        for index in range(per_class):
            path = root / wnid / f"{wnid}_{index}.JPEG"
            pixels = _image(np.random.default_rng([seed, cls, index]), base)
            with atomic_path(path) as tmp:
                Image.fromarray(pixels, "RGB").save(tmp, format="JPEG", quality=90)
    return root
