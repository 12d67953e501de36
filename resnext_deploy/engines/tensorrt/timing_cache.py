"""A timing cache TensorRT cannot use is rebuilt with a warning instead of failing or lingering.

Polygraphy's ``CreateConfig`` loads the file with ``IBuilderConfig.create_timing_cache`` (which
raises, or returns None, for a cache from another TensorRT version or a damaged file) and attaches
it with ``set_timing_cache(cache, ignore_mismatch=False)``, whose False (a cache from another GPU or
CUDA version) it ignores; ``EngineBytesFromNetwork`` then merges the old file back in with
``ignore_mismatch=True``. So before the build the same two calls probe the file, and a stale one
is removed: the build starts from an empty cache and saves a fresh one at the same path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resnext_deploy.engines.tensorrt.failures import log_tail, tensorrt_error
from resnext_deploy.errors import NotAvailableError

log = logging.getLogger(__name__)


def timing_cache_problem(config: Any, data: bytes) -> str | None:
    """Why TensorRT cannot use serialized cache ``data`` with builder ``config``, or None when it can."""
    try:
        cache = config.create_timing_cache(data)
    except (RuntimeError, TypeError, ValueError) as exc:
        return f"TensorRT cannot read it ({exc})"
    if cache is None:
        return "TensorRT cannot read it (written by another TensorRT version, or damaged)"
    try:
        attached = config.set_timing_cache(cache, ignore_mismatch=False)
    except (RuntimeError, TypeError, ValueError) as exc:
        return f"TensorRT refuses it ({exc})"
    if attached is False:
        return "it was written on another GPU or CUDA version"
    return None


def builder_config() -> tuple[Any, Any]:
    """A throw-away (builder, builder config) pair; the builder is returned to keep the config's owner alive."""
    import tensorrt as trt
    from polygraphy.backend.trt import util as trt_util

    builder = trt.Builder(trt_util.get_trt_logger())
    return builder, builder.create_builder_config()


def drop_stale_timing_cache(path: Path | None, make_config: Callable[[], tuple[Any, Any]] = builder_config) -> str | None:
    """Remove ``path`` when TensorRT cannot use it and return why (logged as a warning); None when it is fine or absent."""
    if path is None or not path.is_file():
        return None
    data = path.read_bytes()
    if not data:
        return None  # an empty file is an empty cache to Polygraphy
    with log_tail() as trt_log:
        try:
            _owner, config = make_config()
        except (RuntimeError, TypeError, AttributeError, MemoryError) as exc:  # trt.Builder: "returned nullptr", ...
            raise tensorrt_error(f"TensorRT could not create a builder to check the timing cache {path}", exc, trt_log.text,
                                 default=NotAvailableError) from None
    if config is None:
        raise NotAvailableError(f"TensorRT could not create a builder config to check the timing cache {path}",
                                hint="see TensorRT's log above; run with --debug for the traceback")
    problem = timing_cache_problem(config, data)
    if problem is not None:
        log.warning("timing cache %s is stale: %s; rebuilding it during this build", path, problem)
        path.unlink(missing_ok=True)
    return problem
