"""Bare model files as prediction sources, as polygraphy, trtexec and `yolo predict` take the model file.

A ``.onnx`` carries its own record in ``metadata_props`` (model, preprocessing, class count, weights);
a graph without it takes the zoo entry named by ``--model``. An engine file (``.engine``) is read
with its sidecar, which records the metadata of the ONNX it was built from. Class names are the
ImageNet names a bundle's ``classes.txt`` holds (``pack.class_names``), so predictions match.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnext_deploy.bundle.pack import class_names
from resnext_deploy.bundle.predict import DEFAULT_MAX_BATCH, ModelSource, RunnerChoice
from resnext_deploy.engines import DEFAULT_BACKEND, BuildOptions, get_spec, resolve_backend, select_for
from resnext_deploy.engines.base import model_base
from resnext_deploy.engines.registry import engine_spec_for_file, read_engine_file
from resnext_deploy.errors import InputError, NotAvailableError, UsageError
from resnext_deploy.layout import split_artifact_name
from resnext_deploy.metadata import check_metadata, read_metadata
from resnext_deploy.onnx_io import read_graph_io
from resnext_deploy.zoo import PreprocessConfig, get_model_spec


def is_bare_model(path: Path) -> bool:
    """Whether ``path`` names a bare model file (an ``.onnx`` or an engine file) rather than a bundle."""
    return Path(path).suffix == ".onnx" or engine_spec_for_file(Path(path)) is not None


def _model_record(path: Path, metadata: dict[str, Any], model: str | None) -> tuple[PreprocessConfig, int, list[str]]:
    """(preprocessing, class count, notes) from the artifact's metadata, else from the zoo entry ``model``."""
    notes: list[str] = []
    typed = check_metadata(metadata, path.name)  # mistyped, unbounded or NaN fields: exit 2 before any backend loads
    name = typed.model_name or model
    if typed.preprocess is not None and typed.num_classes is not None:
        if model is not None and typed.model_name not in (None, model):
            notes.append(f"--model {model} ignored: {path.name} records model {typed.model_name}")
        return PreprocessConfig.from_dict(typed.preprocess.model_dump()), typed.num_classes, notes
    if name is None:
        raise UsageError(f"{path} carries no model metadata (preprocessing, class count)",
                         hint="pass --model NAME (a zoo model, see `resnext-deploy models`) so its preprocessing is used")
    spec = get_model_spec(str(name))
    notes.append(f"preprocessing and classes from the zoo entry {spec.name} (the model carries none)")
    return spec.preprocess, spec.num_classes, notes


def _check_classes(path: Path, num_classes: int, output_dims: tuple[Any, ...]) -> None:
    """Refuse a class count the graph's output contradicts (a wrong --model)."""
    last = output_dims[-1] if output_dims else None
    if isinstance(last, int) and last > 0 and last != num_classes:
        raise InputError(f"{path} outputs {last} classes, its model record says {num_classes}",
                         hint="pass the --model the graph was made from")


def onnx_source(path: Path, model: str | None = None) -> ModelSource:
    """A bare ``.onnx`` as a prediction source (checked before any backend is loaded)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file not found: {path}", hint="pass a .onnx written by `resnext-deploy export`, or a bundle")
    metadata = read_metadata(path)
    inputs, outputs = read_graph_io(path)
    preprocess, num_classes, notes = _model_record(path, metadata, model)
    _check_classes(path, num_classes, outputs[0].dims)
    precision = str(metadata.get("precision") or split_artifact_name(path.name)[1] or "fp32")
    weights = metadata.get("weights") if isinstance(metadata.get("weights"), dict) else {}
    return ModelSource(
        kind="onnx", path=path, precision=precision, preprocess=preprocess, class_names=class_names(num_classes),
        input_name=inputs[0].name, output_name=outputs[0].name, random_weights=weights.get("kind") == "random",
        open_runner=lambda backend: _onnx_runner(path, precision, backend), warnings=notes,
    )


def _onnx_runner(path: Path, precision: str, backend: str) -> RunnerChoice:
    """The ONNX on ``backend`` (``auto``: the fixed rule); an engine-only backend runs the engine built beside it."""
    chosen, why = select_for(backend, path, precision)
    spec = get_spec(chosen.name)
    options = BuildOptions(precision=precision)
    if spec.loads_from_onnx:
        return RunnerChoice(chosen.load(path, options), chosen.name, why, DEFAULT_MAX_BATCH)
    engine = path.parent / f"{model_base(path)}.{precision}{spec.engine_suffix}"
    if engine.is_file() and spec.read_engine_file is not None:
        record = spec.read_engine_file(engine)
        return RunnerChoice(chosen.load(engine, options), chosen.name, f"{why}; engine {engine.name} beside it",
                            record.max_batch or DEFAULT_MAX_BATCH)
    if backend == chosen.name:
        raise NotAvailableError(f"no {spec.title} engine beside {path.name} ({engine.name})",
                                hint=f"build one first: `resnext-deploy build {path} --backend {chosen.name}`")
    default = get_spec(DEFAULT_BACKEND).backend()
    why = f"auto: {DEFAULT_BACKEND} ({spec.title} is here but no engine {engine.name} is beside the model)"
    return RunnerChoice(default.load(path, options), DEFAULT_BACKEND, why, DEFAULT_MAX_BATCH)


def engine_source(path: Path, model: str | None = None) -> ModelSource:
    """A bare engine file as a prediction source: its sidecar gives the model record and the tensor names."""
    record = read_engine_file(Path(path))
    preprocess, num_classes, notes = _model_record(record.path, record.metadata, model)
    weights = record.metadata.get("weights") or {}

    def open_runner(backend: str) -> RunnerChoice:
        if backend not in ("auto", record.backend):
            raise UsageError(f"{record.path.name} is a {record.backend} engine; it cannot run on {backend}",
                             hint=f"omit --backend, or pass the ONNX it was built from ({record.source_onnx.name})")
        chosen, why = resolve_backend(record.backend, record.precision)
        reason = f"{record.backend}: the engine file given" if backend == "auto" else why
        return RunnerChoice(chosen.load(record.path), record.backend, reason, record.max_batch or DEFAULT_MAX_BATCH)

    return ModelSource(
        kind="engine", path=record.path, precision=record.precision, preprocess=preprocess,
        class_names=class_names(num_classes), input_name=record.input_name, output_name=record.output_name,
        random_weights=weights.get("kind") == "random", open_runner=open_runner, warnings=notes,
    )


def bare_source(path: Path, model: str | None = None) -> ModelSource:
    """The prediction source of a bare ``.onnx`` or engine file."""
    path = Path(path)
    return onnx_source(path, model) if path.suffix == ".onnx" else engine_source(path, model)
