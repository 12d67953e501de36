"""FP32 baseline logits, computed once per (FP32 ONNX, image subset, preprocessing) and cached beside the statistics.

Every consumer of the FP32 reference (``verify``, the mixed-precision search, the sensitivity
analysis) asks here instead of running the FP32 model again. The logits are computed in one way
only, so a cached entry is bitwise what a fresh computation gives: ONNX Runtime's
``CPUExecutionProvider`` (exact FP32, on every machine), default graph optimizations, images in
chunks of ``CHUNK`` counted from the first image of the subset whatever batches the caller streams.

An entry is ``<cache>/baseline/<digest>.npz`` (the logits and the key as JSON, no pickles); the
key is checked on load, then dtype and shape; anything else is a miss that the next save rewrites.
Writes are atomic; an entry above ``MAX_ENTRY_BYTES`` is neither read nor written, and the folder
is trimmed to ``MAX_FOLDER_BYTES`` (oldest entries first) after each save.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resnext_deploy.calibration.stats_cache import default_cache_dir
from resnext_deploy.files import atomic_path, sha256_bytes, sha256_file

BASELINE_FORMAT = 1
CHUNK = 16  # images per ORT run, aligned on the subset's first image: the chunking is part of the result
PROVIDER = "CPUExecutionProvider"
MAX_ENTRY_BYTES = 256 * 1024 * 1024  # 50,000 images x 1000 classes x 4 bytes is 200 MB
MAX_FOLDER_BYTES = 1024 * 1024 * 1024


def _computed_by() -> dict[str, Any]:
    import onnxruntime

    return {"engine": "ONNX Runtime", "version": str(onnxruntime.__version__), "provider": PROVIDER, "chunk": CHUNK,
            "graph_optimization": "ORT_ENABLE_ALL"}


def _decoder() -> str:
    from PIL import __version__ as pil_version

    return f"pillow {pil_version}"


@dataclass(frozen=True)
class BaselineKey:
    """What the FP32 logits depend on: the graph, the images (by content), how they were preprocessed, who ran it."""

    model_sha256: str
    images_sha256: str
    count: int
    preprocess: dict[str, Any]
    computed_by: dict[str, Any] = field(default_factory=_computed_by)

    @classmethod
    def for_model(cls, fp32: str | os.PathLike[str], images_sha256: str, count: int,
                  preprocess: dict[str, Any]) -> BaselineKey:
        """The key of ``fp32``'s logits on a subset; the decoder's version is part of the preprocessing."""
        return cls(sha256_file(fp32), images_sha256, int(count), {**preprocess, "decoder": _decoder()})

    def to_dict(self) -> dict[str, Any]:
        return {"format": BASELINE_FORMAT, **asdict(self)}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode("utf-8")).hexdigest()


def array_sha256(images: np.ndarray) -> str:
    """Content hash of images already in memory (random inputs): dtype, shape and bytes."""
    array = np.ascontiguousarray(images)
    return sha256_bytes(f"{array.dtype.str}{array.shape}".encode() + array.tobytes())


class BaselineCache:
    """Logits as ``<root>/baseline/<digest>.npz``; ``root`` is the statistics cache's (``--cache-dir``)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.folder = self.root / "baseline"

    def path(self, key: BaselineKey) -> Path:
        return self.folder / f"logits-{key.digest()[:24]}.npz"

    def load(self, key: BaselineKey) -> np.ndarray | None:
        """The cached logits for ``key``, or None: missing, oversized, damaged, foreign key, wrong dtype or shape."""
        path = self.path(key)
        try:
            if path.stat().st_size > MAX_ENTRY_BYTES:
                return None
            with np.load(path, allow_pickle=False) as data:
                if json.loads(str(data["key"])) != json.loads(json.dumps(key.to_dict())):  # tuples read back as lists
                    return None
                logits = np.array(data["logits"])
        except (OSError, ValueError, KeyError, TypeError, EOFError):
            return None
        if logits.dtype != np.float32 or logits.ndim != 2 or logits.shape[0] != key.count or logits.shape[1] == 0:
            return None
        return logits

    def save(self, key: BaselineKey, logits: np.ndarray) -> Path | None:
        """Write atomically (None when the entry would be over ``MAX_ENTRY_BYTES``), then trim the folder."""
        logits = np.ascontiguousarray(logits, dtype=np.float32)
        if logits.nbytes > MAX_ENTRY_BYTES:
            return None
        path = self.path(key)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, logits=logits, key=np.array(json.dumps(key.to_dict(), sort_keys=True)))
        self._trim(keep=path)
        return path

    def _trim(self, keep: Path) -> None:
        entries = []
        for entry in self.folder.glob("logits-*.npz"):
            try:
                stat = entry.stat()
            except OSError:
                continue
            entries.append((stat.st_mtime, stat.st_size, entry))
        total = sum(size for _, size, _ in entries)
        for _, size, entry in sorted(entries):
            if total <= MAX_FOLDER_BYTES:
                break
            if entry != keep:
                entry.unlink(missing_ok=True)
                total -= size


