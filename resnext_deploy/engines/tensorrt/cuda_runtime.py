"""Whether Polygraphy's TensorRT runner will find the CUDA runtime library, checked before anything runs.

Polygraphy (0.53) loads ``libcudart.so*`` from ``LD_LIBRARY_PATH``, ``/usr/local/cuda/lib64``,
``/usr/lib``, ``/lib`` and ``site-packages/nvidia/cuda_runtime/lib``, then falls back to the
dynamic loader's ``libcudart.so``. CUDA 13 wheels install the runtime as
``site-packages/nvidia/cu13/lib/libcudart.so.13``, which none of these finds, and the runner then
fails when it creates its first CUDA stream. The availability test asks the same question first
and, when the answer is no, says where the library is and what to set.
"""

from __future__ import annotations

import ctypes
import glob
import os
import site
import sys
from collections.abc import Sequence
from pathlib import Path

CUDART_GLOB = "libcudart.so*"
LOADER_FALLBACK = "libcudart.so"
# polygraphy 0.53's list, used when the installed polygraphy does not expose its own
_POLYGRAPHY_FIXED_DIRS = ("/usr/local/cuda/lib64", "/usr/lib", "/lib")


def polygraphy_search_dirs() -> list[str]:
    """The folders the installed Polygraphy searches for the CUDA runtime, in its order."""
    try:
        from polygraphy.cuda.cuda import _find_cuda_lib_dirs  # the installed version's own list
    except ImportError:
        paths = [*os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep), *_POLYGRAPHY_FIXED_DIRS]
        paths += [os.path.join(p, "nvidia", "cuda_runtime", "lib") for p in sys.path if p and os.path.isdir(p)]
        return list(dict.fromkeys(os.path.normpath(p) for p in paths if p))
    return list(_find_cuda_lib_dirs())


def other_cudart_dirs() -> list[str]:
    """Places a CUDA runtime often sits that Polygraphy does not search: wheel layouts, toolkits, distro folders."""
    roots = [p for p in [*sys.path, *site.getsitepackages(), site.getusersitepackages()] if p and os.path.isdir(p)]
    patterns = [os.path.join(root, "nvidia", "*", "lib") for root in roots]
    patterns += ["/usr/local/cuda*/lib64", "/usr/local/cuda*/lib", "/usr/local/cuda*/targets/*/lib",
                 "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64"]
    found = [folder for pattern in patterns for folder in sorted(glob.glob(pattern))]
    return list(dict.fromkeys(os.path.normpath(p) for p in found))


def find_cudart(dirs: Sequence[str]) -> list[Path]:
    """Every ``libcudart.so*`` in ``dirs``, in folder order."""
    return [Path(p) for folder in dirs for p in sorted(glob.glob(os.path.join(folder, CUDART_GLOB)))]


def cuda_runtime_problem(
    search_dirs: Sequence[str] | None = None,
    loader_fallback: str = LOADER_FALLBACK,
    elsewhere: Sequence[str] | None = None,
) -> tuple[str, str] | None:
    """None when Polygraphy will load a CUDA runtime; else (what is missing, what to do).

    The arguments default to what Polygraphy itself does (its folders, then the loader's
    ``libcudart.so``) and to the usual other places; tests pass their own.
    """
    if sys.platform == "win32":
        return None  # Polygraphy's Windows search (CUDA_PATH, PATH) is left to Polygraphy
    dirs = polygraphy_search_dirs() if search_dirs is None else list(search_dirs)
    if find_cudart(dirs):
        return None
    try:
        ctypes.CDLL(loader_fallback)
    except OSError:
        pass
    else:
        return None
    searched = ", ".join(dirs) or "(no folders)"
    message = (
        f"Polygraphy cannot find the CUDA runtime ({CUDART_GLOB}), which TensorRT's runner needs: "
        f"it searched {searched} and the dynamic loader has no {loader_fallback}"
    )
    found = find_cudart(other_cudart_dirs() if elsewhere is None else elsewhere)
    if found:
        hint = f"it is at {found[0]}; run `export LD_LIBRARY_PATH={found[0].parent}:$LD_LIBRARY_PATH` and retry"
    else:
        hint = (
            "install the CUDA runtime of your TensorRT wheel's CUDA version (CUDA 12: pip install nvidia-cuda-runtime-cu12; "
            "CUDA 13: pip install 'nvidia-cuda-runtime==13.*', then add site-packages/nvidia/cu13/lib to LD_LIBRARY_PATH), "
            "or the CUDA toolkit"
        )
    return message, hint
