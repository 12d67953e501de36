"""The two sides of a comparison, both behind the engines ``Runner`` interface.

Baseline: ``model.onnx`` on ONNX Runtime, or the PyTorch model rebuilt from the report's weights.
Target: the precision artifact on the backend recorded in the report (or the one asked for).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resnext_deploy.engines import DEFAULT_BACKEND, BuildOptions, default_recipe, get_spec, select_for
from resnext_deploy.engines.base import Runner, TensorSpec
from resnext_deploy.errors import InputError, UsageError
from resnext_deploy.exporters.models import build_model
from resnext_deploy.layout import FP32_NAME, artifact_name
from resnext_deploy.report import Report, WeightsRecord
from resnext_deploy.zoo import get_model_spec


@dataclass
class Side:
    """A runner (not yet entered) with what the report says about it."""

    runner: Runner
    description: dict[str, Any]


class TorchRunner(Runner):
    """A PyTorch module in eval mode, fed and timed like every other runner."""

    backend = "torch"

    def __init__(self, model: Any, input_size: int, threads: int | None = None) -> None:
        super().__init__({"input": TensorSpec((-1, 3, input_size, input_size), np.dtype(np.float32))}, ["logits"])
        self.model = model
        self.input_size = input_size
        self.threads = threads

    def activate(self) -> None:
        import torch

        if self.threads is not None:
            torch.set_num_threads(self.threads)

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            return {"logits": self.model(torch.from_numpy(feed["input"])).numpy()}


def torch_weights_argument(report: Report) -> str:
    """The ``build_model`` weights argument that reproduces the report's weights, or a ``UsageError``."""
    weights = report.weights or WeightsRecord()
    kind, origin = weights.kind, str(weights.origin or "")
    if kind == "pretrained":
        return "pretrained"
    if kind == "file" and origin.startswith("file:"):
        path = Path(origin[len("file:"):])
        if not path.is_file():
            raise InputError(f"the checkpoint this export was made from is gone: {path}", hint="use --baseline onnx")
        return str(path)
    if kind == "random":
        raise UsageError(
            "--baseline torch cannot rebuild a model exported with random weights (they were never saved)",
            hint="use --baseline onnx (the FP32 export of the same weights)",
        )
    raise InputError(f"report.json does not say where the weights came from ({weights.model_dump(exclude_unset=True)!r})",
                     hint="use --baseline onnx")


def torch_baseline(report: Report, input_size: int, threads: int | None) -> Side:
    """The PyTorch model rebuilt from ``report.model.name`` and the recorded weights."""

    weights = torch_weights_argument(report)
    assert report.model is not None
    spec = get_model_spec(report.model.name)
    model, info = build_model(spec, weights)
    recorded = report.weights.sha256 if report.weights is not None else None
    if recorded and info.sha256 != recorded:
        raise InputError(
            f"the weights at {info.origin} changed since the export (sha256 {info.sha256[:12]} != {recorded[:12]})",
            hint="re-export, or use --baseline onnx",
        )
    return Side(TorchRunner(model, input_size, threads), {"kind": "torch", "backend": "torch", "weights": info.origin})


def onnx_baseline(directory: Path, report: Report, threads: int | None,
                  providers: tuple[str, ...] | None = ("CPUExecutionProvider",)) -> Side:
    """``model.onnx`` on the default backend (ONNX Runtime) with ``providers`` (default: CPU only; None: every
    working one, GPU first); the description records those asked for, the runner the ones that really ran."""
    name = report.artifacts.baseline() or FP32_NAME
    path = _existing(directory / name)
    runner = get_spec(DEFAULT_BACKEND).backend().load(
        path, BuildOptions(precision="fp32", threads=threads, providers=providers))
    return Side(runner, {"kind": "onnx", "backend": DEFAULT_BACKEND, "artifact": name, "precision": "fp32",
                         "requested_providers": list(providers) if providers is not None else "auto"})


def target_side(directory: Path, report: Report, backend: str | None, threads: int | None) -> Side:
    """The precision artifact made for ``backend`` (default: the one recorded in ``report.engine``) on that backend.

    An export with several INT8 targets holds one artifact per recipe (``artifacts.recipes``); the
    backend gets the one of its default recipe, and an artifact it cannot take is refused before its
    availability is even checked. A backend that loads from ONNX finds its own saved engine next to
    the artifact (or compiles in memory and says why); one that needs a built engine uses the recorded
    one or builds it here.
    """

    precision = report.precision or "fp32"
    recorded = report.engine.backend if report.engine is not None else None
    requested = backend or recorded or DEFAULT_BACKEND
    chosen, reason = select_for(requested, _existing(directory / target_artifact(report, requested)), precision)
    onnx_name = target_artifact(report, chosen.name)
    onnx_path = _existing(directory / onnx_name)
    options = BuildOptions(precision=precision, threads=threads)
    load_from: Path = onnx_path
    engine_name = report.artifacts.engine
    if not get_spec(chosen.name).loads_from_onnx:
        if engine_name and recorded == chosen.name:
            load_from = _existing(directory / engine_name)
        else:
            load_from = chosen.build(onnx_path, options).path
    runner = chosen.load(load_from, options)
    description = {
        "kind": "artifact", "backend": chosen.name, "backend_reason": reason if backend else f"recorded: {recorded or 'none'}",
        "artifact": onnx_name, "precision": precision,
    }
    return Side(runner, description)


def target_artifact(report: Report, backend: str) -> str:
    """The ONNX artifact made with ``backend``'s default recipe when the export made one, else the export's own."""

    precision = report.precision or "fp32"
    own = report.artifacts.named(precision) or artifact_name(precision)
    if precision != "int8" or not report.artifacts.recipes:
        return own
    return report.artifacts.recipes.get(default_recipe(backend), own)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise InputError(f"{path} is missing from the export directory", hint="re-run `resnext-deploy export` for it")
    return path
