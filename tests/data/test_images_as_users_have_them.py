"""Images and labels as users have them: 16-bit PNGs, decompression bombs, partial or conflicting labels,
and calibration that decodes its subset batch by batch while it calibrates."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnext_deploy.data.datasets import ImageRecord, scan_images
from resnext_deploy.data.preprocess import load_images, preprocess_image
from resnext_deploy.errors import InputError
from resnext_deploy.zoo import PreprocessConfig

CFG = PreprocessConfig(input_size=32, crop_pct=1.0, interpolation="bilinear")


def test_16_bit_grayscale_png_is_scaled_like_an_8_bit_one(tmp_path: Path) -> None:
    wide = (np.linspace(0, 65535, 48 * 40).reshape(40, 48)).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert Image.open(tmp_path / "wide.png").mode.startswith("I")
    narrow = ((wide.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)  # torchvision: x * 255 / 65535
    Image.fromarray(narrow, "L").save(tmp_path / "narrow.png")
    got, expected = preprocess_image(tmp_path / "wide.png", CFG), preprocess_image(tmp_path / "narrow.png", CFG)
    np.testing.assert_array_equal(got, expected)
    white = (1.0 - np.asarray(CFG.mean)) / np.asarray(CFG.std)
    assert float(np.mean(np.isclose(got, white[:, None, None], atol=1e-3))) < 0.1  # not the 99.6% white of convert("RGB")


def test_oversized_images_are_skipped_with_a_reason_and_no_warning(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    records = []
    for name, side in (("ok.png", 30), ("warned.png", 40), ("refused.png", 50)):  # 900, 1600 (> limit), 2500 (> 2x)
        Image.new("RGB", (side, side), (20, 120, 200)).save(tmp_path / name)
        records.append(ImageRecord(tmp_path / name, name, None))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_images(records, CFG, workers=2, progress=False)
    assert [r.relpath for r in loaded.records] == ["ok.png"]
    assert [name for name, _ in loaded.skipped] == ["warned.png", "refused.png"]
    assert all("too large, a possible decompression bomb" in reason for _, reason in loaded.skipped)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def _flat(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / "flat"
    folder.mkdir()
    for index in range(count):
        Image.new("RGB", (8, 8), (index, 0, 0)).save(folder / f"img{index:02d}.png")
    return folder


def test_labels_coverage_is_reported_and_enforced(tmp_path: Path) -> None:
    folder = _flat(tmp_path, 30)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"img{i:02d}.png {i % 10}\n" for i in range(5)))
    with pytest.raises(InputError, match=r"labels only 5 of the 30 images .* \(17%, below 90%\)"):
        scan_images(folder, labels)
    scan = scan_images(folder, labels, min_label_coverage=0.0)
    assert len(scan.records) == 5 and len(scan.ignored) == 25 and "labels for 5 of 30 images" in scan.describe()
    labels.write_text("".join(f"img{i:02d}.png {i % 10}\n" for i in range(28)))
    assert scan_images(folder, labels).label_coverage == pytest.approx(28 / 30)


def test_conflicting_duplicate_labels_are_refused(tmp_path: Path) -> None:
    folder = _flat(tmp_path, 3)
    labels = tmp_path / "labels.txt"
    labels.write_text("img00.png 1\nimg01.png 2\nimg02.png 3\nimg00.png 1\n")  # the same pair twice is harmless
    assert [r.label for r in scan_images(folder, labels).records] == [1, 2, 3]
    labels.write_text("img00.png 1\nimg01.png 2\nimg02.png 3\nimg00.png 4\n")
    with pytest.raises(InputError, match="conflicting labels for 'img00.png': line 1 says n01443537, line 4 says n01494475"):
        scan_images(folder, labels)
    labels.write_text("img00.png 1\nimg01.png 2\nimg02.png 3\nimg00 5\n")  # the same image by stem
    with pytest.raises(InputError, match="gives img00.png two labels"):
        scan_images(folder, labels)
    labels.write_bytes("img00.png 1\nimg01.png 2 \xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8 text"):
        scan_images(folder, labels)


def test_calibration_decodes_batch_by_batch_while_it_calibrates(random_fp32_export_dir, synthetic_imagenet, tmp_path,  # type: ignore[no-untyped-def]
                                                                monkeypatch) -> None:
    """The subset is never decoded whole: calibration starts after one decode batch, and decodes the rest as it goes."""
    import onnxruntime
    from PIL import ImageFile

    from resnext_deploy.export import CalibrationOptions, ExportOptions, run_export

    decoded = {"count": 0}
    seen_at_inference: list[int] = []
    real_load, real_run = ImageFile.ImageFile.load, onnxruntime.InferenceSession.run

    def counting_load(self):  # type: ignore[no-untyped-def]
        decoded["count"] += bool(self.tile)  # a decode still pending (later calls return the loaded pixels)
        return real_load(self)

    def recording_run(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen_at_inference.append(decoded["count"])
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    monkeypatch.setattr(onnxruntime.InferenceSession, "run", recording_run)
    options = ExportOptions(
        model="resnext_tiny", precision="int8", backend="onnxruntime", weights="random",
        fp32_from=random_fp32_export_dir / "model.onnx", output=tmp_path / "int8", build_engine=False,
        calibration=CalibrationOptions(data=synthetic_imagenet.train, size=100, method="minmax", cache_dir=tmp_path / "cache",
                                       decode_batch=8),
    )
    _, report = run_export(options)
    calibration_runs = [count for count in seen_at_inference if count > 0]
    assert report.calibration.size == 100 and decoded["count"] == 100
    assert calibration_runs[0] <= 2 * 16  # one calibration chunk (16) from at most two decode batches, not 100 images
    assert len(set(calibration_runs)) > 3  # decoding went on between calibration runs


def test_class_names_are_timms_without_importing_it() -> None:
    """predict names classes from timm's bundled lemma file; ImageNetInfo (which imports torch) gives the same."""
    from timm.data import ImageNetInfo

    from resnext_deploy.data.datasets import class_name

    info = ImageNetInfo()
    assert [class_name(i) for i in range(1000)] == [info.index_to_description(i) for i in range(1000)]
