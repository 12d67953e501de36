"""A TensorRT build as plain data, then translated to Polygraphy's lazy TensorRT loaders.

The plan is pure Python (testable without TensorRT); ``to_polygraphy`` builds the loader chain
``NetworkFromOnnxPath -> CreateConfig (+ PostprocessConfig) -> EngineBytesFromNetwork`` whose
constructors do not touch TensorRT: enum-valued settings (workspace pool, hardware compatibility)
are resolved by ``TrtEnumSettings`` only when the config is created on a machine with TensorRT.

TensorRT API used by this package directly, all present in 10.x and 11.x:
``trt.__version__``, ``trt.Runtime``, ``Runtime.engine_host_code_allowed``, ``Runtime.deserialize_cuda_engine``
(``runtime.py``), ``trt.MemoryPoolType.WORKSPACE``, ``IBuilderConfig.set_memory_pool_limit``,
``trt.HardwareCompatibilityLevel.AMPERE_PLUS``, ``IBuilderConfig.hardware_compatibility_level``,
``IBuilderConfig.create_timing_cache`` / ``set_timing_cache`` (``timing_cache.py``),
``ICudaEngine.create_engine_inspector`` / ``IEngineInspector.get_engine_information`` (``layers.py``),
``IExecutionContext.set_all_tensors_debug_state`` (``runner.py``). Through Polygraphy with our arguments:
``NetworkDefinitionCreationFlag.STRONGLY_TYPED``, ``OnnxParser.parse_from_file``,
``IBuilderConfig.add_optimization_profile`` / ``builder_optimization_level`` / timing cache calls,
``BuilderFlag.TF32`` (set, or cleared), ``BuilderFlag.VERSION_COMPATIBLE``, ``Builder.build_serialized_network``.
No ``BuilderFlag.FP16/INT8`` and no calibrator: precision comes from the strongly typed graph (TensorRT 11
removed them); TF32 is allowed with strong typing and only affects FP32 layers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from resnext_deploy.engines.base import BuildOptions, model_base, precision_of, require_onnx_file
from resnext_deploy.errors import InputError, NotAvailableError
from resnext_deploy.onnx_io import read_graph_io

HARDWARE_COMPATIBILITY_LEVEL = "AMPERE_PLUS"
MIN_HARDWARE_COMPATIBLE_CC = (8, 0)


@dataclasses.dataclass(frozen=True)
class InputInfo:
    """One graph input: name, shape (-1 for dynamic dims) and numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclasses.dataclass(frozen=True)
class TrtEnumSettings:
    """Builder settings whose values are TensorRT enums, applied when the config is created.

    Used as Polygraphy's ``PostprocessConfig`` function, so constructing the loaders needs no TensorRT.
    A TensorRT release without the enum member, or refusing the value, raises ``NotAvailableError``
    naming the option instead of an ``AttributeError``/``RuntimeError`` traceback.
    """

    workspace_bytes: int | None = None
    hardware_compatibility_level: str | None = None

    def __call__(self, builder: Any, network: Any, config: Any) -> None:
        import tensorrt as trt

        if self.workspace_bytes is not None:
            with _enum_setting(trt, "--workspace-mb", "MemoryPoolType.WORKSPACE"):
                config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_bytes)
        if self.hardware_compatibility_level is not None:
            member = f"HardwareCompatibilityLevel.{self.hardware_compatibility_level}"
            with _enum_setting(trt, "--hardware-compatible", member):
                config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, self.hardware_compatibility_level)


@contextlib.contextmanager
def _enum_setting(trt: Any, option: str, member: str) -> Iterator[None]:
    """Map TensorRT's errors for one enum-valued setting to ``NotAvailableError`` naming the option."""
    try:
        yield
    except AttributeError:
        raise NotAvailableError(
            f"TensorRT {trt.__version__} has no {member}, which {option} needs", hint=f"drop {option}, or use a newer TensorRT"
        ) from None
    except (RuntimeError, TypeError, ValueError) as exc:
        raise NotAvailableError(
            f"TensorRT {trt.__version__} refused {member} for {option}: {exc}", hint=f"drop {option} or change its value"
        ) from None


