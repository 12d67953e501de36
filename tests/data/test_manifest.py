"""Subset selection (deterministic, stratified), manifest round trips and the non-overlap check."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest

from resnext_deploy.data.datasets import ImageRecord, scan_images
from resnext_deploy.data.manifest import Manifest, check_disjoint, select_subset
from resnext_deploy.errors import InputError, UsageError


@pytest.fixture()
def train_scan(synthetic_imagenet):
    return scan_images(synthetic_imagenet.root, split="train")


def _manifest(scan, size: int = 30, seed: int = 0) -> Manifest:
    subset = select_subset(scan.records, size, seed)
    return Manifest.from_records(subset, root=scan.root, layout=scan.layout, seed=seed, split=scan.split)


def test_subset_is_deterministic_regardless_of_listing_order(train_scan) -> None:
    reference = select_subset(train_scan.records, 37, seed=3)
    shuffled = list(train_scan.records)
    random.Random(99).shuffle(shuffled)
    assert select_subset(shuffled, 37, seed=3) == reference
    assert select_subset(list(reversed(train_scan.records)), 37, seed=3) == reference
    assert len(reference) == 37 and len({r.relpath for r in reference}) == 37


def test_different_seed_gives_a_different_subset(train_scan) -> None:
    a = {r.relpath for r in select_subset(train_scan.records, 30, seed=0)}
    b = {r.relpath for r in select_subset(train_scan.records, 30, seed=1)}
    assert a != b


@pytest.mark.parametrize("size", [7, 10, 25, 123])
def test_subset_is_class_stratified(train_scan, size: int) -> None:
    counts = Counter(r.label for r in select_subset(train_scan.records, size, seed=5))
    assert sum(counts.values()) == size
    per_class = [counts.get(label, 0) for label in range(10)]
    assert max(per_class) - min(per_class) <= 1


def test_small_classes_run_out_and_others_fill_in() -> None:
    records = [ImageRecord(Path(f"/x/{c}_{i}.JPEG"), f"{c}_{i}.JPEG", c) for c in range(3) for i in range(1 + 4 * c)]
    counts = Counter(r.label for r in select_subset(records, 10, seed=0))
    assert counts == {0: 1, 1: 4, 2: 5} or counts == {0: 1, 1: 5, 2: 4}


def test_subset_larger_than_folder_exclude_and_bad_size(train_scan) -> None:
    assert len(select_subset(train_scan.records, 10_000, seed=0)) == len(train_scan.records)
    excluded = {r.relpath for r in select_subset(train_scan.records, 50, seed=0)}
    rest = select_subset(train_scan.records, 10_000, seed=0, exclude=excluded)
    assert len(rest) == len(train_scan.records) - 50 and not excluded & {r.relpath for r in rest}
    with pytest.raises(UsageError):
        select_subset(train_scan.records, 0, seed=0)


def test_unlabelled_records_form_one_class(synthetic_imagenet) -> None:
    scan = scan_images(synthetic_imagenet.flat_text.folder)
    subset = select_subset(scan.records, 8, seed=0)
    assert len(subset) == 8 and {r.label for r in subset} == {None}


def test_manifest_round_trip_and_portable_hash(train_scan, tmp_path: Path) -> None:
    manifest = _manifest(train_scan)
    path = manifest.write(tmp_path / "calibration_manifest.json")
    data = json.loads(path.read_text())
    assert data["schema"] and data["version"] == 1 and data["count"] == 30 and data["sha256"] == manifest.sha256
    again = Manifest.read(path)
    assert again == manifest and again.sha256 == manifest.sha256
    moved = Manifest(root="/elsewhere", layout=manifest.layout, seed=manifest.seed, entries=manifest.entries)
    assert moved.sha256 == manifest.sha256
    assert _manifest(train_scan, seed=1).sha256 != manifest.sha256
    resolved = again.resolve(train_scan.root)
    assert [(r.relpath, r.label) for r in resolved] == [(e.relpath, e.label) for e in manifest.entries]


def test_a_manifest_is_never_empty(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no images"):
        Manifest.from_records([], root=tmp_path, layout="imagefolder", seed=0)


def test_manifest_resolves_in_a_copied_folder(train_scan, tmp_path: Path) -> None:
    manifest = _manifest(train_scan, size=12)
    copy = tmp_path / "copy"
    shutil.copytree(train_scan.root, copy)
    records = manifest.resolve(copy)
    assert all(r.path.is_relative_to(copy.resolve()) for r in records)


def test_changed_or_missing_file_is_detected(train_scan, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(train_scan.root, copy)
    manifest = _manifest(scan_images(copy), size=12)
    victim = copy / manifest.entries[3].relpath
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(InputError, match="sha256 mismatch") as info:
        manifest.resolve(copy)
    assert manifest.entries[3].relpath in str(info.value)
    victim.unlink()
    with pytest.raises(InputError, match="missing") as info:
        manifest.resolve(copy)
    assert manifest.entries[3].relpath in str(info.value)


@pytest.mark.parametrize(
    "content",
    ["{not json", json.dumps({"schema": "other"}), json.dumps([1, 2]), "EDITED", "NOVERSION"],
)
def test_bad_manifest_files_are_input_errors(train_scan, tmp_path: Path, content: str) -> None:
    path = tmp_path / "m.json"
    data = _manifest(train_scan, size=5).to_dict()
    if content == "EDITED":
        data["entries"][0]["label"] = 9 if data["entries"][0]["label"] != 9 else 8
        content = json.dumps(data)
    elif content == "NOVERSION":
        data.pop("version")
        content = json.dumps(data)
    path.write_text(content)
    with pytest.raises(InputError) as info:
        Manifest.read(path)
    assert info.value.exit_code == 2 and info.value.hint
    with pytest.raises(InputError, match="does not exist"):
        Manifest.read(tmp_path / "absent.json")


def test_disjoint_subsets_pass(train_scan) -> None:
    manifest = _manifest(train_scan)
    rest = select_subset(train_scan.records, 40, seed=0, exclude=manifest.relpaths)
    check_disjoint(manifest, rest)


def test_overlap_by_path_is_an_input_error(train_scan) -> None:
    manifest = _manifest(train_scan)
    same = [r for r in train_scan.records if r.relpath == manifest.entries[0].relpath]
    with pytest.raises(InputError, match="also calibration images") as info:
        check_disjoint(manifest, same + select_subset(train_scan.records, 5, seed=9, exclude=manifest.relpaths))
    assert manifest.entries[0].relpath in str(info.value)


def test_overlap_by_content_is_an_input_error(train_scan, tmp_path: Path) -> None:
    manifest = _manifest(train_scan)
    source = train_scan.root / manifest.entries[1].relpath
    twin = tmp_path / "renamed.JPEG"
    shutil.copyfile(source, twin)
    with pytest.raises(InputError, match="same content") as info:
        check_disjoint(manifest, [ImageRecord(twin, "renamed.JPEG", None)])
    assert manifest.entries[1].relpath in str(info.value)


def test_val_split_never_overlaps_a_train_manifest(synthetic_imagenet, train_scan) -> None:
    check_disjoint(_manifest(train_scan, size=50), scan_images(synthetic_imagenet.root).records)


def test_tuning_slice_round_trips_and_keeps_the_statistics_key(train_scan, tmp_path: Path) -> None:
    manifest = _manifest(train_scan)
    held_out = [r for r in train_scan.records if r.relpath not in manifest.relpaths]
    tuned = manifest.with_tuning(select_subset(held_out, 12, seed=0))
    assert len(tuned.tuning) == 12 and tuned.sha256 == manifest.sha256  # the statistics cache key is unchanged
    assert tuned.tuning_sha256 and manifest.tuning_sha256 is None
    again = Manifest.read(tuned.write(tmp_path / "manifest.json"))
    assert again == tuned and len(again.tuning_records(train_scan.root)) == 12
    data = json.loads((tmp_path / "manifest.json").read_text())
    data["tuning"]["entries"].pop()
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="was edited"):
        Manifest.read(tmp_path / "manifest.json")


def test_tuning_images_are_never_calibration_images(train_scan, tmp_path: Path) -> None:
    manifest = _manifest(train_scan)
    calibration = [r for r in train_scan.records if r.relpath in manifest.relpaths]
    with pytest.raises(InputError, match="also calibration images"):
        manifest.with_tuning(calibration[:2])
    twin = tmp_path / "twin.JPEG"
    shutil.copyfile(calibration[0].path, twin)
    with pytest.raises(InputError, match="also calibration images"):
        manifest.with_tuning([ImageRecord(twin, "elsewhere/twin.JPEG", None)])


def test_evaluation_overlapping_the_tuning_slice_is_an_input_error(train_scan) -> None:
    manifest = _manifest(train_scan)
    held_out = [r for r in train_scan.records if r.relpath not in manifest.relpaths]
    tuning = select_subset(held_out, 10, seed=0)
    tuned = manifest.with_tuning(tuning)
    rest = [r for r in held_out if r.relpath not in {t.relpath for t in tuning}]
    check_disjoint(tuned, rest)
    with pytest.raises(InputError, match="also tuning images"):
        check_disjoint(tuned, rest[:5] + tuning[:1])
