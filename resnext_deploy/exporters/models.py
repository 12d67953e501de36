"""Build a zoo model in PyTorch with the weights the user asked for."""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnext_deploy.errors import UsageError, WeightsError
from resnext_deploy.files import sha256_file

if TYPE_CHECKING:
    import torch

    from resnext_deploy.zoo import ModelSpec

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin")
# `--weights random` draws from torch's generator seeded with this unless `--seed N` says otherwise, so two runs of
# the same command make the same model (same FP32 sha256) and random-weight runs can be compared
DEFAULT_SEED = 0
_WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")


def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a checkpoint we load, from its suffix and first bytes alone (no torch, no parsing):
    torch.save writes a zip archive (a pickle before torch 1.6), safetensors a length-prefixed JSON header."""
    suffix = path.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        return f"unsupported checkpoint type '{path.suffix}' (use {', '.join(CHECKPOINT_SUFFIXES)})"
    with open(path, "rb") as handle:
        head = handle.read(9)
    if suffix == ".safetensors":
        length = int.from_bytes(head[:8], "little") if len(head) == 9 else 0
        if not 2 <= length <= path.stat().st_size - 8 or head[8:9] != b"{":
            return "not a safetensors file (no JSON header)"
        return None
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        return None
    return "neither a torch.save archive nor a pickled state dict"


@dataclass(frozen=True)
class WeightsInfo:
    """Where the weights came from, and a hash that identifies them."""

    origin: str
    kind: str  # "pretrained" | "file" | "random"
    sha256: str
    seed: int | None = None  # the seed of random weights (None for pretrained or file weights)

    @property
    def is_random(self) -> bool:
        return self.kind == "random"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"random": self.is_random}


def build_model(spec: ModelSpec, weights: str = "pretrained", seed: int = DEFAULT_SEED) -> tuple[torch.nn.Module, WeightsInfo]:
    """Create ``spec``'s architecture in eval mode with ``weights``: pretrained, random (drawn with ``seed``) or a file path."""
    if weights == "pretrained":
        model = _create_pretrained(spec)
        info = WeightsInfo(f"timm:{spec.timm_pretrained_name}", "pretrained", state_dict_sha256(model))
    elif weights == "random":
        model = _create_seeded(spec, seed)
        info = WeightsInfo(f"random initialisation, seed {seed} (accuracy is meaningless)", "random",
                           state_dict_sha256(model), seed)
    else:
        path = Path(weights).expanduser()
        model = _create(spec, pretrained=False)
        load_checkpoint(model, path)
        info = WeightsInfo(f"file:{path.resolve()}", "file", sha256_file(path))
    check_finite(model, info.origin)
    return model.eval(), info


def check_finite(model: torch.nn.Module, origin: str) -> None:
    """``WeightsError`` naming the tensors that hold NaN or infinity (the export could only produce garbage)."""
    import torch

    bad = [name for name, tensor in model.state_dict().items()
           if tensor.is_floating_point() and not _all_finite(tensor)]
    if bad:
        kinds = {"NaN" if bool(torch.isnan(t).any()) else "infinity" for t in (model.state_dict()[n] for n in bad)}
        raise WeightsError(
            f"the weights ({origin}) contain {' and '.join(sorted(kinds))} in {len(bad)} tensor(s): {_preview(bad)}",
            hint="the checkpoint is damaged or came from a diverged training run; use another checkpoint",
        )


def _all_finite(tensor: torch.Tensor) -> bool:
    """Whether every value of a floating-point tensor is finite. NumPy's single-threaded check where it has the
    dtype (CPU float16/32/64): torch.isfinite(...).all() per tensor goes through the intra-op thread pool, which on a
    busy 2-core machine took 1.5 s for resnext50d's weights (NumPy: 0.02 s); bfloat16 and device tensors use torch."""
    import numpy as np
    import torch

    if tensor.device.type == "cpu" and tensor.dtype in (torch.float16, torch.float32, torch.float64):
        return bool(np.isfinite(tensor.detach().numpy()).all())
    return bool(torch.isfinite(tensor).all())


