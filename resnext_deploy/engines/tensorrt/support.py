"""Which TensorRT this toolchain runs on, and what that means on a Jetson.

Engines are built strongly typed (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``, TensorRT 10),
so TensorRT 10.1 is the oldest release supported. The pip extra installs ``tensorrt-cu13`` for x86-64
and SBSA servers; Jetson boards cannot use it (TensorRT 11 does not support Jetson/JetPack, and the
pip wheels are not built for Tegra). On a Jetson the TensorRT is JetPack's own: system packages
(``python3-libnvinfer``, ``tensorrt``) with JetPack's CUDA in ``/usr/local/cuda``, imported from a
virtual environment made with ``--system-site-packages``. Version limits, from NVIDIA's JetPack
release notes: JetPack 6.1 and 6.2 (L4T R36.4) ship TensorRT 10.3, which runs here; JetPack 6.0
(R36.3) ships 8.6 and JetPack 5.x (R35) 8.5, which do not. Those boards run ONNX Runtime (CPU), or
build the bundle's TensorRT artifact (``model.int8.tensorrt.onnx``) with their own ``trtexec``.
"""

from __future__ import annotations

import re
from pathlib import Path

MIN_TENSORRT = (10, 1)
TEGRA_RELEASE = Path("/etc/nv_tegra_release")
# L4T release (major, minor) -> (JetPack, TensorRT it ships)
L4T_JETPACK = {(36, 4): ("6.1/6.2", "10.3"), (36, 3): ("6.0", "8.6"), (35, 6): ("5.1.4", "8.5"),
               (35, 5): ("5.1.3", "8.5"), (35, 4): ("5.1.2", "8.5"), (35, 3): ("5.1.1", "8.5")}
JETSON_HINT = ("on a Jetson, use JetPack 6.1 or newer (TensorRT 10.3 from python3-libnvinfer) in a virtual environment "
               "made with --system-site-packages, without the tensorrt extra; older JetPacks: --backend onnxruntime, "
               "or build the bundle's model.int8.tensorrt.onnx with that board's trtexec")


def jetson_release(path: Path = TEGRA_RELEASE) -> tuple[int, int] | None:
    """(L4T major, minor) from ``/etc/nv_tegra_release`` (``# R36 (release), REVISION: 4.0, ...``); None off a Jetson."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def describe_jetson(release: tuple[int, int]) -> str:
    """``L4T R36.4 (JetPack 6.1/6.2, TensorRT 10.3)``."""
    jetpack = L4T_JETPACK.get(release)
    suffix = f" (JetPack {jetpack[0]}, TensorRT {jetpack[1]})" if jetpack else ""
    return f"L4T R{release[0]}.{release[1]}{suffix}"


def tensorrt_version_problem(version: str, jetson: tuple[int, int] | None = None) -> tuple[str, str] | None:
    """None when TensorRT ``version`` is supported; else (why not, what to do), said for a Jetson when on one."""
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    if len(numbers) == 2 and numbers >= MIN_TENSORRT:
        return None
    minimum = ".".join(map(str, MIN_TENSORRT))
    message = f"TensorRT {version} is older than {minimum}, the oldest that builds the strongly typed engines used here"
    if jetson is not None:
        return f"{message} ({describe_jetson(jetson)})", JETSON_HINT
    return message, f"pip install 'resnext-deploy[tensorrt]' (TensorRT {minimum} or newer), or use --backend onnxruntime"
