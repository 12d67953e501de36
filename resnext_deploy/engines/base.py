"""The one interface every backend implements: build options, built artifacts, runners.

Modelled on Polygraphy's loader/runner split (``polygraphy/backend/base``): a backend *builds*
an artifact from an ONNX file once, then *loads* it into a runner, a context manager that checks
its feed and times pure inference. Nothing here imports a backend library.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import posixpath
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from resnext_deploy.environment import usable_cores
from resnext_deploy.errors import InputError, UsageError, shorten
from resnext_deploy.layout import PRECISIONS, is_plain_name, split_artifact_name
from resnext_deploy.metadata import read_metadata


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """How to build and run an artifact; each backend reads the fields that apply to it."""

    precision: str | None = None  # informational: the graph carries its own types; None = from the file name
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 32
    workspace_mb: int | None = None
    threads: int | None = None  # ONNX Runtime intra-op threads; None = every core this process may use
    builder_optimization_level: int = 3
    timing_cache: Path | None = None
    hardware_compatible: bool = False
    version_compatible: bool = False
    tf32: bool = True  # TensorRT: let FP32 layers use TF32 tensor cores (trtexec's default; --no-tf32 turns it off)
    providers: tuple[str, ...] | None = None  # ONNX Runtime execution providers; None = every working one, GPU first

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise UsageError(
                f"batch range must satisfy 1 <= min <= opt <= max, got "
                f"min={self.min_batch} opt={self.opt_batch} max={self.max_batch}",
                hint="pass e.g. --min-batch 1 --opt-batch 8 --max-batch 32",
            )
        if self.workspace_mb is not None and self.workspace_mb <= 0:
            raise UsageError(f"workspace must be positive, got {self.workspace_mb} MiB")
        if self.threads is not None and self.threads <= 0:
            raise UsageError(f"threads must be positive, got {self.threads}", hint="omit --threads to use all cores")
        if not 0 <= self.builder_optimization_level <= 5:
            raise UsageError(
                f"builder optimization level must be 0..5, got {self.builder_optimization_level}"
            )
        if self.precision is not None and self.precision not in PRECISIONS:
            raise UsageError(
                f"unknown precision {self.precision!r}", hint=f"use one of {', '.join(PRECISIONS)}"
            )

    @property
    def intra_op_threads(self) -> int:
        """Threads for ONNX Runtime's intra-op pool: the option, else every usable core."""
        return self.threads if self.threads is not None else usable_cores()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view, as recorded in sidecars."""
        values = dataclasses.asdict(self)
        values["timing_cache"] = str(self.timing_cache) if self.timing_cache is not None else None
        return values


def precision_of(onnx_path: Path, options: BuildOptions) -> str:
    """The artifact's precision: the option, else the ``model.<precision>[.<target>].onnx`` name, else fp32."""
    if options.precision is not None:
        return options.precision
    return split_artifact_name(Path(onnx_path).name)[1] or "fp32"


def model_base(onnx_path: Path) -> str:
    """``model.int8.onnx`` and ``model.int8.tensorrt.onnx`` -> ``model``: the name without precision and target."""
    return split_artifact_name(Path(onnx_path).name)[0]


@dataclasses.dataclass(frozen=True)
class BuiltArtifact:
    """What a build left on disk: the runnable file, its source and its metadata sidecar."""

    backend: str
    path: Path
    source_onnx: Path
    sidecar: Path
    metadata: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view for manifests and reports."""
        return {
            "backend": self.backend,
            "path": str(self.path),
            "source_onnx": str(self.source_onnx),
            "sidecar": str(self.sidecar),
            "metadata": self.metadata,
        }


class TensorSpec(NamedTuple):
    """Shape (``-1`` for a dynamic dimension) and numpy dtype of one input."""

    shape: tuple[int, ...]
    dtype: np.dtype


def model_metadata(onnx_path: Path) -> dict[str, Any]:
    """The artifact's own metadata_props, or {} for a graph that carries none."""

    try:
        return read_metadata(onnx_path)
    except InputError:
        return {}


def format_shape(shape: tuple[int, ...]) -> str:
    """``(-1, 3, 224, 224)`` -> ``(N, 3, 224, 224)`` for messages."""
    return "(" + ", ".join("N" if dim < 0 else str(dim) for dim in shape) + ")"


