"""The model's eval transform in PIL + numpy, and parallel decoding of image lists.

:func:`preprocess_image` reproduces timm's eval transform (``create_transform(...,
is_training=False)``: shorter side to floor(size / crop_pct) with the model's interpolation,
center crop, to tensor, normalize) without torch, so calibration and evaluation on a device
only need PIL and numpy. A test checks it against timm's own transform within 1e-6.

Two departures from a plain ``Image.open(...).convert("RGB")``: 16-bit grayscale PNGs are scaled
to 8 bits (PIL's conversion clips every value above 255, leaving an almost white image), and an
image over PIL's decompression-bomb limit is an error (skipped with its reason by the loaders)
instead of a warning on the terminal.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from resnext_deploy.console import progress_bar
from resnext_deploy.data.datasets import ImageRecord
from resnext_deploy.environment import usable_cores
from resnext_deploy.errors import InputError, UsageError
from resnext_deploy.zoo import PreprocessConfig

if TYPE_CHECKING:
    from PIL import Image

EXECUTORS = ("thread", "process")
# Worker processes start from a fresh interpreter, never by fork: the parent may hold ONNX Runtime, OpenMP and
# library threads, and a forked child can deadlock on a lock one of them held. Spawn, as the sweep's pool: on the
# shared 2-core Xeon, 2 workers decoded 211 img/s spawned, 181 forkserver, 202 forked and threads 246
# (bench/bench_decode.py, one run, loaded machine); threads (PIL releases the GIL) stay the default executor.
PROCESS_START_METHOD = "spawn"


def _resample(interpolation: str) -> int:
    from PIL import Image

    modes = {
        "nearest": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS,
        "box": Image.Resampling.BOX,
        "hamming": Image.Resampling.HAMMING,
    }
    try:
        return int(modes[interpolation])
    except KeyError:
        raise UsageError(f"unknown interpolation '{interpolation}'", hint=f"use one of {', '.join(modes)}") from None


def _resized_size(width: int, height: int, shorter: int) -> tuple[int, int]:
    """Output (w, h) when the shorter side becomes ``shorter``, rounded like torchvision."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = shorter, int(shorter * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB, scaling 16-bit grayscale (``I;16``, ``I``) by 255/65535 as torchvision's PNG decoder does."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode == "I" or image.mode.startswith("I;16"):
        wide = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode == "F":
        raise ValueError("floating-point image: its value range is unknown, convert it to 8-bit RGB first")
    return image.convert("RGB")


@contextlib.contextmanager
def decoding_guard() -> Iterator[None]:
    """Make PIL's ``DecompressionBombWarning`` an exception for the block (a reason to skip, not terminal noise).

    Entered once around a whole decode (worker threads see the same filters), not per image.
    """
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def describe_decode_error(exc: BaseException) -> str:
    """Why an image could not be used, in words (oversized images named as such)."""
    from PIL import Image

    if isinstance(exc, (Image.DecompressionBombWarning, Image.DecompressionBombError)):
        return f"too large, a possible decompression bomb ({exc})"
    return f"{type(exc).__name__}: {exc}"


def preprocess_pil(image: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """Eval-transform an already opened PIL image into a float32 (3, H, W) array."""
    image = to_rgb(image)
    new_size = _resized_size(*image.size, cfg.resize_size)
    if new_size != image.size:
        image = image.resize(new_size, resample=_resample(cfg.interpolation))
    pixels = np.asarray(image, dtype=np.uint8)
    crop = cfg.input_size
    height, width = pixels.shape[:2]
    if height < crop or width < crop:
        pad_h, pad_w = max(crop - height, 0), max(crop - width, 0)
        pixels = np.pad(pixels, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)))
        height, width = pixels.shape[:2]
    top = int(round((height - crop) / 2.0))
    left = int(round((width - crop) / 2.0))
    chw = pixels[top : top + crop, left : left + crop].transpose(2, 0, 1).astype(np.float32)
    chw /= np.float32(255)
    chw -= np.asarray(cfg.mean, dtype=np.float32)[:, None, None]
    chw /= np.asarray(cfg.std, dtype=np.float32)[:, None, None]
    return chw


