"""Mixed-precision fallback: leave the most sensitive layers out of INT8 until an accuracy target holds.

The layers are taken in sensitivity order; the search looks for the shortest prefix of that
ranking whose real artifact (quantized by the recipe with those layers excluded, so any recipe
works through the same ``nodes_to_exclude`` mechanism) meets every target on the tuning images,
within a budget of layers and, optionally, of latency relative to FP32. It starts at the
prefix the sensitivity analysis predicts, grows it geometrically while the target fails, then
bisects down to the shortest passing prefix: a handful of quantize-and-measure steps rather
than one per layer. With a ``timer``, the steps that can be chosen are timed on the engine: the
first (full INT8, the reference of every ratio) and every step that meets the targets; with a
latency budget, every step (the budget decides which can be chosen). A step that misses the
targets is chosen only as the best effort when none meets them, and is timed then.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from resnext_deploy.errors import UsageError

DEFAULT_MAX_LAYERS = 16
# gate name -> (direction, metric key of verification's compare_logits, flag)
TARGETS: dict[str, tuple[str, str, str]] = {
    "target_cosine": ("min", "mean_cosine", "--target-cosine"),
    "target_agreement": ("min", "top1_agreement", "--target-agreement"),
    "target_top1_drop": ("max", "top1_drop_pp", "--target-top1-drop"),
}


@dataclass(frozen=True)
class Targets:
    """Accuracy targets on the tuning images; a target left at None is not checked."""

    cosine: float | None = None
    agreement: float | None = None
    top1_drop_pp: float | None = None

    def __post_init__(self) -> None:
        for flag, value in (("--target-cosine", self.cosine), ("--target-agreement", self.agreement)):
            if value is not None and not 0.0 < value <= 1.0:
                raise UsageError(f"{flag} must be in (0, 1], got {value}", hint=f"for example {flag} 0.999")
        if self.top1_drop_pp is not None and (self.top1_drop_pp < 0 or not math.isfinite(self.top1_drop_pp)):
            raise UsageError(f"--target-top1-drop must be >= 0 percentage points, got {self.top1_drop_pp}",
                             hint="for example --target-top1-drop 0.5")

    @property
    def thresholds(self) -> dict[str, float]:
        """Gate name -> threshold, for the targets that are set."""
        values = {"target_cosine": self.cosine, "target_agreement": self.agreement, "target_top1_drop": self.top1_drop_pp}
        return {name: value for name, value in values.items() if value is not None}

    def __bool__(self) -> bool:
        return bool(self.thresholds)

    def margins(self, metrics: dict[str, Any]) -> dict[str, float | None]:
        """Gate name -> measured minus threshold (positive = met; sign flipped for 'max' gates), None if unmeasured."""
        margins: dict[str, float | None] = {}
        for name, threshold in self.thresholds.items():
            direction, key, _ = TARGETS[name]
            measured = metrics.get(key)
            margins[name] = None if measured is None else (measured - threshold if direction == "min" else threshold - measured)
        return margins

    def to_dict(self) -> dict[str, float]:
        return self.thresholds


@dataclass(frozen=True)
class Budget:
    """How far the fallback may go: layers out of INT8, and latency relative to FP32 (None: not measured)."""

    max_layers: int = DEFAULT_MAX_LAYERS
    max_latency_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.max_layers < 0:
            raise UsageError(f"--max-fallback-layers must be >= 0, got {self.max_layers}",
                             hint="0 allows no fallback; for example --max-fallback-layers 16")
        if self.max_latency_ratio is not None and not (self.max_latency_ratio > 0 and math.isfinite(self.max_latency_ratio)):
            raise UsageError(f"--max-latency-ratio must be positive, got {self.max_latency_ratio}",
                             hint="INT8 latency / FP32 latency, for example --max-latency-ratio 0.75")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Measurement:
    """What ``evaluate`` returns for one set of float layers."""

    metrics: dict[str, Any]  # verification's compare_logits on the tuning images
    latency_ratio: float | None = None  # target / FP32 p50 at batch 1 on the export's engine (None: not timed here)


@dataclass
class Step:
    """One quantize-and-measure step of the search."""

    layers_in_float: int
    float_layers: list[str]
    metrics: dict[str, Any]
    latency_ratio: float | None
    margins: dict[str, float | None]
    meets_target: bool
    within_budget: bool
    predicted_cosine: float | None = None
    predicted_latency: float | None = None  # relative to full INT8, from the cost model (``calibration.cost``)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FallbackResult:
    """Every step in the order measured, the step chosen, and why the search stopped."""

    steps: list[Step]
    chosen: Step
    reached: bool
    stopped_by: str | None = None  # "max_fallback_layers" | "max_latency_ratio" | "all_layers" when not reached
    failing: list[str] = field(default_factory=list)  # target gates the chosen step misses

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [s.to_dict() for s in sorted(self.steps, key=lambda s: s.layers_in_float)],
                "chosen": self.chosen.to_dict(), "reached": self.reached, "stopped_by": self.stopped_by,
                "failing": self.failing}


def search_fallback(
    ranking: Sequence[str],
    evaluate: Callable[[list[str]], Measurement],
    targets: Targets,
    budget: Budget,
    predict_cosine: Callable[[int], float] | None = None,
    predict_latency: Callable[[int], float] | None = None,
    on_step: Callable[[Step], None] | None = None,
    timer: Callable[[list[str]], float] | None = None,
) -> FallbackResult:
    """The shortest prefix of ``ranking`` (most sensitive first) whose artifact meets ``targets`` within ``budget``.

    ``evaluate(float_layers)`` quantizes with those layers left out and measures on the tuning
    images. When no prefix within the budget meets the targets, the best step measured is chosen
    (most targets met, then the largest relative margin) and ``reached`` is False. ``timer(float_layers)``:
    the latency ratio on the engine, asked for the steps that can be chosen (module docstring).
    """
    if not targets:
        raise UsageError("mixed precision needs an accuracy target", hint="pass --target-cosine or --target-agreement")
    steps: dict[int, Step] = {}

    def at(k: int) -> Step:
        if k not in steps:
            started = time.perf_counter()
            layers = list(ranking[:k])
            measured = evaluate(layers)
            margins = targets.margins(measured.metrics)
            meets = all(m is not None and m >= 0 for m in margins.values())
            latency = measured.latency_ratio
            if latency is None and timer is not None and (k == 0 or meets or budget.max_latency_ratio is not None):
                latency = timer(layers)
            within = budget.max_latency_ratio is None or (latency is not None and latency <= budget.max_latency_ratio)
            steps[k] = Step(
                layers_in_float=k, float_layers=layers, metrics=measured.metrics, latency_ratio=latency,
                margins=margins, meets_target=meets, within_budget=within,
                predicted_cosine=predict_cosine(k) if predict_cosine is not None else None,
                predicted_latency=predict_latency(k) if predict_latency is not None else None,
                seconds=round(time.perf_counter() - started, 3),
            )
            if on_step is not None:
                on_step(steps[k])
        return steps[k]

    ceiling = min(budget.max_layers, len(ranking))
    latency_cut = False
    first = at(0)
    if first.meets_target and first.within_budget:
        return FallbackResult(list(steps.values()), first, True)
    passing: int | None = None
    if first.within_budget:
        failing, k = 0, _first_guess(ranking, targets, predict_cosine, ceiling)
        guess = k
        while failing < ceiling:
            step = at(k)
            if not step.within_budget:  # more float layers only get slower
                ceiling, latency_cut = k - 1, True
                k = failing + max(1, (ceiling - failing) // 2)
                continue
            if step.meets_target:
                passing = k
                break
            failing, k = k, min(ceiling, max(k + 1, 2 * k))
        if passing is not None:
            if passing == guess and passing - failing > 1:  # a good prediction: one shorter usually fails, ending it
                step = at(passing - 1)
                if step.meets_target and step.within_budget:
                    passing -= 1
                else:
                    failing = passing - 1
            while passing - failing > 1:
                middle = (passing + failing) // 2
                step = at(middle)
                if step.meets_target and step.within_budget:
                    passing = middle
                else:
                    failing = middle
            chosen = at(passing)
            return FallbackResult(list(steps.values()), chosen, True)
    else:
        latency_cut = True
    candidates = [s for s in steps.values() if s.within_budget] or [first]
    chosen = max(candidates, key=lambda s: _score(s, targets))
    if chosen.latency_ratio is None and timer is not None:  # the best effort is written: time it too
        chosen.latency_ratio = timer(chosen.float_layers)
    if latency_cut:
        stopped_by = "max_latency_ratio"
    elif ceiling < len(ranking):
        stopped_by = "max_fallback_layers"
    else:
        stopped_by = "all_layers"
    failing_gates = [name for name, margin in chosen.margins.items() if margin is None or margin < 0]
    return FallbackResult(list(steps.values()), chosen, False, stopped_by, failing_gates)


def _first_guess(ranking: Sequence[str], targets: Targets, predict_cosine: Callable[[int], float] | None, ceiling: int) -> int:
    """The smallest prefix predicted to meet the cosine target (1 without a prediction)."""
    if predict_cosine is None or targets.cosine is None:
        return 1
    for k in range(1, ceiling + 1):
        if predict_cosine(k) >= targets.cosine:
            return k
    return max(1, ceiling)


def _score(step: Step, targets: Targets) -> tuple[int, float]:
    """Targets met, then the worst margin relative to the room the threshold leaves."""
    met = sum(1 for m in step.margins.values() if m is not None and m >= 0)
    relative = []
    for name, margin in step.margins.items():
        threshold = targets.thresholds[name]
        scale = max(1.0 - threshold, 1e-6) if TARGETS[name][0] == "min" else max(threshold, 1.0)
        relative.append(-math.inf if margin is None else margin / scale)
    return met, min(relative) if relative else 0.0
