"""ImageNet image folders: find the images and their class indices in the layouts users have.

Layouts: ImageFolder (``root/<wnid>/*.JPEG``, or a root holding ``train/`` and ``val/``), and a
flat folder with a labels file (Kaggle ``LOC_val_solution.csv`` or ``filename label`` lines) or
without one (unlabelled, fine for calibration). Class indices are positions in the sorted list
of the 1000 ImageNet-1k WordNet ids that timm and torchvision weights use.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from resnext_deploy.errors import InputError, UsageError

IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".png"})
KAGGLE_LABELS_NAME = "LOC_val_solution.csv"
TEXT_LABELS_NAMES = ("val_labels.txt", "labels.txt")
SPLITS = ("train", "val")
# A labels file naming fewer of the folder's images than this is refused (evaluation would silently
# shrink to the labelled ones); ``min_label_coverage=0`` (``--allow-partial-labels``) accepts any.
MIN_LABEL_COVERAGE = 0.9
_WNID = re.compile(r"^n\d{8}$")


@dataclass(frozen=True)
class ImageRecord:
    """One image: absolute path, path relative to the scanned root, class index (or None)."""

    path: Path
    relpath: str
    label: int | None


@dataclass(frozen=True)
class ScanResult:
    """What :func:`scan_images` found: the image root, its layout and the sorted records."""

    root: Path
    layout: str
    records: list[ImageRecord]
    split: str | None = None
    labels_file: Path | None = None
    ignored: list[str] = field(default_factory=list)  # images of the folder the labels file does not name

    @property
    def label_coverage(self) -> float:
        """Fraction of the folder's images that have a label (1.0 for folder layouts)."""
        total = len(self.records) + len(self.ignored)
        return len(self.records) / total if total else 1.0

    @property
    def labelled(self) -> bool:
        """True when every record has a class index."""
        return all(record.label is not None for record in self.records)

    @property
    def class_counts(self) -> dict[int | None, int]:
        """Images per class index (None for unlabelled images)."""
        return dict(sorted(Counter(r.label for r in self.records).items(), key=lambda kv: _label_key(kv[0])))

    def describe(self) -> str:
        """One line for logs and reports."""
        where = f"{self.root}" + (f" (split '{self.split}')" if self.split else "")
        classes = len([k for k in self.class_counts if k is not None])
        labels = f"{classes} classes" if self.labelled else "unlabelled"
        if self.labels_file is not None:
            labels += f", labels for {len(self.records)} of {len(self.records) + len(self.ignored)} images"
        return f"{len(self.records)} images, {self.layout} layout, {labels}, in {where}"


def _label_key(label: int | None) -> tuple[int, int]:
    return (1, 0) if label is None else (0, label)


def _timm_info_file(name: str) -> Path:
    """Path of a file in timm's bundled ``timm/data/_info`` (found without importing torch)."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("timm is not installed; it provides the ImageNet class list", hint="pip install timm")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / "_info" / name
        if candidate.is_file():
            return candidate
    raise InputError(f"timm has no bundled {name}", hint="upgrade timm (>=1.0)")


@functools.lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids in canonical (sorted) class-index order, from timm."""
    lines = _timm_info_file("imagenet_synsets.txt").read_text().split()
    if len(lines) != 1000:
        raise InputError(f"timm's imagenet_synsets.txt has {len(lines)} entries, expected 1000")
    return tuple(lines)


@functools.lru_cache(maxsize=1)
def _wnid_index() -> dict[str, int]:
    return {wnid: index for index, wnid in enumerate(imagenet_wnids())}


def wnid_to_index(wnid: str) -> int:
    """Class index of a WordNet id; unknown ids are an :class:`InputError`."""
    try:
        return _wnid_index()[wnid]
    except KeyError:
        raise InputError(
            f"'{wnid}' is not one of the 1000 ImageNet-1k WordNet ids",
            hint="class folders and labels must use ImageNet-1k wnids such as n01440764",
        ) from None


def index_to_wnid(index: int) -> str:
    """WordNet id of a class index."""
    return imagenet_wnids()[index]


@functools.lru_cache(maxsize=1)
@functools.lru_cache(maxsize=1)
def _lemmas() -> dict[str, str]:
    """wnid -> lemma from timm's bundled ``imagenet_synset_to_lemma.txt``, read without importing timm
    (``timm.data.ImageNetInfo`` would import torch: ~300 MB and seconds for a device that only predicts)."""
    lemmas = {}
    for line in _timm_info_file("imagenet_synset_to_lemma.txt").read_text(encoding="utf-8").splitlines():
        wnid, _, lemma = line.partition("\t")
        lemmas[wnid] = lemma
    return lemmas



