"""Image folder layouts, labels files and canonical ImageNet class indices on real JPEG files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from resnext_deploy.data.datasets import class_name, imagenet_wnids, index_to_wnid, scan_images, wnid_to_index
from resnext_deploy.errors import InputError
from tests.support.synthetic import add_grayscale_jpeg, class_wnids


def test_wnid_order_is_timms_canonical_order() -> None:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    assert list(imagenet_wnids()) == list(info.label_names())
    assert wnid_to_index("n01440764") == 0
    assert wnid_to_index("n02099601") == 207
    assert index_to_wnid(999) == "n15075141"
    assert "golden retriever" in class_name(207)


def test_root_with_train_and_val_defaults_to_val(synthetic_imagenet) -> None:
    scan = scan_images(synthetic_imagenet.root)
    assert scan.split == "val"
    assert scan.layout == "imagefolder"
    assert scan.root == synthetic_imagenet.val.resolve()
    assert len(scan.records) == 10 * synthetic_imagenet.val_per_class
    assert scan.class_counts == {i: synthetic_imagenet.val_per_class for i in range(10)}
    assert scan.labelled
    first = scan.records[0]
    assert first.relpath == "n01440764/n01440764_0.JPEG"
    assert first.path == scan.root / first.relpath and first.label == 0


def test_train_split_and_split_folder_directly(synthetic_imagenet) -> None:
    train = scan_images(synthetic_imagenet.root, split="train")
    assert train.split == "train" and len(train.records) == 10 * synthetic_imagenet.train_per_class
    direct = scan_images(synthetic_imagenet.train)
    assert direct.split is None
    assert [(r.relpath, r.label) for r in direct.records] == [(r.relpath, r.label) for r in train.records]


def test_labels_follow_wnid_not_folder_position(tmp_path: Path) -> None:
    wnid = "n02099601"
    add_grayscale_jpeg(tmp_path / wnid / "dog.JPEG")
    add_grayscale_jpeg(tmp_path / "n01440764" / "fish.jpeg")
    scan = scan_images(tmp_path)
    assert {r.relpath: r.label for r in scan.records} == {"n01440764/fish.jpeg": 0, f"{wnid}/dog.JPEG": 207}


def test_extensions_case_insensitive_and_other_files_ignored(tmp_path: Path) -> None:
    for name in ("a.JPEG", "b.jpg", "c.Jpeg", "d.PNG", "e.JPG"):
        add_grayscale_jpeg(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.jpg").write_bytes(b"")
    scan = scan_images(tmp_path)
    assert [r.relpath for r in scan.records] == ["a.JPEG", "b.jpg", "c.Jpeg", "d.PNG", "e.JPG"]


def test_flat_folder_with_kaggle_csv_is_detected(synthetic_imagenet) -> None:
    flat = synthetic_imagenet.flat_kaggle
    assert flat.labels_file is not None and flat.labels_file.name == "LOC_val_solution.csv"
    assert flat.labels_file.read_text().startswith("ImageId,PredictionString\nILSVRC2012_val_00000001,n0")
    scan = scan_images(flat.folder)
    assert scan.layout == "flat" and scan.labels_file == flat.labels_file.resolve()
    assert {r.relpath: r.label for r in scan.records} == flat.labels
    assert scan.records[0].relpath == "ILSVRC2012_val_00000001.JPEG"
    assert scan_images(flat.folder, labels_file=flat.labels_file).records == scan.records


def test_flat_folder_with_text_labels_file(synthetic_imagenet) -> None:
    flat = synthetic_imagenet.flat_text
    assert flat.labels_file is not None and flat.labels_file.parent != flat.folder
    scan = scan_images(flat.folder, labels_file=flat.labels_file)
    assert {r.relpath: r.label for r in scan.records} == flat.labels
    assert scan.labelled


def test_text_labels_with_integer_indices(synthetic_imagenet, tmp_path: Path) -> None:
    flat = synthetic_imagenet.flat_text
    labels = tmp_path / "labels.txt"
    labels.write_text("# name index\n" + "".join(f"{n} {c}\n" for n, c in flat.labels.items()))
    scan = scan_images(flat.folder, labels_file=labels)
    assert {r.relpath: r.label for r in scan.records} == flat.labels


def test_flat_folder_without_labels_is_unlabelled(synthetic_imagenet) -> None:
    scan = scan_images(synthetic_imagenet.flat_text.folder)
    assert scan.layout == "flat" and not scan.labelled
    assert len(scan.records) == len(synthetic_imagenet.flat_text.labels)
    assert {r.label for r in scan.records} == {None}
    assert scan.class_counts == {None: len(scan.records)}


def test_images_missing_from_labels_file_are_ignored_and_listed(synthetic_imagenet, tmp_path: Path) -> None:
    flat = synthetic_imagenet.flat_text
    kept = dict(list(flat.labels.items())[:5])
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{n} {class_wnids()[c]}\n" for n, c in kept.items()))
    scan = scan_images(flat.folder, labels_file=labels, min_label_coverage=0.0)  # opted in: 5 of 30 labelled
    assert {r.relpath for r in scan.records} == set(kept)
    assert len(scan.ignored) == len(flat.labels) - 5


def test_labels_file_naming_missing_files_is_an_input_error(synthetic_imagenet, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("ILSVRC2012_val_00000001.JPEG n01440764\nILSVRC2012_val_99999999.JPEG n01440764\n")
    with pytest.raises(InputError, match="ILSVRC2012_val_99999999") as info:
        scan_images(synthetic_imagenet.flat_text.folder, labels_file=labels)
    assert info.value.exit_code == 2 and info.value.hint


@pytest.mark.parametrize("content", ["x.JPEG n99999999\n", "x.JPEG 1000\n", "x.JPEG cat\n", "x.JPEG\n"])
def test_bad_labels_are_input_errors(tmp_path: Path, content: str) -> None:
    add_grayscale_jpeg(tmp_path / "images" / "x.JPEG")
    labels = tmp_path / "labels.txt"
    labels.write_text(content)
    with pytest.raises(InputError, match="labels.txt:1"):
        scan_images(tmp_path / "images", labels_file=labels)


def test_unknown_wnid_folder_is_an_input_error(tmp_path: Path) -> None:
    add_grayscale_jpeg(tmp_path / "n99999999" / "x.JPEG")
    with pytest.raises(InputError, match="n99999999") as info:
        scan_images(tmp_path)
    assert "wnid" in (info.value.hint or "")


def test_empty_missing_and_file_paths_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no images"):
        scan_images(tmp_path)
    (tmp_path / "n01440764").mkdir()
    with pytest.raises(InputError, match="no images"):
        scan_images(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        scan_images(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        scan_images(tmp_path / "file.txt")
    with pytest.raises(InputError, match="labels file"):
        scan_images(tmp_path, labels_file=tmp_path / "missing.csv")


def test_root_with_only_train_uses_train(synthetic_imagenet, tmp_path: Path) -> None:
    shutil.copytree(synthetic_imagenet.train / "n01440764", tmp_path / "train" / "n01440764")
    scan = scan_images(tmp_path)
    assert scan.split == "train" and scan.class_counts == {0: synthetic_imagenet.train_per_class}
