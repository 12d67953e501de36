"""`package --format triton`: a Triton Inference Server model repository for the same artifact.

Layout (Triton's model repository docs): ``REPO/<model>/config.pbtxt`` and ``REPO/<model>/1/<file>``,
with ``labels.txt`` for Triton's classification extension. Which Triton platform or backend serves it,
and which file, is the engine's ``TritonEntry`` in the registry: by default the bundle's recorded engine
when its entry says so, else the default backend's; ``plan`` serves the bundle's compiled engine.
The batch dimension is implicit (``max_batch_size`` > 0), so dims omit it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnext_deploy.bundle.pack import stage_contents
from resnext_deploy.engines.registry import DEFAULT_BACKEND, REGISTRY, get_spec
from resnext_deploy.errors import InputError, OutputError

DEFAULT_MAX_BATCH = 32
_NP_TO_TRITON = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8"}


@dataclass(frozen=True)
class TritonResult:
    """The model folder written, its platform and config text."""

    repository: Path
    model_dir: Path
    model_name: str
    platform: str
    max_batch_size: int
    config: str
    serve_args: tuple[str, ...] = ()  # what tritonserver needs beyond --model-repository (a version-compatible plan)
    warnings: tuple[str, ...] = ()  # e.g. the plan's TensorRT version differs from the named Triton release's

    @property
    def serve_command(self) -> str:
        """``tritonserver --model-repository REPO [...]``."""
        return " ".join(["tritonserver", "--model-repository", str(self.repository), *self.serve_args])


def model_name_for(manifest: dict[str, Any]) -> str:
    """``resnext50d_32x4d`` at int8 -> ``resnext50d_32x4d_int8`` (letters, digits, ``_``, ``-`` only)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{manifest['model']['name']}_{manifest['precision']}")


def _dims(shape: list[Any], what: str) -> list[int]:
    dims = shape[1:]
    if not all(isinstance(d, int) and d > 0 for d in dims):
        raise InputError(f"{what} shape {shape} has dynamic dims beyond the batch; Triton needs them fixed")
    return dims


def config_text(manifest: dict[str, Any], name: str, entry: Any, max_batch_size: int) -> str:
    """``config.pbtxt`` for the bundle's model served by Triton ``entry`` (ModelConfig in protobuf text format)."""
    inp, out = manifest["input"], manifest["output"]
    in_type, out_type = _NP_TO_TRITON.get(inp["dtype"]), _NP_TO_TRITON.get(out["dtype"])
    if in_type is None or out_type is None:
        raise InputError(f"no Triton type for input {inp['dtype']} / output {out['dtype']}")
    in_dims = ", ".join(str(d) for d in _dims(inp["shape"], "input"))
    out_dims = ", ".join(str(d) for d in _dims(out["shape"], "output"))
    serving = f'platform: "{entry.platform}"' if entry.platform else f'backend: "{entry.backend}"'
    if entry.default_model_filename:
        serving += f'\ndefault_model_filename: "{entry.default_model_filename}"'
    parameters = "".join(
        f'parameters: {{ key: "{key}" value: {{ string_value: "{value}" }} }}\n'
        for key, value in (entry.parameters(manifest["precision"]) if entry.parameters else {}).items()
    )
    return f"""name: "{name}"
{serving}
max_batch_size: {max_batch_size}
input [
  {{
    name: "{inp['name']}"
    data_type: {in_type}
    format: FORMAT_NCHW
    dims: [ {in_dims} ]
  }}
]
output [
  {{
    name: "{out['name']}"
    data_type: {out_type}
    dims: [ {out_dims} ]
    label_filename: "labels.txt"
  }}
]
instance_group [ {{ kind: {entry.instance_kind} }} ]
dynamic_batching {{ }}
version_policy: {{ latest: {{ num_versions: 1 }} }}
{parameters}"""


