"""The PIL/numpy eval transform against timm's own, and parallel loading with corrupt files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnext_deploy.data.datasets import ImageRecord, scan_images
from resnext_deploy.data.preprocess import iter_batches, load_images, preprocess_image
from resnext_deploy.errors import InputError, UsageError
from resnext_deploy.zoo import PreprocessConfig
from tests.support.synthetic import add_corrupt_jpeg, add_odd_mode_images

TINY_CFG = PreprocessConfig(input_size=64, crop_pct=0.875, interpolation="bilinear")


def _photo_like(path: Path, width: int, height: int, seed: int) -> Path:
    """A real-size JPEG with smooth regions, edges and noise (like a photo, for resampling)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(height // 25 + 2, width // 25 + 2, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    image[height // 3 : height // 2, width // 4 : width // 2] = rng.integers(0, 256, size=3)
    image += rng.integers(-25, 26, size=image.shape, dtype=np.int16)
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, format="JPEG", quality=92)
    return path


def _timm_reference(image: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    from timm.data import create_transform

    transform = create_transform(
        input_size=cfg.input_size, crop_pct=cfg.crop_pct, interpolation=cfg.interpolation,
        mean=cfg.mean, std=cfg.std, is_training=False,
    )
    return transform(image.convert("RGB")).numpy()


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (333, 500), (256, 256)])
@pytest.mark.parametrize(
    "cfg",
    [
        PreprocessConfig(interpolation="bicubic"),
        PreprocessConfig(interpolation="bilinear"),
        PreprocessConfig(interpolation="bicubic", crop_pct=0.95),
        PreprocessConfig(input_size=288, crop_pct=1.0, interpolation="bicubic"),
        TINY_CFG,
    ],
    ids=["bicubic", "bilinear", "bicubic-0.95", "288-1.0", "tiny"],
)
def test_matches_timm_eval_transform(tmp_path: Path, size: tuple[int, int], cfg: PreprocessConfig) -> None:
    path = _photo_like(tmp_path / "photo.JPEG", *size, seed=size[0])
    ours = preprocess_image(path, cfg)
    reference = _timm_reference(Image.open(path), cfg)
    assert ours.dtype == np.float32 and ours.shape == (3, cfg.input_size, cfg.input_size)
    assert np.abs(ours - reference).max() <= 1e-6


def test_other_image_modes_become_rgb_like_timm(tmp_path: Path) -> None:
    paths = add_odd_mode_images(tmp_path)
    gray = tmp_path / "gray.JPEG"
    _photo_like(tmp_path / "rgb.JPEG", 200, 150, seed=1)
    Image.open(tmp_path / "rgb.JPEG").convert("L").save(gray)
    for path in [*paths, gray]:
        assert Image.open(path).mode != "RGB"
        ours = preprocess_image(path, TINY_CFG)
        assert ours.shape == (3, 64, 64)
        assert np.abs(ours - _timm_reference(Image.open(path), TINY_CFG)).max() <= 1e-6


def test_unknown_interpolation_is_a_usage_error(tmp_path: Path) -> None:
    path = _photo_like(tmp_path / "p.JPEG", 100, 80, seed=0)
    with pytest.raises(UsageError, match="interpolation"):
        preprocess_image(path, PreprocessConfig(interpolation="cubic-ish"))


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_load_images_keeps_order_and_matches_single_image_path(synthetic_imagenet, executor: str) -> None:
    records = scan_images(synthetic_imagenet.root).records[::7]
    result = load_images(list(reversed(records)), TINY_CFG, workers=2, progress=False, executor=executor)
    assert result.array.shape == (len(records), 3, 64, 64) and result.array.dtype == np.float32
    assert result.records == list(reversed(records)) and not result.skipped
    assert result.labels is not None and result.labels.tolist() == [r.label for r in reversed(records)]
    for row, record in zip(result.array, result.records):
        np.testing.assert_array_equal(row, preprocess_image(record.path, TINY_CFG))


def test_corrupt_image_is_skipped_and_listed(synthetic_imagenet) -> None:
    scan = scan_images(synthetic_imagenet.messy)
    names = {r.relpath for r in scan.records}
    corrupt = synthetic_imagenet.corrupt.relative_to(synthetic_imagenet.messy).as_posix()
    gray = synthetic_imagenet.grayscale.relative_to(synthetic_imagenet.messy).as_posix()
    assert {corrupt, gray} <= names
    result = load_images(scan.records, TINY_CFG, workers=2, progress=False)
    assert [name for name, _ in result.skipped] == [corrupt]
    assert "truncated" in result.skipped[0][1] or "OSError" in result.skipped[0][1]
    assert len(result) == len(scan.records) - 1 == result.array.shape[0]
    assert corrupt not in {r.relpath for r in result.records} and gray in {r.relpath for r in result.records}
    with pytest.raises(InputError, match="corrupt.JPEG") as info:
        load_images(scan.records, TINY_CFG, workers=2, progress=False, strict=True)
    assert info.value.exit_code == 2


def test_all_corrupt_or_no_images_is_an_input_error(tmp_path: Path) -> None:
    records = [ImageRecord(add_corrupt_jpeg(tmp_path / f"{i}.JPEG", seed=i), f"{i}.JPEG", None) for i in range(3)]
    (tmp_path / "text.JPEG").write_text("not a jpeg")
    records.append(ImageRecord(tmp_path / "text.JPEG", "text.JPEG", None))
    with pytest.raises(InputError, match="every image"):
        load_images(records, TINY_CFG, workers=2, progress=False)
    with pytest.raises(InputError, match="no images"):
        load_images([], TINY_CFG, progress=False)


def test_iter_batches_equals_load_images(synthetic_imagenet, tmp_path: Path) -> None:
    folder = tmp_path / "mix"
    shutil.copytree(synthetic_imagenet.messy, folder)
    records = scan_images(folder).records
    whole = load_images(records, TINY_CFG, workers=2, progress=False)
    batches = list(iter_batches(records, TINY_CFG, batch_size=4, workers=2, progress=False))
    assert sum(len(b) for b in batches) == len(whole)
    np.testing.assert_array_equal(np.concatenate([b.array for b in batches]), whole.array)
    assert [s for b in batches for s in b.skipped] == whole.skipped
    with pytest.raises(InputError, match="corrupt"):
        list(iter_batches(records, TINY_CFG, batch_size=4, workers=2, progress=False, strict=True))
