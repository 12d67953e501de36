"""A learnable synthetic 10-class image task written as real ImageNet-layout JPEG folders.

Each class is a colour palette combined with a stripe orientation, drawn as a striped blob at a
random place and scale over a cluttered background, with noise, brightness and hue jitter and a
solid distractor blob; some blobs fall partly outside the center crop. A tiny CNN learns it well
but not perfectly. Images are seeded per (seed, split, class, index), so they never depend on
the order they are written in.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from resnext_deploy.data.datasets import imagenet_wnids

NUM_CLASSES = 10
WIDTH, HEIGHT = 96, 80
PALETTES = (  # (stripe colour A, stripe colour B) per palette, RGB 0..1
    ((0.90, 0.20, 0.15), (0.95, 0.85, 0.20)),
    ((0.15, 0.35, 0.90), (0.90, 0.90, 0.95)),
    ((0.20, 0.75, 0.25), (0.10, 0.15, 0.10)),
    ((0.75, 0.25, 0.80), (0.20, 0.85, 0.85)),
    ((0.95, 0.55, 0.10), (0.25, 0.15, 0.55)),
)
ANGLES = (0.0, 90.0)


def class_wnids() -> list[str]:
    """The ImageNet wnids used as the 10 synthetic classes (canonical indices 0..9)."""
    return list(imagenet_wnids()[:NUM_CLASSES])


def _rng(seed: int, split: str, cls: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(split.encode()), cls, index])


def render(cls: int, rng: np.random.Generator) -> Image.Image:
    """Draw one RGB image of class ``cls`` (palette = cls // 2, orientation = cls % 2)."""
    palette = np.asarray(PALETTES[cls // 2])
    angle = np.deg2rad(ANGLES[cls % 2] + rng.uniform(-44, 44))
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    low = rng.uniform(0.15, 0.75, size=(3, 4, 5))
    background = np.stack([np.asarray(Image.fromarray(c.astype(np.float32)).resize((WIDTH, HEIGHT), Image.BILINEAR)) for c in low], -1)
    image = background + rng.normal(0, 0.08, size=(HEIGHT, WIDTH, 3))
    image = _blob(image, rng, xx, yy, palette=rng.uniform(0.1, 0.9, size=(2, 3)), stripes=False, scale=0.6)
    image = _blob(image, rng, xx, yy, palette=palette, stripes=True, angle=angle)
    image = image * rng.uniform(0.65, 1.3) + rng.normal(0, 0.10, size=image.shape)
    return Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8), "RGB")


def _blob(
    image: np.ndarray, rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray,
    palette: np.ndarray, stripes: bool, angle: float = 0.0, scale: float = 1.0,
) -> np.ndarray:
    cx, cy = rng.uniform(20, WIDTH - 20), rng.uniform(16, HEIGHT - 16)
    rx, ry = rng.uniform(16, 32) * scale, rng.uniform(14, 28) * scale
    inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    colours = palette + rng.normal(0, 0.07, size=palette.shape)
    if stripes:
        period = rng.uniform(6.0, 10.0)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period + rng.uniform(0, 1)
        pick = (np.floor(phase) % 2).astype(bool)
        fill = np.where(pick[..., None], colours[0], colours[1])
    else:
        fill = np.broadcast_to(colours[0], image.shape)
    return np.where(inside[..., None], fill, image)


def _save_jpeg(image: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=90)
    return path


def write_imagefolder(root: Path, split: str, n_per_class: int, seed: int) -> Path:
    """Write ``root/<split>/<wnid>/<wnid>_<i>.JPEG`` for the 10 classes; returns the split folder."""
    folder = Path(root) / split
    for cls, wnid in enumerate(class_wnids()):
        for index in range(n_per_class):
            _save_jpeg(render(cls, _rng(seed, split, cls, index)), folder / wnid / f"{wnid}_{index}.JPEG")
    return folder


@dataclass(frozen=True)
class FlatVal:
    """A flat validation folder, its labels file (if any) and the true labels by file name."""

    folder: Path
    labels_file: Path | None
    labels: dict[str, int]


def write_flat_val(
    root: Path, n_per_class: int, seed: int, labels: str | None = "kaggle", labels_path: Path | None = None
) -> FlatVal:
    """Write ``ILSVRC2012_val_XXXXXXXX.JPEG`` files (classes interleaved) plus a labels file.

    ``labels`` is ``"kaggle"`` (``LOC_val_solution.csv``), ``"text"`` (``val_labels.txt`` with
    ``filename wnid`` lines), ``"index"`` (``filename index`` lines) or None. The labels file
    goes into the folder unless ``labels_path`` says otherwise.
    """
    folder = Path(root)
    wnids = class_wnids()
    order = [(cls, i) for i in range(n_per_class) for cls in range(NUM_CLASSES)]
    np.random.default_rng(seed).shuffle(order)
    truth: dict[str, int] = {}
    for number, (cls, index) in enumerate(order, start=1):
        name = f"ILSVRC2012_val_{number:08d}.JPEG"
        _save_jpeg(render(cls, _rng(seed, "flat", cls, index)), folder / name)
        truth[name] = cls
    if labels is None:
        return FlatVal(folder, None, truth)
    if labels == "kaggle":
        path = labels_path or folder / "LOC_val_solution.csv"
        rows = [f"{Path(n).stem},{wnids[c]} 10 12 60 70 {wnids[c]} 5 5 40 40" for n, c in truth.items()]
        text = "ImageId,PredictionString\n" + "\n".join(rows) + "\n"
    elif labels in ("text", "index"):
        path = labels_path or folder / "val_labels.txt"
        text = "".join(f"{n} {wnids[c] if labels == 'text' else c}\n" for n, c in truth.items())
    else:
        raise ValueError(f"unknown labels kind {labels!r}")
    path.write_text(text)
    return FlatVal(folder, path, truth)


def add_corrupt_jpeg(path: Path, seed: int = 0) -> Path:
    """Write a truncated JPEG (first third of a valid file's bytes) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_jpeg(render(0, _rng(seed, "corrupt", 0, 0)), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def add_grayscale_jpeg(path: Path, cls: int = 0, seed: int = 0) -> Path:
    """Write a single-channel (mode L) JPEG of class ``cls`` at ``path``."""
    return _save_jpeg(render(cls, _rng(seed, "gray", cls, 0)).convert("L"), path)


def add_odd_mode_images(folder: Path, seed: int = 0) -> list[Path]:
    """Write a CMYK JPEG, an RGBA PNG and a palette PNG (modes real ImageNet files have)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = render(1, _rng(seed, "odd", 1, 0))
    paths = [folder / "cmyk.JPEG", folder / "rgba.png", folder / "palette.PNG"]
    base.convert("CMYK").save(paths[0], format="JPEG", quality=90)
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(paths[1], format="PNG")
    base.convert("P").save(paths[2], format="PNG")
    return paths
