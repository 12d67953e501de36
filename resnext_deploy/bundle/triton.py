"""`package --format triton`: a Triton Inference Server model repository for the same artifact.

Layout (Triton's model repository docs): ``REPO/<model>/config.pbtxt`` and ``REPO/<model>/1/model.onnx``
(``model.plan`` for a TensorRT engine), with ``labels.txt`` for Triton's classification extension.
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


def model_name_for(manifest: dict[str, Any]) -> str:
    """``resnext50d_32x4d`` at int8 -> ``resnext50d_32x4d_int8`` (letters, digits, ``_``, ``-`` only)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{manifest['model']['name']}_{manifest['precision']}")


def _dims(shape: list[Any], what: str) -> list[int]:
    dims = shape[1:]
    if not all(isinstance(d, int) and d > 0 for d in dims):
        raise InputError(f"{what} shape {shape} has dynamic dims beyond the batch; Triton needs them fixed")
    return dims


def config_text(manifest: dict[str, Any], name: str, platform: str, max_batch_size: int) -> str:
    """``config.pbtxt`` for the bundle's model (Triton ModelConfig in protobuf text format)."""
    inp, out = manifest["input"], manifest["output"]
    in_type, out_type = _NP_TO_TRITON.get(inp["dtype"]), _NP_TO_TRITON.get(out["dtype"])
    if in_type is None or out_type is None:
        raise InputError(f"no Triton type for input {inp['dtype']} / output {out['dtype']}")
    in_dims = ", ".join(str(d) for d in _dims(inp["shape"], "input"))
    out_dims = ", ".join(str(d) for d in _dims(out["shape"], "output"))
    instance = "KIND_GPU" if platform == "tensorrt_plan" else "KIND_AUTO"
    return f"""name: "{name}"
platform: "{platform}"
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
instance_group [ {{ kind: {instance} }} ]
dynamic_batching {{ }}
version_policy: {{ latest: {{ num_versions: 1 }} }}
"""


def write_triton_repository(
    bundle_dir: Path, manifest: dict[str, Any], repository: Path, *, generated: dict[str, bytes] | None = None,
    plan: bool = False, model_name: str | None = None, max_batch_size: int | None = None, force: bool = False,
) -> TritonResult:
    """Write ``repository/<model>/`` from a bundle's files (ONNX model, or its TensorRT engine with ``plan``).

    ``generated`` holds bundle files not on disk (classes.txt, preprocess.json when packing an export folder).
    """
    generated = generated or {}

    def read(key: str) -> bytes:
        file_name = manifest["artifacts"][key]
        return generated[file_name] if file_name in generated else (bundle_dir / file_name).read_bytes()

    name = model_name or model_name_for(manifest)
    if plan:
        target = next((t for t in manifest.get("targets", []) if t.get("backend") == "tensorrt" and t.get("artifact")), None)
        if target is None:
            raise InputError(f"{bundle_dir} has no TensorRT engine for a tensorrt_plan model",
                             hint="build one with `resnext-deploy export --backend tensorrt` on a GPU, or drop --plan")
        source, file_name, platform = bundle_dir / target["artifact"], "model.plan", "tensorrt_plan"
        profile_max = next(iter((target.get("profile") or {}).values()), {}).get("max") or [DEFAULT_MAX_BATCH]
        batch = max_batch_size or int(profile_max[0])
        if batch > int(profile_max[0]):
            raise InputError(f"max batch {batch} exceeds the engine's profile maximum {profile_max[0]}")
    else:
        source, file_name, platform = bundle_dir / manifest["artifacts"]["model"], "model.onnx", "onnxruntime_onnx"
        batch = max_batch_size or DEFAULT_MAX_BATCH
    config = config_text(manifest, name, platform, batch)
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
    return TritonResult(repository, model_dir, name, platform, batch, config)


def package_triton(directory: Path, repository: Path, **options: Any) -> TritonResult:
    """Write a Triton model repository straight from an export directory (see :func:`write_triton_repository`)."""
    from resnext_deploy.bundle.pack import stage_contents

    _, generated, manifest = stage_contents(Path(directory))
    return write_triton_repository(Path(directory), manifest, repository, generated=generated, **options)
