"""The fallback search over a sensitivity ranking: shortest passing prefix, budgets, best-effort result, bad values."""

from __future__ import annotations

import pytest

from resnext_deploy.calibration.fallback import Budget, Measurement, Targets, search_fallback
from resnext_deploy.errors import UsageError

RANKING = [f"layer{i}" for i in range(20)]


def _evaluator(cosine_at, latency_at=None):  # type: ignore[no-untyped-def]
    """An evaluate() whose metrics depend only on how many layers are in float; records the calls."""
    calls: list[int] = []

    def evaluate(float_layers: list[str]) -> Measurement:
        k = len(float_layers)
        assert float_layers == RANKING[:k], "the search must take prefixes of the ranking"
        calls.append(k)
        return Measurement({"mean_cosine": cosine_at(k), "top1_agreement": 1.0, "top1_drop_pp": None},
                           None if latency_at is None else latency_at(k))

    return evaluate, calls


def test_finds_the_shortest_passing_prefix_in_few_steps() -> None:
    evaluate, calls = _evaluator(lambda k: 0.99 + 0.001 * k)  # passes from k = 9 on
    result = search_fallback(RANKING, evaluate, Targets(cosine=0.999), Budget(max_layers=20))
    assert result.reached and result.chosen.layers_in_float == 9
    assert result.chosen.float_layers == RANKING[:9]
    assert len(calls) <= 10 and len(set(calls)) == len(calls)  # 0, doubling to 16, bisection: about 2 log2(20)


def test_a_good_prediction_is_the_first_guess() -> None:
    evaluate, calls = _evaluator(lambda k: 0.99 + 0.001 * k)
    result = search_fallback(RANKING, evaluate, Targets(cosine=0.999), Budget(),
                             predict_cosine=lambda k: 0.99 + 0.001 * k)
    assert result.chosen.layers_in_float == 9 and calls == [0, 9, 8]


def test_no_fallback_when_int8_already_meets_the_target() -> None:
    evaluate, calls = _evaluator(lambda k: 0.9999)
    result = search_fallback(RANKING, evaluate, Targets(cosine=0.999, agreement=0.99), Budget())
    assert result.reached and result.chosen.float_layers == [] and calls == [0]


def test_layer_budget_runs_out_best_step_is_chosen() -> None:
    evaluate, calls = _evaluator(lambda k: 0.99 + 0.0005 * k)  # would need k = 18
    result = search_fallback(RANKING, evaluate, Targets(cosine=0.999), Budget(max_layers=5))
    assert not result.reached and result.stopped_by == "max_fallback_layers"
    assert result.chosen.layers_in_float == 5 and max(calls) == 5
    assert result.failing == ["target_cosine"]


def test_latency_budget_caps_the_prefix() -> None:
    evaluate, _ = _evaluator(lambda k: 0.99 + 0.001 * k, latency_at=lambda k: 0.6 + 0.02 * k)  # k <= 5 within 0.7
    result = search_fallback(RANKING, evaluate, Targets(cosine=0.999), Budget(max_layers=20, max_latency_ratio=0.7))
    assert not result.reached and result.stopped_by == "max_latency_ratio"
    assert result.chosen.layers_in_float == 5 and result.chosen.latency_ratio <= 0.7


def test_targets_and_budgets_are_checked() -> None:
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(UsageError, match="target-cosine") as info:
            Targets(cosine=bad)
        assert info.value.hint
    with pytest.raises(UsageError, match="target-agreement"):
        Targets(agreement=1.01)
    with pytest.raises(UsageError, match="target-top1-drop"):
        Targets(top1_drop_pp=-1)
    with pytest.raises(UsageError, match="max-fallback-layers") as info:
        Budget(max_layers=-1)
    assert "0 allows no fallback" in (info.value.hint or "")
    with pytest.raises(UsageError, match="max-latency-ratio"):
        Budget(max_latency_ratio=0)
    assert Targets(cosine=1.0).thresholds == {"target_cosine": 1.0} and not Targets()


def test_each_step_is_reported_as_it_is_measured_with_its_predicted_latency() -> None:
    evaluate, calls = _evaluator(lambda k: 0.99 + 0.001 * k, latency_at=lambda k: 0.3 + 0.01 * k)
    seen: list[tuple[int, float | None, float | None]] = []
    result = search_fallback(RANKING, evaluate, Targets(cosine=0.999), Budget(max_layers=20),
                             predict_latency=lambda k: 1.0 + 0.05 * k,
                             on_step=lambda step: seen.append((step.layers_in_float, step.latency_ratio,
                                                               step.predicted_latency)))
    assert [k for k, _, _ in seen] == calls  # one report per measured step, in the order measured
    assert all(ratio == pytest.approx(0.3 + 0.01 * k) and predicted == pytest.approx(1.0 + 0.05 * k)
               for k, ratio, predicted in seen)
    assert result.chosen.latency_ratio == pytest.approx(0.39)


def test_the_timer_times_the_steps_that_can_be_chosen() -> None:
    """Step 0 (the reference of every ratio) and the steps that meet the targets are timed; a failing step is not,
    unless a latency budget decides which steps can be chosen."""
    evaluate, calls = _evaluator(lambda k: 0.99 + 0.001 * k)  # passes from k = 9 on
    timed: list[int] = []

    def timer(float_layers: list[str]) -> float:
        timed.append(len(float_layers))
        return 0.3 + 0.01 * len(float_layers)

    result = search_fallback(RANKING, evaluate, Targets(cosine=0.999), Budget(max_layers=20), timer=timer)
    assert result.chosen.layers_in_float == 9 and result.chosen.latency_ratio == pytest.approx(0.39)
    assert len(calls) > 3 and timed == [k for k in calls if k == 0 or k >= 9]
    assert all((step.latency_ratio is None) == (step.layers_in_float not in timed) for step in result.steps)
    evaluate, calls = _evaluator(lambda k: 0.99 + 0.001 * k)
    timed.clear()
    result = search_fallback(RANKING, evaluate, Targets(cosine=0.999), Budget(max_layers=20, max_latency_ratio=0.5),
                             timer=timer)
    assert timed == calls and result.chosen.layers_in_float == 9


def test_the_best_effort_step_is_timed_when_no_step_meets_the_targets() -> None:
    evaluate, calls = _evaluator(lambda k: 0.99 + 0.0005 * k)  # would need k = 18
    timed: list[int] = []

    def timer(float_layers: list[str]) -> float:
        timed.append(len(float_layers))
        return 0.3

    result = search_fallback(RANKING, evaluate, Targets(cosine=0.999), Budget(max_layers=5), timer=timer)
    assert not result.reached and result.chosen.layers_in_float == 5
    assert timed == [0, 5] and result.chosen.latency_ratio == pytest.approx(0.3)
