"""Session fixtures shared by every room: synthetic ImageNet folders and a tiny trained ResNeXt."""

from __future__ import annotations

import os

# `make test` runs two pytest-xdist workers on two cores. Each worker's torch then computes on one thread (set before
# torch is imported): two processes with two OpenMP threads each on two cores made a tiny-model forward 70x slower.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if XDIST_WORKER:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from resnext_deploy.zoo import ModelSpec, register_model
from tests.support.synthetic import (
    FlatVal,
    add_corrupt_jpeg,
    add_grayscale_jpeg,
    class_wnids,
    write_flat_val,
    write_imagefolder,
)
from tests.support.tiny import TINY_SPEC, TrainResult, train_tiny

TRAIN_PER_CLASS = 40
VAL_PER_CLASS = 20
FLAT_PER_CLASS = 3
SEED = 0


@dataclass(frozen=True)
class SyntheticImageNet:
    """Paths of the generated folders (all real JPEG files, 10 classes = wnid indices 0..9)."""

    root: Path
    train: Path
    val: Path
    flat_kaggle: FlatVal
    flat_text: FlatVal
    messy: Path
    corrupt: Path
    grayscale: Path
    train_per_class: int = TRAIN_PER_CLASS
    val_per_class: int = VAL_PER_CLASS


TRAINED = "tiny_checkpoint"