def serving_backend(manifest: dict[str, Any], backend: str | None = None, plan: bool = False) -> tuple[Any, dict[str, Any] | None]:
    """(engine spec, recorded target or None) that Triton serves the bundle with.

    ``backend`` names it; ``plan`` asks for the bundle's compiled engine (a backend whose Triton entry
    serves its engine file); by default the first recorded engine whose entry is served by default,
    else the default backend on the ONNX model.
    """

    recorded = {t.get("backend"): t for t in manifest.get("targets", [])
                if t.get("artifact") and t.get("precision") in (None, manifest.get("precision"))}
    if backend is not None:
        spec = get_spec(backend)
    elif plan:
        spec = next(s for s in REGISTRY.values() if s.triton and s.triton.serves == "engine")
    else:
        spec = next((s for s in REGISTRY.values() if s.triton and s.triton.default_when_recorded and s.name in recorded),
                    get_spec(DEFAULT_BACKEND))
    if spec.triton is None:
        raise InputError(f"Triton has no backend for {spec.title} artifacts", hint="package with another --backend")
    target = recorded.get(spec.name)
    if spec.triton.serves == "engine" and target is None:
        raise InputError(f"the bundle has no {spec.title} engine for precision {manifest.get('precision')}",
                         hint=f"build one first (`{spec.rebuild_hint}` on the target machine)"
                         + (", or drop --plan" if plan else ""))
    return spec, target


def write_triton_repository(
    bundle_dir: Path, manifest: dict[str, Any], repository: Path, *, generated: dict[str, bytes] | None = None,
    plan: bool = False, backend: str | None = None, model_name: str | None = None, max_batch_size: int | None = None,
    force: bool = False, triton_release: str | None = None,
) -> TritonResult:
    """Write ``repository/<model>/`` from a bundle's files, served by the backend ``serving_backend`` picks.

    ``generated`` holds bundle files not on disk (classes.txt, preprocess.json when packing an export folder).
    """
    generated = generated or {}

    def read(key: str) -> bytes:
        file_name = manifest["artifacts"][key]
        return generated[file_name] if file_name in generated else (bundle_dir / file_name).read_bytes()

    name = model_name or model_name_for(manifest)
    spec, target = serving_backend(manifest, backend, plan)
    entry = spec.triton
    file_name = entry.model_file
    platform = entry.platform or entry.backend
    warnings: list[str] = []
    args: tuple[str, ...] = ()
    if entry.serves == "engine":
        assert target is not None
        warnings = entry.check_target(target, triton_release) if entry.check_target else []  # raises for what Triton
        args = entry.serve_args(target) if entry.serve_args else ()                          # cannot serve at all
        source = bundle_dir / target["artifact"]
        profile_max = next(iter((target.get("profile") or {}).values()), {}).get("max") or [DEFAULT_MAX_BATCH]
        batch = max_batch_size or int(profile_max[0])
        if batch > int(profile_max[0]):
            raise InputError(f"max batch {batch} exceeds the engine's profile maximum {profile_max[0]}")
    else:
        recipes = manifest["artifacts"].get("recipes") or {}  # the artifact made with this backend's recipe, if any
        source = bundle_dir / recipes.get(spec.default_recipe, manifest["artifacts"]["model"])
        batch = max_batch_size or DEFAULT_MAX_BATCH
    config = config_text(manifest, name, entry, batch)
    repository = Path(repository)
    model_dir = repository / name
    if model_dir.exists() and not force:
        raise OutputError(f"{model_dir} already exists", hint="pass --force to replace it, or choose another --output")
    repository.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repository))
    try:
        (staging / "1").mkdir()
        shutil.copyfile(source, staging / "1" / file_name)
        (staging / "config.pbtxt").write_text(config, encoding="utf-8")
        (staging / "labels.txt").write_bytes(read("classes"))
        (staging / "preprocess.json").write_bytes(read("preprocess"))
        os.chmod(staging, 0o755)
        if model_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=repository))
            os.replace(model_dir, old / name)
            os.replace(staging, model_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, model_dir)
    except OSError as exc:
        raise OutputError(f"cannot write {model_dir}: {exc.strerror or exc}", hint="choose a writable --output folder") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return TritonResult(repository, model_dir, name, platform, batch, config, args, tuple(warnings))


def package_triton(directory: Path, repository: Path, **options: Any) -> TritonResult:
    """Write a Triton model repository straight from an export directory (see :func:`write_triton_repository`)."""

    _, generated, manifest = stage_contents(Path(directory))
    return write_triton_repository(Path(directory), manifest, repository, generated=generated, **options)
