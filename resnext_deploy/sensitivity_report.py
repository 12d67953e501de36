"""`resnext-deploy sensitivity DIR` and the sensitivity outputs of an export: sensitivity.json and sensitivity.png.

The analysis itself is ``calibration.sensitivity``; this module finds what it needs in an export
directory (FP32 model, INT8 artifact's calibration record, the manifest's tuning slice, the
statistics), checks all of it before any heavy work, and writes the outputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnext_deploy import console
from resnext_deploy.calibration.baseline_cache import tuning_baseline
from resnext_deploy.calibration.quantize import QuantizeConfig, prepare_quantization
from resnext_deploy.calibration.sensitivity import DEFAULT_PROBE_IMAGES, cached_sensitivity
from resnext_deploy.data.manifest import Manifest
from resnext_deploy.data.preprocess import iter_batches, load_images
from resnext_deploy.errors import InputError, UsageError
from resnext_deploy.files import atomic_path, write_text
from resnext_deploy.layout import (
    CALIBRATION_MANIFEST,
    FP32_NAME,
    SENSITIVITY_NAME,
    SENSITIVITY_PLOT_NAME,
    STATS_PREFIX,
    artifact_name,
)
from resnext_deploy.metadata import read_metadata
from resnext_deploy.zoo import PreprocessConfig

SCHEMA = "resnext-deploy/sensitivity"
VERSION = 1
EXPORT_HINT = "make one with `resnext-deploy export MODEL --precision int8 --calib-data DIR`"


@dataclass
class SensitivityOptions:
    """What `resnext-deploy sensitivity` takes."""

    calib_data: Path | None = None  # where the manifest's images are now [default: the manifest's root]
    probe_images: int = DEFAULT_PROBE_IMAGES
    cache_dir: Path | None = None
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.probe_images <= 0:
            raise UsageError(f"--probe-images must be positive, got {self.probe_images}", hint=f"for example --probe-images {DEFAULT_PROBE_IMAGES}")


@dataclass
class ExportInputs:
    """The files of an export directory the analysis reads, all checked to exist."""

    directory: Path
    fp32: Path
    int8: Path
    manifest: Any  # data.manifest.Manifest
    calibration: dict[str, Any]  # the INT8 artifact's calibration metadata
    stats_file: Path | None
    model_name: str
    preprocess: Any  # zoo.PreprocessConfig


def check_export_dir(directory: Path) -> ExportInputs:
    """Everything `sensitivity` needs from ``directory``, or ``InputError`` naming what is missing (exit 2)."""

    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory} is not a directory", hint=f"pass an export directory; {EXPORT_HINT}")
    fp32, int8 = directory / FP32_NAME, directory / artifact_name("int8")
    if not int8.is_file():
        raise InputError(f"{directory} holds no INT8 artifact ({int8.name})", hint=EXPORT_HINT)
    if not fp32.is_file():
        raise InputError(f"{directory} holds no FP32 model ({fp32.name}) to compare with", hint=EXPORT_HINT)
    manifest_path = directory / CALIBRATION_MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{directory} holds no calibration manifest ({CALIBRATION_MANIFEST})", hint=EXPORT_HINT)
    manifest = Manifest.read(manifest_path)
    if not manifest.tuning:
        raise InputError(
            f"the calibration manifest of {directory} pins no tuning images",
            hint="re-export with this release and leave images for tuning (the calibration source needs more images "
                 "than --calib-size; --tune-size sets how many)",
        )
    meta = read_metadata(int8)
    calibration = meta.get("calibration")
    if not isinstance(calibration, dict) or "recipe" not in calibration or "method" not in calibration:
        raise InputError(f"{int8} carries no calibration record", hint=f"re-export it; {EXPORT_HINT}")
    if "preprocess" not in meta:
        raise InputError(f"{int8} carries no preprocess metadata", hint=f"re-export it; {EXPORT_HINT}")
    stats = sorted(directory.glob(f"{STATS_PREFIX}*.json"))
    return ExportInputs(directory, fp32, int8, manifest, calibration, stats[0] if stats else None,
                        str(meta.get("model_name", directory.name)), PreprocessConfig.from_dict(meta["preprocess"]))


def load_tuning(manifest: Any, cfg: Any, root: Path | None = None, progress: bool = True) -> Any:
    """The manifest's tuning images under ``root`` (default: the manifest's), each checked by sha256, decoded."""

    records = manifest.tuning_records(root if root is not None else manifest.root)
    return load_images(records, cfg, progress=progress)


def run_sensitivity(directory: Path, options: SensitivityOptions) -> tuple[Any, dict[str, Any], dict[str, Path]]:
    """Analyse the export in ``directory``; returns (result, sensitivity.json document, files written)."""

    inputs = check_export_dir(directory)
    calib = inputs.calibration
    tuning = load_tuning(inputs.manifest, inputs.preprocess, options.calib_data, options.progress)
    percentile = (calib.get("params") or {}).get("percentile")
    with console.stage(f"sensitivity of {inputs.model_name} ({calib['recipe']} recipe, {len(tuning)} tuning images)"):
        config = QuantizeConfig(
            manifest_sha256=str(calib.get("manifest_sha256")), method=str(calib["method"]), recipe=str(calib["recipe"]),
            keep_grouped_float=calib.get("keep_grouped_float"), cache_dir=options.cache_dir, progress=options.progress,
            **({"percentile": float(percentile)} if percentile is not None else {}),
        )
        with prepare_quantization(inputs.fp32, _calibration_images(inputs, options), config,
                                  stats_file=inputs.stats_file) as setup:
            reference, _ = tuning_baseline(inputs.fp32, tuning.array, str(inputs.manifest.tuning_sha256),
                                           inputs.preprocess.to_dict(), options.cache_dir, options.threads)
            result = cached_sensitivity(setup, tuning.array, str(inputs.manifest.tuning_sha256),
                                        probe_images=options.probe_images, cache_dir=options.cache_dir,
                                        threads=options.threads, progress=options.progress, reference=reference)
    document = sensitivity_document(inputs.model_name, result, inputs.manifest)
    return result, document, write_outputs(inputs.directory, document, result)


def _calibration_images(inputs: ExportInputs, options: SensitivityOptions) -> Iterator[Any]:
    """Calibration images, found and decoded only if the statistics are neither cached nor kept in the directory."""

    root = options.calib_data if options.calib_data is not None else inputs.manifest.root
    for loaded in iter_batches(inputs.manifest.resolve(root), inputs.preprocess, 32, progress=options.progress):
        yield loaded.array


def sensitivity_document(model_name: str, result: Any, manifest: Any, float_layers: list[str] | None = None) -> dict[str, Any]:
    """The content of sensitivity.json: layers in network order, sites, the fallback order and provenance."""
    data = result.to_dict()
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "model": model_name,
        "recipe": result.recipe,
        "method": result.method,
        "measure": "logits noise-to-signal ratio with the layer (site) alone quantized, on probe images; "
                   "cosine_drop ~ output_nsr / 2",
        "tuning": {"images": result.tuning_images, "probe_images": result.probe_images,
                   "sha256": manifest.tuning_sha256, "root": manifest.root},
        "full_int8": result.full_int8,
        "layers": data["layers"],
        "ranking": [layer.name for layer in result.ranked()],
        "fallback_order": result.fallback_order(),
        "float_layers": list(float_layers or []),
        "sites": data["sites"],
        "seconds": result.seconds,
        "cache_hit": result.cache_hit,
        "cache_key": result.key,
    }


def write_outputs(directory: Path, document: dict[str, Any], result: Any) -> dict[str, Path]:
    """sensitivity.json always; sensitivity.png when matplotlib is installed."""

    written = {"json": directory / SENSITIVITY_NAME}
    write_text(written["json"], json.dumps(document, indent=1) + "\n")
    try:
        written["png"] = write_plot(directory / SENSITIVITY_PLOT_NAME, document, result)
    except ImportError:
        console.warn(f"matplotlib is not installed; {SENSITIVITY_PLOT_NAME} was not written (pip install matplotlib)")
    return written


def write_plot(path: Path, document: dict[str, Any], result: Any) -> Path:
    """Bars in network order, height = logits noise with the layer alone in INT8; float layers outlined in red."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    layers = sorted(result.layers, key=lambda layer: layer.position)
    floating = set(document.get("float_layers") or [])
    colours = {"Conv": "tab:blue", "Gemm": "tab:purple", "MatMul": "tab:purple", "Add": "tab:orange"}
    fig = Figure(figsize=(max(6.0, 0.14 * len(layers) + 2), 4.0))
    ax = fig.add_subplot()
    heights = [max(layer.output_nsr, 1e-12) for layer in layers]
    bars = ax.bar(range(len(layers)), heights, color=[colours.get(layer.op_type, "tab:gray") for layer in layers],
                  edgecolor=["red" if layer.name in floating else "none" for layer in layers], linewidth=1.5)
    ax.set_yscale("log")
    ax.set_xlim(-1, len(layers))
    top = {layer.name for layer in result.ranked()[:8]}
    for index, (bar, layer) in enumerate(zip(bars, layers)):
        if layer.name in top:
            ax.annotate(layer.label, (index, bar.get_height()), rotation=60, fontsize=7, ha="left", va="bottom")
    ax.set_xlabel("layer, in network order (blue conv, orange add, purple fc; red outline: kept in float)")
    ax.set_ylabel("logits noise / signal, layer alone INT8")
    ax.set_title(f"{document['model']}: INT8 sensitivity ({document['recipe']} recipe, {result.probe_images} probe images)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path