class BaselineLogits:
    """The FP32 logits of one subset, fed batch by batch in subset order (a verify loop), cached or computed.

    On a hit ``add`` does nothing and ``result`` returns the cached array; on a miss images are
    buffered into ``CHUNK``-image runs counted from the first image, so any batching by the caller
    gives the same logits as :func:`compute_logits` over the whole subset, and ``result`` saves them.
    """

    def __init__(self, fp32: str | os.PathLike[str], key: BaselineKey, cache_dir: str | os.PathLike[str] | None = None,
                 threads: int | None = None) -> None:
        self.fp32, self.key, self.threads = Path(fp32), key, threads
        self.cache = BaselineCache(cache_dir)
        self.cached = self.cache.load(key)
        self._hit = self.cached is not None
        self.seconds = 0.0
        self._session: Any = None
        self._pending: list[np.ndarray] = []
        self._done: list[np.ndarray] = []

    @property
    def hit(self) -> bool:
        """Whether the cache held these logits when this object was made."""
        return self._hit

    def add(self, images: np.ndarray) -> None:
        """The next images of the subset (ignored on a hit)."""
        if self.cached is not None:
            return
        self._pending.append(np.ascontiguousarray(images, dtype=np.float32))
        if sum(len(p) for p in self._pending) >= CHUNK:
            self._run(final=False)

    def result(self) -> np.ndarray:
        """Every image's logits (float32); a miss is computed to the end and written to the cache."""
        if self.cached is not None:
            return self.cached
        self._run(final=True)
        logits = np.concatenate(self._done) if self._done else np.zeros((0, 0), np.float32)
        if len(logits) == self.key.count:  # a short subset (unreadable images) is not the keyed one
            self.cache.save(self.key, logits)
        self.cached = logits
        self._session = None
        return logits

    def record(self) -> dict[str, Any]:
        """report.json: who computed the baseline logits, on which key, whether the cache had them."""
        return {"cache_hit": self.hit, "key": self.key.digest()[:24],
                "computed_by": self.key.computed_by, "images": self.key.count, "seconds": round(self.seconds, 3)}

    def _run(self, final: bool) -> None:
        if not self._pending:
            return
        buffered = np.concatenate(self._pending)
        whole = len(buffered) if final else len(buffered) - len(buffered) % CHUNK
        if whole:
            started = time.perf_counter()
            if self._session is None:
                self._session = _session(self.fp32, self.threads)
            self._done.append(_run_chunks(self._session, buffered[:whole]))
            self.seconds += time.perf_counter() - started
        self._pending = [buffered[whole:]] if whole < len(buffered) else []


def baseline_logits(fp32: str | os.PathLike[str], images: np.ndarray, key: BaselineKey,
                    cache_dir: str | os.PathLike[str] | None = None,
                    threads: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """(logits, record) of ``fp32`` on ``images`` (the subset ``key`` names), from the cache or computed and cached."""
    source = BaselineLogits(fp32, key, cache_dir, threads)
    source.add(images)
    return source.result(), source.record()


def tuning_baseline(fp32: str | os.PathLike[str], tuning: np.ndarray, tuning_sha256: str, preprocess: dict[str, Any],
                    cache_dir: str | os.PathLike[str] | None = None,
                    threads: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """(logits, record) of ``fp32`` on the manifest's tuning images: the sensitivity analysis's and the search's reference."""
    return baseline_logits(fp32, tuning, BaselineKey.for_model(fp32, tuning_sha256, len(tuning), preprocess),
                           cache_dir, threads)


def compute_logits(fp32: str | os.PathLike[str], images: np.ndarray, threads: int | None = None) -> np.ndarray:
    """A fresh computation, exactly as the cache's entries are made (no cache involved)."""
    return _run_chunks(_session(Path(fp32), threads), np.ascontiguousarray(images, dtype=np.float32))


def _run_chunks(session: Any, images: np.ndarray) -> np.ndarray:
    name, output = session.get_inputs()[0].name, session.get_outputs()[0].name
    return np.concatenate([np.asarray(session.run([output], {name: images[s : s + CHUNK]})[0], dtype=np.float32)
                           for s in range(0, len(images), CHUNK)])


def _session(fp32: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(os.fspath(fp32), options, providers=[PROVIDER])
