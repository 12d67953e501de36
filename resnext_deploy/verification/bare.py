"""Verify a bare ONNX file, as polygraphy and trtexec take one: its metadata stands in for report.json.

The artifact's own ``metadata_props`` give model, precision and preprocessing; a graph without
them takes its preprocessing from the zoo entry named by ``--model`` (said so in the report).
The FP32 reference is ``--reference FILE``, else the ``model.onnx`` beside the file.
Outputs go to a folder of their own (``<name>.verify/`` beside the file unless ``--output``),
so a bare check never overwrites an export directory's report.
"""

from __future__ import annotations

from pathlib import Path

from resnext_deploy import machine
from resnext_deploy.engines.registry import read_engine_file
from resnext_deploy.errors import InputError, UsageError
from resnext_deploy.layout import CALIBRATION_MANIFEST, FP32_NAME, REPORT_NAME
from resnext_deploy.metadata import check_metadata, get_metadata
from resnext_deploy.onnx_io import graph_precision, load_model
from resnext_deploy.report import Report, new_report
from resnext_deploy.zoo import get_model_spec


def default_output(path: Path) -> Path:
    """``dir/model.int8.onnx`` -> ``dir/model.int8.verify``; an engine ``dir/model.int8.engine`` -> ``dir/model.int8.engine.verify``."""
    return path.with_name((path.stem if path.suffix == ".onnx" else path.name) + ".verify")


def _precision(onnx_path: Path, claimed: str | None, graph: str) -> str:
    """The graph's own precision; a ``precision`` metadata claim that contradicts it is refused."""
    if claimed is not None and claimed != graph:
        raise InputError(f"{onnx_path.name}'s metadata says precision {claimed}, but its graph is {graph}"
                         + (" (it holds Q/DQ nodes)" if graph == "int8" else ""),
                         hint="the metadata was edited or belongs to another file; re-export it with `resnext-deploy export`")
    return graph


def bare_report(onnx_path: Path, reference: Path | None, model: str | None) -> tuple[Report, list[str]]:
    """An in-memory report for ``onnx_path`` (absolute artifact paths) and the notes saying what was assumed."""
    onnx_path = onnx_path.resolve()
    graph = load_model(onnx_path)
    metadata = get_metadata(graph)
    typed = check_metadata(metadata, onnx_path.name)  # exit 2 for mistyped, unbounded or NaN fields, before any work
    notes: list[str] = [f"bare ONNX file {onnx_path.name}: model and precision from its metadata_props"]
    name = typed.model_name or model
    if name is None:
        raise UsageError(f"{onnx_path} carries no model metadata",
                         hint="pass --model NAME (a zoo model) so its preprocessing can be used")
    spec = get_model_spec(str(name))
    if typed.preprocess is None:
        notes.append(f"preprocessing from the zoo entry {spec.name} (the graph carries none)")
    precision = _precision(onnx_path, typed.precision, graph_precision(graph))
    if reference is None:
        reference = onnx_path if precision == "fp32" else onnx_path.with_name(FP32_NAME)
        if precision != "fp32":
            notes.append(f"FP32 reference: {reference.name} beside the artifact")
    if not Path(reference).is_file():
        raise InputError(f"no FP32 reference for {onnx_path.name}: {reference} does not exist",
                         hint="pass --reference FP32.onnx (the model the artifact was made from)")
    report = new_report([], machine.describe())
    report.model = spec.to_dict() | {"name": spec.name}
    report.precision = precision
    report.weights = typed.weights or {}
    # the reference has a key of its own: for an FP32 artifact "fp32" names the artifact, not the reference
    report.artifacts = {"fp32": str(Path(reference).resolve()), precision: str(onnx_path),
                        "reference": str(Path(reference).resolve())}
    report.source = {"kind": "onnx", "path": str(onnx_path), "reference": str(Path(reference).resolve())}
    manifest = onnx_path.parent / CALIBRATION_MANIFEST
    if manifest.is_file():
        report.artifacts.calibration_manifest = str(manifest)
    return report, notes


def bare_engine_report(engine: Path, reference: Path | None, model: str | None,
                       backend: str | None) -> tuple[Report, list[str]]:
    """The bare report of the ONNX an engine file was built from (its sidecar names it), run as that engine."""
    record = read_engine_file(engine)
    if backend not in (None, record.backend):
        raise UsageError(f"{engine.name} is a {record.backend} engine; it cannot be verified on {backend}",
                         hint=f"omit --backend, or verify the ONNX it was built from ({record.source_onnx.name})")
    if not record.source_onnx.is_file():
        raise InputError(f"{engine.name} was built from {record.source_onnx.name}, which is not beside it",
                         hint="put the engine next to the ONNX it was built from (verification reads its metadata and "
                              "compares with its FP32 model)")
    report, notes = bare_report(record.source_onnx, reference, model)
    report.engine = {"backend": record.backend}
    report.artifacts.engine = str(record.path.resolve())
    report.source = {**(report.source or {}), "engine": str(record.path.resolve())}
    notes.insert(0, f"bare engine {engine.name}: its {record.backend} sidecar names {record.source_onnx.name}")
    return report, notes


def prepare_output(directory: Path) -> Path:
    """Create the outputs folder of a bare check; refuse one that holds an export."""
    if (directory / REPORT_NAME).is_file() and not (directory / ".bare-verify").is_file():
        raise UsageError(f"{directory} holds an export's {REPORT_NAME}; a bare check would overwrite it",
                         hint="pass --output to another folder, or verify the export directory itself")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ".bare-verify").touch()
    return directory
