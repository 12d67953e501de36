"""Predict on image files with any model source: a bundle, a bare ``.onnx`` or a bare engine file.

A ``ModelSource`` says what the model needs (preprocessing, class names, tensor names) and how to
get a runner for a backend; ``run_predictions`` is the one decoding, batching and softmax path
every source shares, so a bare file and the bundle made from it give the same predictions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from resnext_deploy.data.preprocess import decoding_guard, describe_decode_error, preprocess_image
from resnext_deploy.errors import DeployError, InputError, UsageError

if TYPE_CHECKING:
    from resnext_deploy.engines.base import Runner
    from resnext_deploy.zoo import PreprocessConfig

DEFAULT_MAX_BATCH = 32
RANDOM_WEIGHTS_NOTE = "RANDOM WEIGHTS: this model was not trained; its predictions mean nothing"


class RunnerChoice(NamedTuple):
    """A runner (not yet entered), the backend it runs on, the one-line reason, and the largest batch it takes."""

    runner: Runner
    backend: str
    reason: str
    max_batch: int


@dataclass
class ModelSource:
    """What `predict` needs of a model, whichever file it came from."""

    kind: str  # "bundle" | "onnx" | "engine"
    path: Path
    precision: str
    preprocess: PreprocessConfig
    class_names: list[str]
    input_name: str
    output_name: str
    random_weights: bool
    open_runner: Callable[[str], RunnerChoice]  # backend name or "auto" -> runner
    warnings: list[str] = field(default_factory=list)


@dataclass
class Prediction:
    """Top-k classes of one image: (class index, name, probability), best first."""

    image: str
    top: list[tuple[int, str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "top": [{"index": i, "label": n, "probability": p} for i, n, p in self.top]}


@dataclass
class PredictResult:
    """Predictions plus how the model ran."""

    backend: str
    reason: str
    predictions: list[Prediction] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable: max subtracted first)."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def load_image(path: Path, cfg: Any) -> np.ndarray:
    """One preprocessed (3, H, W) image; ``InputError`` with a hint for missing, unreadable or oversized files."""
    if not path.is_file():
        raise InputError(f"image not found: {path}", hint="pass paths of existing JPEG or PNG files")
    try:
        with decoding_guard():
            return preprocess_image(path, cfg)
    except DeployError:
        raise
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, DecompressionBomb...
        raise InputError(f"cannot read image {path}: {describe_decode_error(exc)}",
                         hint="the file is damaged, too large or not an image; pass a JPEG or PNG") from None


def check_images(images: list[Path], top: int) -> list[Path]:
    """The image paths, refused (before any model is loaded) when none are given, one is missing or ``top`` < 1."""
    if not images:
        raise UsageError("no images given", hint="pass one or more image files: resnext-deploy predict MODEL IMAGE...")
    if top < 1:
        raise UsageError(f"--top must be at least 1, got {top}")
    paths = [Path(p) for p in images]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"image not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                         hint="pass paths of existing JPEG or PNG files")
    return paths


def run_predictions(source: ModelSource, images: list[Path], top: int = 5, backend: str = "auto") -> PredictResult:
    """Top-``top`` classes and softmax probabilities of each image, with the source's preprocessing and model.

    Images are decoded one batch at a time (the engine's largest batch), so memory does not grow
    with the number of images.
    """
    paths = check_images(images, top)
    choice = source.open_runner(backend)
    result = PredictResult(choice.backend, choice.reason, warnings=list(source.warnings))
    if source.random_weights:
        result.warnings.append(RANDOM_WEIGHTS_NOTE)
    names, cfg = source.class_names, source.preprocess
    with choice.runner as runner:
        for start in range(0, len(paths), choice.max_batch):
            chunk = paths[start : start + choice.max_batch]
            batch = np.stack([load_image(path, cfg) for path in chunk])
            # a last batch below the engine profile's minimum is padded (and its outputs cut back)
            probabilities = softmax(runner.infer_padded({source.input_name: batch})[source.output_name])
            k = min(top, probabilities.shape[1])
            for path, row in zip(chunk, probabilities):
                order = np.argsort(-row, kind="stable")[:k]
                result.predictions.append(Prediction(str(path), [(int(i), names[i], float(row[i])) for i in order]))
    return result