def class_name(index: int) -> str:
    """Human-readable class name of an ImageNet-1k class index (timm's lemmas, as ``ImageNetInfo`` gives them)."""
    return _lemmas()[index_to_wnid(index)]


def is_image(path: Path) -> bool:
    """True for a visible file whose extension (any case) is a supported image type."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def scan_images(
    path: str | Path, labels_file: str | Path | None = None, split: str = "val",
    min_label_coverage: float = MIN_LABEL_COVERAGE,
) -> ScanResult:
    """Find the images under ``path`` and their labels; see the module docstring for layouts.

    A root holding ``train/`` and ``val/`` resolves to ``split`` (``val`` by default, for
    evaluation); the chosen split is returned in :attr:`ScanResult.split`. A labels file that
    names fewer than ``min_label_coverage`` of a flat folder's images is an ``InputError``.
    """
    if split not in SPLITS:
        raise UsageError(f"unknown split '{split}'", hint=f"use one of {', '.join(SPLITS)}")
    root = Path(path).expanduser()
    if not root.exists():
        raise InputError(f"image folder {root} does not exist", hint="pass the folder holding your ImageNet images")
    if not root.is_dir():
        raise InputError(f"{root} is not a folder", hint="pass the folder holding the images, not a file")
    root = root.resolve()
    if labels_file is not None:
        return _check_coverage(_scan_flat(root, _existing_file(labels_file), None), min_label_coverage)
    chosen = _pick_split(root, split)
    if chosen is not None:
        return _check_coverage(_scan_root(root / chosen, chosen), min_label_coverage)
    return _check_coverage(_scan_root(root, None), min_label_coverage)


def _check_coverage(scan: ScanResult, minimum: float) -> ScanResult:
    if scan.labels_file is None or scan.label_coverage >= minimum:
        return scan
    total = len(scan.records) + len(scan.ignored)
    raise InputError(
        f"{scan.labels_file.name} labels only {len(scan.records)} of the {total} images in {scan.root} "
        f"({scan.label_coverage:.0%}, below {minimum:.0%}); the others would be left out silently "
        f"(unlabelled: {', '.join(scan.ignored[:3])}{', ...' if len(scan.ignored) > 3 else ''})",
        hint=f"use the labels file of this folder, or pass --allow-partial-labels to use the {len(scan.records)} labelled images",
    )


def _existing_file(path: str | Path) -> Path:
    labels = Path(path).expanduser()
    if not labels.is_file():
        raise InputError(f"labels file {labels} does not exist", hint="pass a LOC_val_solution.csv or 'filename label' file")
    return labels.resolve()


def _pick_split(root: Path, split: str) -> str | None:
    present = [name for name in SPLITS if (root / name).is_dir()]
    if not present:
        return None
    return split if split in present else present[0]


def _scan_root(root: Path, split: str | None) -> ScanResult:
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    with_images = [d for d in class_dirs if any(is_image(f) for f in d.iterdir())]
    if with_images:
        return _scan_imagefolder(root, with_images, split)
    for name in (KAGGLE_LABELS_NAME, *TEXT_LABELS_NAMES):
        if (root / name).is_file():
            return _scan_flat(root, root / name, split)
    return _scan_flat(root, None, split)


def _scan_imagefolder(root: Path, class_dirs: list[Path], split: str | None) -> ScanResult:
    unknown = [d.name for d in class_dirs if d.name not in _wnid_index()]
    if unknown:
        raise InputError(
            f"{len(unknown)} class folder(s) in {root} are not ImageNet-1k WordNet ids: {', '.join(unknown[:5])}",
            hint="an ImageFolder needs one folder per wnid (e.g. n01440764); for a flat folder pass --labels",
        )
    records = [
        ImageRecord(path=f, relpath=f.relative_to(root).as_posix(), label=wnid_to_index(d.name))
        for d in class_dirs
        for f in sorted(d.iterdir())
        if is_image(f)
    ]
    return ScanResult(root=root, layout="imagefolder", records=records, split=split)


def _scan_flat(root: Path, labels_file: Path | None, split: str | None) -> ScanResult:
    images = sorted((f for f in root.iterdir() if is_image(f)), key=lambda f: f.name)
    if not images:
        raise InputError(
            f"no images (.jpeg/.jpg/.png) in {root}",
            hint="pass an ImageFolder (one folder per wnid) or a flat folder of images",
        )
    if labels_file is None:
        records = [ImageRecord(path=f, relpath=f.name, label=None) for f in images]
        return ScanResult(root=root, layout="flat", records=records, split=split)
    labels = read_labels_file(labels_file)
    by_name = {f.name: f for f in images}
    by_stem = {f.stem: f for f in images}
    found: dict[Path, tuple[str, int]] = {}
    missing: list[str] = []
    for name, label in labels.items():
        image = by_name.get(Path(name).name) or by_stem.get(Path(name).name)
        if image is None:
            missing.append(name)
        elif image in found and found[image][1] != label:
            other, other_label = found[image]
            raise InputError(
                f"{labels_file.name} gives {image.name} two labels: {other!r} -> {index_to_wnid(other_label)}, "
                f"{name!r} -> {index_to_wnid(label)}",
                hint="keep one label per image in the labels file",
            )
        else:
            found.setdefault(image, (name, label))
    if missing:
        raise InputError(
            f"{len(missing)} file(s) named in {labels_file.name} are not in {root}: {', '.join(missing[:5])}",
            hint="point the labels file at the folder holding those images",
        )
    records = sorted(
        (ImageRecord(path=image, relpath=image.name, label=label) for image, (_, label) in found.items()),
        key=lambda r: r.relpath,
    )
    listed = {r.relpath for r in records}
    ignored = [f.name for f in images if f.name not in listed]
    return ScanResult(root=root, layout="flat", records=records, split=split, labels_file=labels_file, ignored=ignored)


def read_labels_file(path: Path) -> dict[str, int]:
    """Read a Kaggle ``LOC_val_solution.csv`` or a ``filename label`` text file into name -> index.

    A name listed twice with different labels is an ``InputError`` (which one is right cannot be known).
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"labels file {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})",
                         hint="save it as UTF-8, e.g. iconv -f LATIN1 -t UTF-8") from None
    except OSError as exc:
        raise InputError(f"cannot read labels file {path}: {exc.strerror or exc}", hint="pass a readable file") from None
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    if first.replace(" ", "").lower().startswith("imageid,predictionstring"):
        return _read_kaggle(path, text)
    return _read_text_labels(path, text)