class Runner(abc.ABC):
    """A loaded artifact: a context manager whose ``infer`` checks its feed and times the backend call."""

    backend: str = "base"
    # what ``last_inference_time`` covers, recorded next to every latency figure
    latency_scope: str = "end-to-end, host buffers: the backend call on host arrays, outputs copied out"

    def __init__(self, input_specs: dict[str, TensorSpec], output_names: list[str]) -> None:
        self._specs = dict(input_specs)
        self._outputs = list(output_names)
        self.last_inference_time: float | None = None
        self.is_active = False

    def __enter__(self) -> Runner:
        self.activate()
        self.is_active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.is_active = False
        self.deactivate()

    def activate(self) -> None:
        """Acquire backend resources (sessions, contexts, device memory)."""

    def deactivate(self) -> None:
        """Release what ``activate`` acquired."""

    @property
    def input_specs(self) -> dict[str, TensorSpec]:
        """Input name -> (shape with -1 for dynamic dims, dtype)."""
        return dict(self._specs)

    @property
    def output_names(self) -> list[str]:
        """Output names in graph order."""
        return list(self._outputs)

    @abc.abstractmethod
    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The backend call alone, on an already checked feed."""

    def check_feed(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Raise ``InputError`` naming expected and given when ``feed`` does not fit the inputs."""
        specs = self.input_specs
        if set(feed) != set(specs):
            missing, extra = sorted(set(specs) - set(feed)), sorted(set(feed) - set(specs))
            raise InputError(
                f"{self.backend} runner expects inputs {sorted(specs)}, given {sorted(feed)}"
                + (f" (missing {missing})" if missing else "")
                + (f" (unexpected {extra})" if extra else ""),
                hint="name the feed after the model's inputs",
            )
        checked: dict[str, np.ndarray] = {}
        for name, spec in specs.items():
            array = feed[name]
            if not isinstance(array, np.ndarray):
                raise InputError(f"input {name!r} must be a numpy array, given {type(array).__name__}")
            if array.dtype != spec.dtype:
                raise InputError(
                    f"input {name!r} expects dtype {spec.dtype}, given {array.dtype}",
                    hint=f"convert with array.astype(np.{spec.dtype})",
                )
            fits = array.ndim == len(spec.shape) and all(
                want < 0 or want == got for want, got in zip(spec.shape, array.shape)
            )
            if not fits:
                raise InputError(
                    f"input {name!r} expects shape {format_shape(spec.shape)}, given {tuple(array.shape)}"
                )
            checked[name] = np.ascontiguousarray(array)
        self.check_batch(checked)
        return checked

    def check_batch(self, feed: dict[str, np.ndarray]) -> None:
        """Backend-specific limits on dynamic dims (e.g. an optimization profile); none by default."""

    @property
    def batch_range(self) -> tuple[int, int | None]:
        """(smallest, largest) batch this runner accepts; largest None when unbounded (TensorRT: its profile)."""
        return 1, None

    def infer_padded(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``infer`` on a batch smaller than the runner's smallest (a TensorRT profile's minimum): the batch is
        padded by repeating its last item, and the outputs are cut back to the batch given."""
        size = len(next(iter(feed.values())))
        low = self.batch_range[0]
        if size == 0 or size >= low:
            return self.infer(feed)
        padded = {name: np.concatenate([array, np.repeat(array[-1:], low - size, axis=0)]) for name, array in feed.items()}
        return {name: output[:size] for name, output in self.infer(padded).items()}

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; ``last_inference_time`` is the backend call alone, in seconds."""
        if not self.is_active:
            raise UsageError(f"{self.backend} runner used outside its `with` block")
        checked = self.check_feed(feed)
        start = time.perf_counter()
        outputs = self._run(checked)
        self.last_inference_time = time.perf_counter() - start
        return outputs


@dataclasses.dataclass(frozen=True)
class TritonEntry:
    """How Triton serves this backend's artifact: ``platform`` or ``backend``, the file and its source."""

    model_file: str  # name inside the version folder: "model.onnx", "model.plan"
    serves: str  # "onnx": the bundle's precision ONNX; "engine": the recorded engine artifact
    platform: str | None = None  # Triton `platform:` (onnxruntime_onnx, tensorrt_plan)
    backend: str | None = None  # Triton `backend:` (openvino)
    instance_kind: str = "KIND_AUTO"
    parameters: Callable[[str], Mapping[str, str]] | None = None  # precision -> config.pbtxt `parameters`
    default_model_filename: str | None = None  # when the backend's own default file name differs
    default_when_recorded: bool = True  # serve it by default when the bundle records this engine
    serve_args: Callable[[dict[str, Any]], tuple[str, ...]] | None = None  # recorded target -> tritonserver arguments
    check_target: Callable[[dict[str, Any], str | None], list[str]] | None = None  # (target, Triton release) -> warnings


