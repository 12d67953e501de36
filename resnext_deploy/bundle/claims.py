"""Cross-check what manifest.json claims against the model it ships (the ONNX file's own metadata and graph).

Checksums prove the files are those the manifest lists, but the manifest's own statements (model
name, precision, class count, preprocessing, whether the weights are random) could be edited. Each
is compared with the checksummed ONNX artifact's ``metadata_props`` and tensor shapes, so an
edited manifest is refused; only a signature (``bundle.signing``) proves who made the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnext_deploy.bundle.manifest import MAX_SIDECAR_BYTES, REPACK_HINT, onnx_facts, target_of
from resnext_deploy.bundle.schema import check_preprocessing
from resnext_deploy.engines.registry import spec_for_sidecar
from resnext_deploy.errors import InputError, shorten
from resnext_deploy.files import read_json

WEIGHT_FIELDS = ("origin", "kind", "sha256")


def _mismatch(what: str, claimed: Any, actual: Any, source: str) -> str | None:
    return None if claimed == actual else f"{what}: manifest says {claimed!r}, {source} says {actual!r}"


def check_claims(directory: Path, manifest: dict[str, Any], label: str) -> None:
    """``InputError`` listing every manifest statement that the shipped model contradicts (manifest fields already typed)."""
    directory = Path(directory)
    artifacts, model = manifest["artifacts"], manifest["model"]
    model_name = artifacts["model"]
    metadata, input_spec, output_spec = onnx_facts(directory / model_name)
    weights = metadata.get("weights") if isinstance(metadata.get("weights"), dict) else {}
    claimed_weights = {key: model["weights"].get(key) for key in WEIGHT_FIELDS}
    problems = [
        _mismatch("precision", manifest["precision"], metadata.get("precision"), model_name),
        _mismatch("model name", model["name"], metadata.get("model_name"), model_name),
        _mismatch("num_classes", model["num_classes"], metadata.get("num_classes"), model_name),
        _mismatch("weights", claimed_weights, {key: weights.get(key) for key in WEIGHT_FIELDS}, model_name),
        _mismatch("random_weights", model["random_weights"], weights.get("kind") == "random", model_name),
        _mismatch("preprocessing", manifest["preprocessing"], metadata.get("preprocess"), model_name),
        _mismatch("input", manifest["input"], input_spec, model_name),
        _mismatch("output", manifest["output"], output_spec, model_name),
    ]
    preprocess_path = directory / artifacts["preprocess"]
    try:
        preprocess = read_json(preprocess_path, f"{label}: {artifacts['preprocess']}", REPACK_HINT, MAX_SIDECAR_BYTES)
    except OSError as exc:
        raise InputError(f"{label}: {artifacts['preprocess']} is unreadable ({exc})", hint=REPACK_HINT) from None
    checked = check_preprocessing(preprocess, f"{label}: {artifacts['preprocess']}", REPACK_HINT)
    problems.append(_mismatch("preprocess.json", preprocess, metadata.get("preprocess"), model_name))
    shape = input_spec["shape"]
    if len(shape) != 4 or shape[1] != 3 or shape[2:] != [checked.input_size] * 2:
        problems.append(f"input shape {shape} does not take {checked.input_size}x{checked.input_size} RGB images")
    if output_spec["shape"][1:] != [model["num_classes"]]:
        problems.append(f"output shape {output_spec['shape']} does not give {model['num_classes']} classes")
    if artifacts["fp32"] != model_name:
        fp32_meta, _, _ = onnx_facts(directory / artifacts["fp32"])
        problems.append(_mismatch("fp32 artifact precision", "fp32", fp32_meta.get("precision"), artifacts["fp32"]))
    problems = [p for p in problems if p]
    if problems:
        raise InputError(f"{label}: manifest.json does not match the model it ships: " + "; ".join(problems[:4])
                         + (f"; and {len(problems) - 4} more" if len(problems) > 4 else ""),
                         hint="do not use this bundle (it was edited); " + REPACK_HINT)


def check_engine_files(directory: Path, manifest: dict[str, Any], label: str) -> None:
    """``InputError`` when an engine record names a file the manifest does not list.

    Every recorded target's engine and sidecar, and every file a listed engine sidecar names, must be a
    listed (so checksummed) file of the bundle: otherwise loading the engine would open a file the
    manifest does not vouch for, possibly outside the bundle folder.
    """
    listed = {record["path"] for record in manifest["files"]}
    problems = []
    for target in manifest.get("targets") or []:
        for key in ("artifact", "sidecar"):
            name = target.get(key) if isinstance(target, dict) else None
            if name is not None and name not in listed:
                problems.append(f"a {target.get('backend')} target's {key} {shorten(repr(name), 120)} is not a listed file")
    for name in sorted(listed):
        if spec_for_sidecar(name) is None:
            continue
        target = target_of(Path(directory), name)
        engine = (target or {}).get("artifact")
        if target is not None and engine is None:
            problems.append(f"{name} does not name its engine file (a plain file name is expected)")
        elif target is not None and engine not in listed:
            problems.append(f"{name} names the engine file {shorten(repr(engine), 120)}, which is not a listed file")
    if problems:
        raise InputError(f"{label}: " + "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else ""),
                         hint="do not use this bundle (an engine record was edited); " + REPACK_HINT)