def _create_seeded(spec: ModelSpec, seed: int) -> torch.nn.Module:
    """The architecture with random weights drawn from torch's generator seeded with ``seed``; the caller's
    generator state is restored afterwards (``fork_rng``), so nothing else in the process changes."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _create(spec, pretrained=False)


def _create(spec: ModelSpec, pretrained: bool) -> torch.nn.Module:
    import timm

    name = spec.timm_pretrained_name if pretrained else spec.timm_name
    return timm.create_model(name, pretrained=pretrained, num_classes=spec.num_classes, **spec.timm_kwargs)


_OFFLINE_HINT = (
    "without network access, pass --weights PATH to a local .pth/.pt/.safetensors state dict, "
    "or --weights random for a smoke run (accuracy then means nothing); a warm timm / Hugging Face "
    "cache (HF_HOME) also works offline"
)


def _create_pretrained(spec: ModelSpec) -> torch.nn.Module:
    """timm's own pretrained loading, from a warm cache when there is one, else from the hub."""
    import timm

    cached = cached_pretrained_file(spec)
    if cached is None and not _hub_reachable():
        raise WeightsError(
            f"pretrained weights {spec.timm_pretrained_name} for {spec.name} are not in the local cache "
            "and the Hugging Face Hub cannot be reached",
            hint=_OFFLINE_HINT,
        )
    overlay = {"file": str(cached)} if cached else None
    try:
        return timm.create_model(
            spec.timm_pretrained_name, pretrained=True, pretrained_cfg_overlay=overlay,
            num_classes=spec.num_classes, **spec.timm_kwargs,
        )
    except Exception as exc:  # hub, network and cache errors come in many types
        raise WeightsError(
            f"cannot load pretrained weights {spec.timm_pretrained_name} for {spec.name}: "
            f"{type(exc).__name__}: {exc}",
            hint=_OFFLINE_HINT,
        ) from None


def _hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def cached_pretrained_file(spec: ModelSpec) -> Path | None:
    """The weights file timm would download, if the Hugging Face or torch hub cache already holds it."""
    import timm
    import torch

    cfg = timm.models.get_pretrained_cfg(spec.timm_pretrained_name)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(cfg.hf_hub_id, filename, cache_dir=_hf_cache_dir())
            if isinstance(found, str):
                return Path(found)
    if cfg.url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
        if candidate.is_file():
            return candidate
    return None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Fail in seconds, not after a minute of retries, when the machine is offline."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def read_state_dict(path: Path) -> dict[str, Any]:
    """Read a state dict from a checkpoint file, unwrapping training checkpoints and DDP prefixes."""
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}", hint="check the path passed to --weights")
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise UsageError(
            f"unsupported checkpoint type '{path.suffix}' for {path}",
            hint=f"use a state dict saved as one of {', '.join(CHECKPOINT_SUFFIXES)}, or --weights pretrained|random",
        )
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}",
            hint="save weights with torch.save(model.state_dict(), path) or safetensors; whole pickled models "
            "are not loaded, for safety",
        ) from None
    for key in _WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state:
        raise WeightsError(f"{path} does not hold a state dict", hint="save model.state_dict(), not the model")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_checkpoint(model: torch.nn.Module, path: Path) -> None:
    """Load a state dict into ``model``; any missing, unexpected or misshaped key is an error."""
    state = read_state_dict(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or misshaped:
        raise WeightsError(
            f"checkpoint {path} does not fit {type(model).__name__}: "
            + "; ".join(
                f"{label} ({len(keys)}): {_preview(keys)}"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped))
                if keys
            ),
            hint="check that the checkpoint is for this model (see `resnext-deploy models`) and its class count",
        )
    model.load_state_dict(state, strict=True)


def _preview(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def state_dict_sha256(model: torch.nn.Module) -> str:
    """A content hash of the model's parameters and buffers, in key order."""
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