def preprocess_image(path: str | Path, cfg: PreprocessConfig) -> np.ndarray:
    """Decode an image file (converted to RGB) and apply the model's eval transform."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return preprocess_pil(image, cfg)


def _decode_or_reason(path: Path, cfg: PreprocessConfig | None) -> np.ndarray | str | None:
    """Top-level (picklable) worker: the array (None when ``cfg`` is None: only check), or why the image is unusable."""
    from PIL import Image

    if multiprocessing.parent_process() is not None:  # a worker process: our own, so its filters are ours to set
        warnings.simplefilter("error", Image.DecompressionBombWarning)
    try:
        if cfg is None:
            with Image.open(path) as image:
                image.load()
                to_rgb(image)
            return None
        return preprocess_image(path, cfg)
    except UsageError:
        raise
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombWarning/Error...
        return describe_decode_error(exc)


@dataclass
class LoadResult:
    """Decoded images in input order, with the records kept and those skipped (and why)."""

    array: np.ndarray
    labels: np.ndarray | None
    records: list[ImageRecord]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


def default_workers() -> int:
    """Worker count: the CPUs this process may use, at most 8."""
    return min(8, usable_cores())


def _make_executor(kind: str, workers: int) -> Executor:
    if kind not in EXECUTORS:
        raise UsageError(f"unknown executor '{kind}'", hint=f"use one of {', '.join(EXECUTORS)}")
    if kind == "process":
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(PROCESS_START_METHOD))
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")


@contextlib.contextmanager
def _pool(kind: str, workers: int) -> Iterator[Executor]:
    """An executor whose queued work is dropped (not waited for) when the block fails or is interrupted."""
    pool = _make_executor(kind, workers)
    try:
        with decoding_guard():
            yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _progress(enabled: bool, total: int, description: str):  # type: ignore[no-untyped-def]

    progress = progress_bar(enabled)
    return progress, progress.add_task(description, total=total)


def _decode_all(
    records: Sequence[ImageRecord], cfg: PreprocessConfig, pool: Executor, advance: Callable[[], None]
) -> LoadResult:
    size = cfg.input_size
    array = np.empty((len(records), 3, size, size), dtype=np.float32)
    reasons: dict[int, str] = {}
    futures = deque(pool.submit(_decode_or_reason, r.path, cfg) for r in records)
    for index in range(len(records)):
        result = futures.popleft().result()
        if isinstance(result, str):
            reasons[index] = result
        else:
            array[index] = result
        advance()
    keep = [i for i in range(len(records)) if i not in reasons]
    if reasons:
        array = array[keep]
    kept = [records[i] for i in keep]
    labels = None
    if kept and all(r.label is not None for r in kept):
        labels = np.asarray([r.label for r in kept], dtype=np.int64)
    skipped = [(records[i].relpath, reason) for i, reason in sorted(reasons.items())]
    return LoadResult(array=array, labels=labels, records=kept, skipped=skipped)


def _check(result: LoadResult, total: int, strict: bool) -> LoadResult:
    if result.skipped and (strict or not result.records):
        names = ", ".join(f"{name} ({reason})" for name, reason in result.skipped[:5])
        more = f" and {len(result.skipped) - 5} more" if len(result.skipped) > 5 else ""
        what = "every image" if not result.records else f"{len(result.skipped)} of {total} images"
        raise InputError(
            f"could not read {what}: {names}{more}",
            hint="remove or replace the corrupt files" + ("" if not strict else ", or drop --strict to skip them"),
        )
    return result


def load_images(
    records: Sequence[ImageRecord],
    cfg: PreprocessConfig,
    workers: int | None = None,
    progress: bool = True,
    strict: bool = False,
    executor: str = "thread",
) -> LoadResult:
    """Decode and preprocess ``records`` in parallel into one (N, 3, H, W) float32 array, in order.

    Unreadable images are skipped and listed in :attr:`LoadResult.skipped`; ``strict`` makes
    them an :class:`InputError`, as is a list where no image can be read. The progress bar
    shows only when ``progress`` is on and stderr is a terminal.
    """
    if not records:
        raise InputError("no images to load", hint="check the image folder and the subset size")
    workers = workers or default_workers()
    bar, task = _progress(progress, len(records), "decoding images")
    with bar, _pool(executor, workers) as pool:
        result = _decode_all(records, cfg, pool, lambda: bar.advance(task))
    return _check(result, len(records), strict)


def iter_batches(
    records: Sequence[ImageRecord],
    cfg: PreprocessConfig,
    batch_size: int,
    workers: int | None = None,
    progress: bool = True,
    strict: bool = False,
    executor: str = "thread",
) -> Iterator[LoadResult]:
    """Like :func:`load_images` but yields batches, so large evaluation sets need not fit in memory."""
    if batch_size <= 0:
        raise UsageError(f"batch size must be positive, got {batch_size}")
    if not records:
        raise InputError("no images to load", hint="check the image folder and the subset size")
    workers = workers or default_workers()
    bar, task = _progress(progress, len(records), "decoding images")
    kept = 0
    all_skipped: list[tuple[str, str]] = []
    with bar, _pool(executor, workers) as pool:
        for start in range(0, len(records), batch_size):
            batch = _decode_all(records[start : start + batch_size], cfg, pool, lambda: bar.advance(task))
            if strict and batch.skipped:
                _check(batch, len(batch.skipped) + len(batch), strict=True)
            kept += len(batch)
            all_skipped += batch.skipped
            if len(batch):
                yield batch
    if not kept:
        _check(LoadResult(np.empty((0,)), None, [], all_skipped), len(records), strict)


class DecodedBatches:
    """``records`` decoded ``batch_size`` images at a time, each time it is iterated (yields the arrays).

    Calibration consumes it as it decodes (memory does not grow with the subset), and not at all
    when the statistics are cached; ``read`` and ``skipped`` say what the last pass decoded.
    """

    def __init__(self, records: Sequence[ImageRecord], cfg: PreprocessConfig, batch_size: int, *,
                 workers: int | None = None, strict: bool = False) -> None:
        self.records, self.cfg, self.batch_size, self.workers, self.strict = records, cfg, batch_size, workers, strict
        self.read = 0
        self.skipped: list[tuple[str, str]] = []

    def __iter__(self) -> Iterator[np.ndarray]:
        self.read, self.skipped = 0, []
        for loaded in iter_batches(self.records, self.cfg, self.batch_size, workers=self.workers, strict=self.strict):
            self.read += len(loaded)
            self.skipped += loaded.skipped
            yield loaded.array


def probe_images(records: Sequence[ImageRecord], *, decode: bool, workers: int | None = None) -> list[tuple[str, str]]:
    """(relative path, reason) of every image that cannot be used, found before any heavy work.

    ``decode`` decodes each image fully (what ``--strict`` needs to know); otherwise only the header
    is read (not an image, unknown format, over the decompression-bomb limit).
    """
    from PIL import Image

    def check(path: Path) -> str | None:
        if decode:
            reason = _decode_or_reason(path, None)
            return reason if isinstance(reason, str) else None
        try:
            with Image.open(path) as image:
                if image.mode == "F":
                    raise ValueError("floating-point image: its value range is unknown, convert it to 8-bit RGB first")
        except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, DecompressionBomb...
            return describe_decode_error(exc)
        return None

    with _pool("thread", workers or default_workers()) as pool:
        reasons = list(pool.map(check, [record.path for record in records]))
    return [(record.relpath, reason) for record, reason in zip(records, reasons) if reason is not None]