@dataclasses.dataclass(frozen=True)
class EngineFile:
    """A built engine file read with its sidecar: what runs it and what model it holds (for bare-file commands)."""

    backend: str
    path: Path
    source_onnx: Path  # the ONNX it was built from, as the sidecar records it (relative to the engine's folder)
    precision: str
    metadata: dict[str, Any]  # the source ONNX's metadata_props, recorded at build time
    input_name: str
    output_name: str
    max_batch: int | None  # the largest batch it takes (its profile), None when unbounded


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """What the rest of the toolchain may know about one backend."""

    name: str
    title: str  # for people: "ONNX Runtime"
    make: Callable[[], Any]  # -> a Backend (engines.base.Backend); imports the backend package lazily
    install_hint: str
    default_recipe: str  # the INT8 Q/DQ recipe `--recipe auto` picks for this backend (calibration/recipes.py)
    sidecar_suffix: str  # the engine sidecar's file name ends with this
    loads_from_onnx: bool  # load(precision ONNX) finds its own cache/sidecar, or compiles in memory
    target_record: Callable[[dict[str, Any], str], dict[str, Any]]  # (sidecar, sidecar name) -> bundle target
    target_mismatch: Callable[[Path, dict[str, Any]], str | None]  # (bundle dir, target) -> why it cannot run here
    describe_target: Callable[[dict[str, Any]], str]  # one line for `inspect`
    rebuild_hint: str  # the command that rebuilds this backend's engine in a bundle
    triton: TritonEntry | None = None
    auto_precisions: tuple[str, ...] = ()  # precisions for which `auto` prefers it when available (see auto_rule)
    auto_machines: tuple[str, ...] = ()  # platform.machine() values where that preference was measured; () = any
    packages: tuple[str, ...] = ()  # distribution names whose versions reports record
    check_artifact: Callable[[Path], None] | None = None  # refuses (InputError) an ONNX artifact it cannot take
    module: str = ""  # the import name whose presence means "installed" (doctor); "" = the name
    details: Callable[[], dict[str, Any]] | None = None  # facts `doctor` shows when usable (providers, device, GPU)
    engine_suffix: str | None = None  # a built engine file that runs alone ends with this (TensorRT: ".engine")
    read_engine_file: Callable[[Path], EngineFile] | None = None  # reads such a file with its sidecar (InputError if not)
    int8_recipes: tuple[str, ...] = ()  # the INT8 recipes whose Q/DQ it can build an engine from; () = any
    check_options: Callable[[BuildOptions], None] | None = None  # refuses (UsageError) options it cannot honour, early
    # float types (layout.FALLBACK_PRECISIONS) this engine runs INT8 fallback layers in on this machine, fastest first
    fallback_precisions: Callable[[], tuple[str, ...]] = lambda: ("fp32",)

    def backend(self) -> Any:
        """A fresh Backend object."""
        return self.make()


class Backend(abc.ABC):
    """Builds artifacts from ONNX and loads them into runners (Polygraphy's loader/runner split).

    A backend says whether it runs here (``availability``: ok, why, what to do), builds an ONNX
    artifact into its engine plus sidecar, and loads an engine (or the ONNX) into a ``Runner``.
    ``availability`` has a default built on ``available``; a backend that knows what to install
    overrides it, so callers never probe for optional methods.
    """

    name: str

    @abc.abstractmethod
    def available(self) -> tuple[bool, str]:
        """Whether this machine can run the backend, and why not."""

    def availability(self) -> tuple[bool, str, str]:
        """(ok, why, what to do): ``available`` plus an install hint (empty: the spec's)."""
        ok, why = self.available()
        return ok, why, ""

    @abc.abstractmethod
    def build(self, onnx_path: Path, options: BuildOptions, output_dir: Path | None = None) -> BuiltArtifact:
        """Turn an ONNX file into this backend's artifact plus sidecar, written atomically."""

    @abc.abstractmethod
    def load(self, artifact_or_path: BuiltArtifact | Path, options: BuildOptions | None = None) -> Runner:
        """A runner (not yet active) for a built artifact or a path to one."""


MAX_SIDECAR_BYTES = 4 * 1024 * 1024  # an engine sidecar is a few KB of JSON


def file_beside(sidecar: Path, recorded: object, expected: str, what: str, hint: str) -> Path:
    """The file a sidecar names, which must be the plain name ``expected`` in the sidecar's own folder.

    A sidecar only describes the files built with it, so anything else (a path elsewhere, a folder part,
    another artifact's name, not a string) is refused: loading it would run a file the sidecar's own
    checksums cannot vouch for (e.g. the FP32 engine reported as INT8).
    """
    if not is_plain_name(recorded) or recorded != expected:
        raise InputError(f"{sidecar} names {what} {shorten(repr(recorded), 120)}; an engine sidecar may only name "
                         f"{expected!r} beside it", hint=hint)
    return sidecar.parent / expected


def target_header(name: str, sidecar: dict[str, Any], sidecar_name: str, file_key: str) -> dict[str, Any]:
    """What every bundle target record starts with: the backend, its engine file (the ``path`` the sidecar's
    ``file_key`` record names, beside the sidecar), the sidecar and the precision."""
    record = sidecar.get(file_key)
    engine = record.get("path") if isinstance(record, dict) and isinstance(record.get("path"), str) else None
    return {
        "backend": name,
        "artifact": posixpath.join(posixpath.dirname(sidecar_name), engine) if engine else None,
        "sidecar": sidecar_name,
        "precision": sidecar.get("precision"),
    }


def require_onnx_file(onnx_path: str | os.PathLike[str]) -> Path:
    """The ONNX path as ``Path``, or ``InputError`` when it is missing or empty."""
    path = Path(onnx_path)
    if not path.is_file():
        raise InputError(f"ONNX file not found: {path}", hint="run `resnext-deploy export` first")
    if path.stat().st_size == 0:
        raise InputError(f"ONNX file is empty: {path}", hint="re-export it")
    return path
