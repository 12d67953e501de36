"""A mixed-precision artifact's accuracy targets, measured again on the held-out evaluation images.

The fallback search tunes on the manifest's tuning images, so the number it reports flatters the
artifact a little; ``verify`` measures the same metrics on evaluation images the search never saw.
Both go side by side in report.json (``verification.mixed_precision``) and in the summary, with
one line when the held-out number misses a target. The exit code is unchanged: the target is a
gate on the tuning images, where the export checked it.
"""

from __future__ import annotations

from typing import Any

from resnext_deploy.calibration.fallback import TARGETS

GATE_NOTE = "the target gate is checked on the tuning images at export; this does not change the exit code"


def held_out_check(artifact_meta: dict[str, Any] | None, accuracy: dict[str, Any]) -> dict[str, Any] | None:
    """Tuning vs held-out metrics of each target the artifact was tuned for; None for an artifact without targets.

    ``artifact_meta``: the INT8 artifact's ``mixed_precision`` metadata (targets, tuning metrics).
    """
    if not artifact_meta or not artifact_meta.get("targets"):
        return None
    tuning_metrics = artifact_meta.get("tuning_metrics") or {}
    rows, missed = [], []
    for name, threshold in artifact_meta["targets"].items():
        if name not in TARGETS:
            continue
        direction, key, flag = TARGETS[name]
        tuning = tuning_metrics.get(_TUNING_KEYS[key])
        held_out = accuracy.get(key)
        met = None if held_out is None else (held_out >= threshold if direction == "min" else held_out <= threshold)
        rows.append({"target": name, "flag": flag, "threshold": threshold, "tuning": tuning, "held_out": held_out,
                     "held_out_meets_target": met})
        if met is False:
            missed.append(f"{_short(name)} {_fmt(held_out)} {'<' if direction == 'min' else '>'} {flag} {threshold}")
    return {
        "targets": rows,
        "held_out_images": accuracy.get("images"),
        "tuning_images_reached": bool(artifact_meta.get("reached")),
        "held_out_meets_targets": not missed and all(row["held_out_meets_target"] is not None for row in rows),
        "missed": missed,
        "note": GATE_NOTE,
    }


def summary_lines(check: dict[str, Any]) -> list[str]:
    """Both numbers side by side; one warning line when the held-out images miss a target."""
    pairs = ", ".join(f"{_short(row['target'])} tuning {_fmt(row['tuning'])} | held-out {_fmt(row['held_out'])} "
                      f"(target {row['threshold']})" for row in check["targets"])
    lines = [f"mixed prec. {pairs}"]
    if check["missed"]:
        lines.append(f"! held-out images miss the target: {'; '.join(check['missed'])} "
                     f"({check['held_out_images']} images; {GATE_NOTE})")
    return lines


_TUNING_KEYS = {"mean_cosine": "cosine", "top1_agreement": "agreement", "top1_drop_pp": "top1_drop_pp"}


def _short(name: str) -> str:
    return name.removeprefix("target_")


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.5f}"
