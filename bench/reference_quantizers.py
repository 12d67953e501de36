"""INT8 Q/DQ ONNX from a reference quantizer (NNCF or NVIDIA ModelOpt), for bench_mixed.py's reference points.

Runs with the python of the tool's own virtual environment (``bench/reference_venvs.sh`` makes them under
``out/bench-venvs/<tool>/``), so it imports neither resnext_deploy nor anything the tool venv lacks: numpy,
onnx and the tool. Input: our FP32 ONNX and a ``.npy`` of the calibration images, (N, 3, H, W) float32,
already preprocessed by the project's own code (bench_mixed.py decodes the INT8 export's calibration manifest).
Output: ``--output`` (the Q/DQ ONNX, carrying the FP32 model's metadata_props with precision ``int8`` and a
``quantizer`` record) and ``<output stem>.json`` beside it (tool, version, settings, seconds).

Settings, each tool's documented post-training path with its defaults except where said:

* ``nncf``: ``nncf.quantize(onnx.ModelProto, nncf.Dataset(...), subset_size=N)``: preset None (performance,
  symmetric, for a CNN), target_device ANY, fast bias correction on; every calibration image, one per step.
* ``modelopt``: ``modelopt.onnx.quantization.quantize(path, quantize_mode="int8", calibration_data=array, ...)``:
  entropy calibration (its INT8 default) on the CPU execution provider (``calibration_eps=["cpu"]``: no GPU
  here), ``high_precision_dtype="fp32"`` (its default fp16 would also turn the unquantized rest of the graph into
  FP16 for TensorRT; fp32 keeps the comparison with our FP32-between-Q/DQ artifacts about quantization alone).

No network, nothing under $HOME: before a tool is imported, NNCF's telemetry is turned off (``NNCF_CI=1``: NNCF
then uses a stub instead of openvino-telemetry; and openvino-telemetry's consent file says declined, ``0``, as its
``opt_in_out --opt_out`` writes it), ONNX Runtime's ``disable_telemetry_events()`` is called, and HOME and every cache folder the tools or torch may use point into
``--scratch`` (default: ``<output>.scratch/``). ModelOpt 0.47 sends no telemetry.

Exit codes: 0 written, 1 the tool failed (one line on stderr says why), 2 bad arguments (before any import).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

TOOLS = ("nncf", "modelopt")
CACHE_VARIABLES = ("XDG_CACHE_HOME", "TORCH_HOME", "TORCH_EXTENSIONS_DIR", "CUPY_CACHE_DIR", "TRITON_CACHE_DIR",
                   "MPLCONFIGDIR", "HF_HOME")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Arguments, checked (exit 2) before numpy, onnx or a tool is imported."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tool", choices=TOOLS)
    parser.add_argument("--fp32", type=Path, required=True, help="the FP32 ONNX to quantize (our export's model.onnx)")
    parser.add_argument("--calibration", type=Path, required=True, help=".npy of (N, 3, H, W) float32 images")
    parser.add_argument("--output", type=Path, required=True, help="the INT8 Q/DQ ONNX to write")
    parser.add_argument("--scratch", type=Path, help="HOME and caches of the tool [default: <output>.scratch/]")
    args = parser.parse_args(argv)
    for name in ("fp32", "calibration"):
        if not getattr(args, name).is_file():
            parser.error(f"--{name} {getattr(args, name)} is not a file")
    if args.fp32.suffix != ".onnx" or args.output.suffix != ".onnx":
        parser.error("--fp32 and --output must be .onnx files")
    if args.calibration.suffix != ".npy":
        parser.error("--calibration must be a .npy file")
    if args.output.resolve() == args.fp32.resolve():
        parser.error("--output would overwrite --fp32")
    args.scratch = args.scratch or args.output.with_name(args.output.stem + ".scratch")
    return args


def isolate(scratch: Path) -> None:
    """Telemetry off and HOME and caches inside ``scratch``, before any tool is imported."""
    home = (scratch / "home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["NNCF_CI"] = "1"  # nncf/telemetry/wrapper.py: a stub instead of openvino_telemetry
    os.environ["HOME"] = str(home)  # openvino_telemetry's consent file, ~/.cache/nncf and the like
    # NNCF builds an openvino_telemetry client at import, before NNCF_CI swaps in the stub; without a consent file
    # it counts as consent and writes a client id: the declined consent file that `opt_in_out --opt_out` writes
    consent = home / "intel" / "openvino_telemetry"
    consent.parent.mkdir(exist_ok=True)
    consent.write_text("0")
    for variable in CACHE_VARIABLES:
        os.environ[variable] = str(home / ".cache" / variable.lower())
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def load_calibration(path: Path, fp32: Any) -> Any:
    """The calibration array, checked against the model's input (N >= 1, float32, 3 channels, its H and W)."""
    import numpy as np

    images = np.load(path)
    dims = [d.dim_value for d in fp32.graph.input[0].type.tensor_type.shape.dim]
    if images.ndim != 4 or images.dtype != np.float32 or len(images) == 0 or images.shape[1] != 3:
        raise ValueError(f"{path}: expected (N, 3, H, W) float32 images, got {images.dtype} {images.shape}")
    if len(dims) == 4 and all(dims[2:]) and list(images.shape[2:]) != dims[2:]:
        raise ValueError(f"{path}: images are {images.shape[2:]}, the model takes {dims[2:]}")
    return images


