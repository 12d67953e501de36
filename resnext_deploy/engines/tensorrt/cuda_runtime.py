"""Make the CUDA runtime library loadable for Polygraphy's TensorRT runner, checked before anything runs.

Polygraphy (0.53, ``polygraphy/cuda/cuda.py``) creates its CUDA wrapper once per process, on the
first ``polygraphy.cuda.wrapper()`` call; only then does ``_find_cuda_lib_dirs`` read
``LD_LIBRARY_PATH`` from ``os.environ`` and search it, ``/usr/local/cuda/lib64``, ``/usr/lib``,
``/lib`` and ``<sys.path entry>/nvidia/cuda_runtime/lib`` (the CUDA 12 wheel
``nvidia-cuda-runtime-cu12``) for ``libcudart.so*``, then it falls back to the dynamic loader's
``libcudart.so``; it loads the first match by its absolute path. The CUDA 13 wheel
(``nvidia-cuda-runtime==13.*``, what ``tensorrt-cu13`` and torch's cu13 builds use) installs
``<site-packages>/nvidia/cu13/lib/libcudart.so.13``, which none of these finds. So when the
runtime is found only in a wheel layout Polygraphy misses, its folder is put at the front of this
process's ``LD_LIBRARY_PATH`` (before Polygraphy's wrapper exists; the dynamic loader's own copy,
read at process start, is not needed because Polygraphy loads the absolute path). What still
cannot be found is reported with where it is and what to install.
"""

from __future__ import annotations

import ctypes
import glob
import os
import site
import sys
from collections.abc import MutableMapping, Sequence
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


WHEEL_LAYOUTS = (("nvidia", "cu13", "lib"), ("nvidia", "cuda_runtime", "lib"))  # CUDA 13, then CUDA 12


def wheel_cudart_dirs(roots: Sequence[str] | None = None) -> list[str]:
    """The CUDA runtime folders of pip wheels under ``roots`` (default: ``sys.path`` and site-packages), CUDA 13 first."""
    if roots is None:
        roots = [*sys.path, *site.getsitepackages(), site.getusersitepackages()]
    folders = [os.path.join(root, *layout) for layout in WHEEL_LAYOUTS for root in roots if root and os.path.isdir(root)]
    return list(dict.fromkeys(os.path.normpath(p) for p in folders if os.path.isdir(p)))


def make_cudart_loadable(
    search_dirs: Sequence[str] | None = None,
    candidates: Sequence[str] | None = None,
    environ: MutableMapping[str, str] = os.environ,
) -> Path | None:
    """Put the folder of a CUDA runtime Polygraphy would miss at the front of ``environ['LD_LIBRARY_PATH']``.

    Returns the library Polygraphy will now load, or None when nothing was changed (Polygraphy already
    finds one, its wrapper already exists, none is found, or Windows, where Polygraphy searches PATH).
    ``search_dirs`` defaults to Polygraphy's own folders and ``candidates`` to the wheel layouts, then
    the usual toolkit and distribution folders; a candidate must load with ``ctypes`` to be used.
    """
    if sys.platform == "win32" or _polygraphy_wrapper_exists():
        return None
    if find_cudart(polygraphy_search_dirs() if search_dirs is None else search_dirs):
        return None
    folders = [*wheel_cudart_dirs(), *other_cudart_dirs()] if candidates is None else list(candidates)
    for library in find_cudart(folders):
        try:
            ctypes.CDLL(os.fspath(library))
        except OSError:
            continue  # another architecture, or a broken file: Polygraphy would fail on it too
        current = environ.get("LD_LIBRARY_PATH", "")
        environ["LD_LIBRARY_PATH"] = os.pathsep.join([str(library.parent), *([current] if current else [])])
        return library
    return None


def _polygraphy_wrapper_exists() -> bool:
    """Whether Polygraphy already created its CUDA wrapper (it searched for the library then, never again)."""
    module = sys.modules.get("polygraphy.cuda.cuda")
    return getattr(module, "G_CUDA", None) is not None


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
            "install the CUDA runtime of your TensorRT wheel's CUDA version (CUDA 13, tensorrt-cu13: "
            "pip install 'nvidia-cuda-runtime==13.*'; CUDA 12, tensorrt-cu12: pip install nvidia-cuda-runtime-cu12), "
            "or the CUDA toolkit"
        )
    return message, hint