def _add_label(labels: dict[str, int], lines: dict[str, int], name: str, label: int, path: Path, line_no: int) -> None:
    """Record ``name -> label``; the same pair twice is harmless, two different labels are refused."""
    if name in labels and labels[name] != label:
        raise InputError(
            f"{path.name}: conflicting labels for {name!r}: line {lines[name]} says {index_to_wnid(labels[name])}, "
            f"line {line_no} says {index_to_wnid(label)}",
            hint="keep one label per image in the labels file",
        )
    labels.setdefault(name, label)
    lines.setdefault(name, line_no)


def _read_kaggle(path: Path, text: str) -> dict[str, int]:
    labels: dict[str, int] = {}
    lines: dict[str, int] = {}
    for line_no, row in enumerate(csv.reader(text.splitlines()[1:]), start=2):
        if not row:
            continue
        if len(row) < 2 or not row[1].split():
            raise InputError(f"{path.name}:{line_no}: expected 'ImageId,PredictionString'", hint="is this the Kaggle LOC_val_solution.csv?")
        _add_label(labels, lines, row[0].strip(), _parse_label(row[1].split()[0], path, line_no), path, line_no)
    if not labels:
        raise InputError(f"{path} lists no images", hint="the Kaggle CSV needs one row per validation image")
    return labels


def _read_text_labels(path: Path, text: str) -> dict[str, int]:
    labels: dict[str, int] = {}
    lines: dict[str, int] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        parts = line.replace(",", " ").split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) != 2:
            raise InputError(f"{path.name}:{line_no}: expected 'filename label', got {line.strip()!r}", hint="one image per line: name and wnid or class index")
        _add_label(labels, lines, parts[0], _parse_label(parts[1], path, line_no), path, line_no)
    if not labels:
        raise InputError(f"{path} lists no images", hint="one image per line: 'filename label'")
    return labels


def _parse_label(token: str, path: Path, line_no: int) -> int:
    if token.isdigit():
        index = int(token)
        if index >= len(imagenet_wnids()):
            raise InputError(f"{path.name}:{line_no}: class index {index} is out of range 0..999", hint="labels are wnids or 0-based ImageNet-1k indices")
        return index
    if not _WNID.match(token) or token not in _wnid_index():
        raise InputError(
            f"{path.name}:{line_no}: '{token}' is not an ImageNet-1k WordNet id",
            hint="labels are wnids such as n01440764 or 0-based class indices",
        )
    return _wnid_index()[token]