def quantize_nncf(fp32_path: Path, images: Any, output: Path) -> tuple[str, dict[str, Any]]:
    """NNCF's ONNX post-training quantization with its CNN defaults; (version, settings)."""
    import nncf
    import onnx

    model = onnx.load(str(fp32_path))
    name = model.graph.input[0].name
    dataset = nncf.Dataset(range(len(images)), lambda index: {name: images[index : index + 1]})
    quantized = nncf.quantize(model, dataset, subset_size=len(images))
    onnx.save(quantized, str(output))
    return nncf.__version__, {"api": "nncf.quantize", "preset": "default (performance for a CNN)",
                              "target_device": "ANY", "fast_bias_correction": True, "subset_size": len(images),
                              "calibration_batch": 1}


def quantize_modelopt(fp32_path: Path, images: Any, output: Path) -> tuple[str, dict[str, Any]]:
    """ModelOpt's ONNX INT8 PTQ, calibrated on the CPU provider, FP32 between the Q/DQ pairs; (version, settings)."""
    import modelopt
    from modelopt.onnx.quantization import quantize

    settings = {"quantize_mode": "int8", "calibration_method": "entropy", "calibration_eps": ["cpu"],
                "high_precision_dtype": "fp32"}
    quantize(str(fp32_path), calibration_data=images, output_path=str(output), log_level="WARNING", **settings)
    return modelopt.__version__, {"api": "modelopt.onnx.quantization.quantize", **settings,
                                  "calibration_images": len(images), "calibration_batch": 1}


def stamp(output: Path, fp32: Any, record: dict[str, Any]) -> int:
    """Give ``output`` the FP32 model's metadata_props (precision int8, a quantizer record); its QuantizeLinear count."""
    import onnx

    model = onnx.load(str(output))
    ours = {prop.key: prop.value for prop in fp32.metadata_props}
    ours |= {"precision": json.dumps("int8"), "quantizer": json.dumps(record, sort_keys=True)}
    if "opset" in ours:  # ModelOpt raises the opset to the 19 its INT8 needs
        ours["opset"] = json.dumps(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))
    kept = [(prop.key, prop.value) for prop in model.metadata_props if prop.key not in ours]
    del model.metadata_props[:]
    for key, value in [*kept, *ours.items()]:
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(output))
    return sum(node.op_type == "QuantizeLinear" for node in model.graph.node)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Quantize from a copy of the FP32 model in the scratch folder (tools write files beside their input)."""
    import onnx
    import onnxruntime

    onnxruntime.disable_telemetry_events()  # the tools calibrate with ONNX Runtime (a no-op where it has none)
    fp32 = onnx.load(str(args.fp32), load_external_data=False)
    images = load_calibration(args.calibration, fp32)
    source = args.scratch / "model.onnx"
    shutil.copyfile(args.fp32, source)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    version, settings = (quantize_nncf if args.tool == "nncf" else quantize_modelopt)(source, images, args.output)
    seconds = time.perf_counter() - started
    record = {"tool": args.tool, "version": version, "settings": settings, "calibration_images": len(images)}
    quantizers = stamp(args.output, fp32, record)
    if quantizers == 0:
        raise RuntimeError(f"{args.output.name} holds no QuantizeLinear node")
    source.unlink()
    return record | {"quantize_seconds": seconds, "quantize_linear_nodes": quantizers, "fp32": str(args.fp32),
                     "output": str(args.output)}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    isolate(args.scratch)
    try:
        record = run(args)
    except Exception as exc:  # one line for the bench to print; the traceback is in the child's stderr log
        import traceback

        traceback.print_exc()
        print(f"reference {args.tool}: failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return 1
    args.output.with_suffix(".json").write_text(json.dumps(record, indent=1))
    print(f"reference {args.tool}: wrote {args.output} ({record['quantize_linear_nodes']} QuantizeLinear nodes, "
          f"{record['quantize_seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