@dataclasses.dataclass(frozen=True)
class TrtBuildPlan:
    """Everything a TensorRT build needs, decided before TensorRT is touched."""

    onnx_path: Path
    engine_path: Path
    precision: str
    inputs: tuple[InputInfo, ...]
    outputs: tuple[InputInfo, ...]
    profile: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
    strongly_typed: bool = True
    workspace_bytes: int | None = None
    builder_optimization_level: int = 3
    timing_cache: Path | None = None
    hardware_compatibility_level: str | None = None
    version_compatible: bool = False
    tf32: bool = True  # trtexec's default (TensorRT's own); Polygraphy's CreateConfig clears it unless asked

    @property
    def sidecar_path(self) -> Path:
        """``model.int8.engine`` -> ``model.int8.engine.json``."""
        return self.engine_path.with_name(self.engine_path.name + ".json")

    def profile_dict(self) -> dict[str, dict[str, list[int]]]:
        """JSON-ready profile: input -> {min, opt, max}."""
        return {name: {"min": list(lo), "opt": list(opt), "max": list(hi)} for name, (lo, opt, hi) in self.profile.items()}

    def to_polygraphy(self) -> Any:
        """The lazy Polygraphy loader chain; calling it builds and returns the serialized engine."""
        from polygraphy.backend.trt import (
            CreateConfig,
            EngineBytesFromNetwork,
            NetworkFromOnnxPath,
            PostprocessConfig,
            Profile,
        )

        profile = Profile()
        for name, (lo, opt, hi) in self.profile.items():
            profile.add(name, min=lo, opt=opt, max=hi)
        network = NetworkFromOnnxPath(os.fspath(self.onnx_path), strongly_typed=self.strongly_typed)
        cache = os.fspath(self.timing_cache) if self.timing_cache is not None else None
        config = CreateConfig(
            tf32=self.tf32,
            profiles=[profile],
            builder_optimization_level=self.builder_optimization_level,
            load_timing_cache=cache,
            version_compatible=self.version_compatible,
        )
        enums = TrtEnumSettings(self.workspace_bytes, self.hardware_compatibility_level)
        if enums != TrtEnumSettings():
            config = PostprocessConfig(config, enums)
        return EngineBytesFromNetwork(network, config=config, save_timing_cache=cache)


def graph_io(onnx_path: Path) -> tuple[tuple[InputInfo, ...], tuple[InputInfo, ...]]:
    """Inputs (excluding initializers) and outputs of an ONNX file, without external data."""
    inputs, outputs = read_graph_io(onnx_path)
    return tuple(InputInfo(t.name, t.shape, t.dtype) for t in inputs), tuple(
        InputInfo(t.name, t.shape, t.dtype) for t in outputs
    )


def engine_path_for(onnx_path: Path, options: BuildOptions, output_dir: Path | None = None) -> Path:
    """``dir/model.int8.onnx`` -> ``output_dir/model.int8.engine``; ``model.onnx`` -> ``model.fp32.engine``."""
    return (output_dir or onnx_path.parent) / f"{model_base(onnx_path)}.{precision_of(onnx_path, options)}.engine"


def make_plan(onnx_path: Path, options: BuildOptions, output_dir: Path | None = None) -> TrtBuildPlan:
    """Decide the build from the ONNX inputs and options: one profile over the dynamic batch axis."""
    onnx_path = require_onnx_file(onnx_path)
    inputs, outputs = graph_io(onnx_path)
    profile = {}
    for spec in inputs:
        if not spec.shape or any(dim < 0 for dim in spec.shape[1:]):
            raise InputError(
                f"input {spec.name!r} has shape {spec.shape}; only the batch (first) dimension may be dynamic",
                hint="export with a fixed image size",
            )
        rest = spec.shape[1:]
        if spec.shape[0] < 0:
            profile[spec.name] = tuple((b, *rest) for b in (options.min_batch, options.opt_batch, options.max_batch))
        else:
            profile[spec.name] = (spec.shape, spec.shape, spec.shape)
    return TrtBuildPlan(
        onnx_path=onnx_path,
        engine_path=engine_path_for(onnx_path, options, output_dir),
        precision=precision_of(onnx_path, options),
        inputs=inputs,
        outputs=outputs,
        profile=profile,
        workspace_bytes=options.workspace_mb * (1 << 20) if options.workspace_mb is not None else None,
        builder_optimization_level=options.builder_optimization_level,
        timing_cache=Path(options.timing_cache) if options.timing_cache is not None else None,
        hardware_compatibility_level=HARDWARE_COMPATIBILITY_LEVEL if options.hardware_compatible else None,
        version_compatible=options.version_compatible,
        tf32=options.tf32,
    )