@pytest.hookimpl(wrapper=True)  # the marks are set before every other plugin's hook reads them (`-m`, xdist)
def pytest_collection_modifyitems(items: list[pytest.Item]):  # type: ignore[no-untyped-def]
    """Every test that uses the model trained in-session (``tiny_checkpoint``, itself or through another fixture) is
    ``slow``: the training alone takes longer than ``-m "not slow"`` may spend. Such tests run in ``make test``."""
    for item in items:
        if TRAINED in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    return (yield)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Caches a test does not name (the FP32 baseline logits of `verify`) go to a temporary folder, never $HOME."""
    import os

    from resnext_deploy.calibration.stats_cache import CACHE_ENV

    earlier = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("default-cache"))
    yield
    if earlier is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = earlier


@pytest.fixture(scope="session")
def synthetic_imagenet(tmp_path_factory: pytest.TempPathFactory) -> SyntheticImageNet:
    """``root/train`` and ``root/val`` ImageFolders, two flat val folders, and a messy folder.

    The clean folders hold only readable RGB JPEGs; ``messy`` is a small ImageFolder that also
    holds one truncated JPEG and one grayscale JPEG.
    """
    root = tmp_path_factory.mktemp("imagenet")
    train = write_imagefolder(root, "train", TRAIN_PER_CLASS, SEED)
    val = write_imagefolder(root, "val", VAL_PER_CLASS, SEED)
    flat_kaggle = write_flat_val(root / "flat_kaggle", FLAT_PER_CLASS, SEED + 1, labels="kaggle")
    flat_text = write_flat_val(
        root / "flat_text", FLAT_PER_CLASS, SEED + 2, labels="text", labels_path=root / "flat_text_labels.txt"
    )
    messy = write_imagefolder(tmp_path_factory.mktemp("messy"), "images", 2, SEED + 3)
    wnids = class_wnids()
    corrupt = add_corrupt_jpeg(messy / wnids[0] / "corrupt.JPEG")
    grayscale = add_grayscale_jpeg(messy / wnids[1] / "gray.JPEG", cls=1)
    return SyntheticImageNet(root, train, val, flat_kaggle, flat_text, messy, corrupt, grayscale)


@pytest.fixture(scope="session")
def tiny_spec() -> ModelSpec:
    """The tiny ResNeXt zoo entry ``resnext_tiny``, registered in the zoo."""
    register_model(TINY_SPEC)
    return TINY_SPEC


@pytest.fixture(scope="session")
def tiny_checkpoint(
    tmp_path_factory: pytest.TempPathFactory, synthetic_imagenet: SyntheticImageNet, tiny_spec: ModelSpec
) -> TrainResult:
    """A timm-keyed state_dict of ``resnext_tiny`` trained on ``synthetic_imagenet`` (plus its accuracy).

    Under pytest-xdist the workers share one training: the first trains in the run's folder above the workers' own,
    the others wait for it and read its result (each worker's synthetic folders hold the same images).
    """
    if not XDIST_WORKER:
        return train_tiny(synthetic_imagenet.root, tmp_path_factory.mktemp("tiny") / "resnext_tiny.pth", seed=SEED)
    shared = tmp_path_factory.getbasetemp().parent / "tiny-trained"
    shared.mkdir(exist_ok=True)
    record = shared / "result.json"
    with _exclusive(shared / ".lock"):
        if record.is_file():
            fields = json.loads(record.read_text())
            return TrainResult(**fields | {"checkpoint": Path(fields["checkpoint"])})
        result = train_tiny(synthetic_imagenet.root, shared / "resnext_tiny.pth", seed=SEED)
        record.write_text(json.dumps(asdict(result) | {"checkpoint": str(result.checkpoint)}))
        return result


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created) for the block: one process at a time."""
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# Export-directory fixtures. Where accuracy is not the point (bundles, reports, hostile inputs, --force and the lock),
# the tiny model with random weights: FP32 and INT8 made from it in a few seconds. Where it is (verify's gates), an
# INT8 export of the tiny model trained in-session.
@pytest.fixture(scope="session")
def random_fp32_export_dir(tmp_path_factory: pytest.TempPathFactory, tiny_spec: ModelSpec) -> Path:
    """resnext_tiny (random weights, FP32) exported with its ONNX Runtime engine, as `export` writes it (read-only:
    copy it)."""
    import resnext_deploy.engines as engines
    from resnext_deploy.export import ExportOptions, run_export

    out = tmp_path_factory.mktemp("random-fp32") / "tiny"
    directory, _ = run_export(ExportOptions(model=tiny_spec.name, weights="random", precision="fp32", output=out))
    if not (directory / "model.onnxruntime.json").is_file():  # `auto` chose another engine on this machine
        engines.get_spec("onnxruntime").backend().build(directory / "model.onnx", engines.BuildOptions())
    return directory


@pytest.fixture(scope="session")
def random_int8_export_dir(random_fp32_export_dir: Path, synthetic_imagenet: SyntheticImageNet,
                           tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An INT8 export (onnxruntime recipe and engine, minmax on 20 images of the train split, no verification) made
    from ``random_fp32_export_dir``'s FP32 model (read-only: copy it)."""
    from resnext_deploy.export import CalibrationOptions, ExportOptions, run_export

    root = tmp_path_factory.mktemp("random-int8")
    calibration = CalibrationOptions(data=synthetic_imagenet.root, size=20, method="minmax", cache_dir=root / "cache")
    options = ExportOptions(model="resnext_tiny", precision="int8", backend="onnxruntime", weights="random",
                            output=root / "int8", fp32_from=random_fp32_export_dir / "model.onnx",
                            calibration=calibration)
    return run_export(options, command=["test"])[0]


@pytest.fixture(scope="session")
def unlabelled_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flat folder of 30 JPEGs with no labels file."""
    return write_flat_val(tmp_path_factory.mktemp("unlabelled"), n_per_class=3, seed=5, labels=None).folder


@pytest.fixture
def random_export_dir(random_int8_export_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the random-weight INT8 export directory for one test to modify."""
    return Path(shutil.copytree(random_int8_export_dir, tmp_path / "export"))


@pytest.fixture(scope="session")
def int8_export_dir(synthetic_imagenet, tiny_checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """An INT8 export directory of the tiny trained model, calibrated on ``train`` (read-only: copy it)."""
    from resnext_deploy.export import CalibrationOptions, ExportOptions, run_export

    root = tmp_path_factory.mktemp("verify-export")
    options = ExportOptions(
        model="resnext_tiny", precision="int8", backend="onnxruntime", weights=str(tiny_checkpoint.checkpoint),
        output=root / "int8",
        calibration=CalibrationOptions(data=synthetic_imagenet.train, size=50, method="minmax", cache_dir=root / "cache"),
    )
    directory, _ = run_export(options, command=["test"])
    return directory


@pytest.fixture
def export_dir(int8_export_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the INT8 export directory for one test to modify."""
    return Path(shutil.copytree(int8_export_dir, tmp_path / "export"))
