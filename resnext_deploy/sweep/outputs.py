"""What a sweep leaves behind besides the cells' own reports: sweep.json rows, sweep.md and pareto.png."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resnext_deploy.console import out
from resnext_deploy.files import atomic_path, write_bytes, write_text
from resnext_deploy.layout import FP32_NAME, PARETO_PNG_NAME, SWEEP_JSON_NAME, SWEEP_MD_NAME
from resnext_deploy.report import Report
from resnext_deploy.verification.compare import comparison_record


def cell_row(key: str, directory: Path, root: Path, report: Report) -> dict[str, Any]:
    """One cell's numbers for sweep.json, from its verified report.json (paths relative to the sweep folder)."""
    ver, gates, model = report.verification, report.gates, report.model
    assert ver is not None and gates is not None and model is not None
    acc = ver.accuracy
    per_batch = (ver.latency or {}).get("per_batch") or {}
    artifact = directory / (report.artifacts.named(report.precision or "fp32") or FP32_NAME)
    sweep = report.sweep or {}
    failed = [r for r in gates.results if r["status"] == "failed"]
    return {
        "cell": key, "model": model.name, "precision": report.precision, "backend": ver.backend,
        "directory": str(directory.relative_to(root)), "report": str((directory / "report.json").relative_to(root)),
        "status": "failed" if failed else "passed",
        "baseline_top1": acc.get("baseline_top1"), "top1": acc.get("target_top1"), "top1_delta_pp": acc.get("top1_delta_pp"),
        "agreement": acc["top1_agreement"], "cosine": acc["mean_cosine"],
        "p50_ms_b1": _target(per_batch, "1", "p50_ms"), "images_per_s_b8": _target(per_batch, "8", "images_per_s"),
        "size_bytes": artifact.stat().st_size if artifact.is_file() else None,
        "failed_gates": [r["name"] for r in failed],
        "gates": [{k: r[k] for k in ("name", "status", "measured", "threshold", "reason")} for r in gates.results],
        "evaluation": ver.eval_data.get("shards"),
        "ran_on": sweep.get("ran_on"), "seconds": sweep.get("seconds"),
        "fp32_reused_from": sweep.get("fp32_reused_from"), "stats_cache_hit": sweep.get("stats_cache_hit"),
        "compare": comparison_record(report),
    }


def _target(per_batch: dict[str, Any], batch: str, key: str) -> float | None:
    row = per_batch.get(batch) or {}
    return (row.get("target") or {}).get(key)


def accuracy_axis(rows: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """(row key, label): top-1 when every cell measured it, else agreement with FP32."""
    if rows and all(r.get("top1") is not None for r in rows):
        return "top1", "top-1 (%)"
    return "agreement", "top-1 agreement with FP32"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x = latency, higher y = accuracy), by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for index in order:
        if points[index][1] > best:
            front.append(index)
            best = points[index][1]
    return front


def front_cells(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Keys of the cells on the accuracy/latency Pareto front (cells without a batch-1 latency are left out)."""
    key, _ = accuracy_axis(rows)
    timed = [r for r in rows if r.get("p50_ms_b1") is not None and r.get(key) is not None]
    return [timed[i]["cell"] for i in pareto_front([(r["p50_ms_b1"], r[key]) for r in timed])]


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def render_markdown(sweep: dict[str, Any]) -> str:
    """sweep.md: one table row per cell, the Pareto front marked, failing and broken cells listed."""
    rows, front = sweep["cells"], set(sweep["pareto_front"])
    lines = [
        f"### resnext-deploy sweep: {len(rows)} cell(s), "
        + ("✅ every gate passed" if not sweep["failed_cells"] and not sweep["error_cells"] else
           f"❌ {len(sweep['failed_cells'])} failed, {len(sweep['error_cells'])} broken"),
        "",
        f"Evaluation: {sweep['evaluation'].get('count')} images ({sweep['evaluation'].get('kind')}), the same for every cell; "
        f"ran on {sweep['scheduler']['kind']}; ★ = on the accuracy/latency Pareto front.",
        "",
        "| model | precision | engine | top-1 % | Δ top-1 pp | agreement | cosine | p50 b1 ms | img/s b8 | size MB | gates | |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row.get("error"):
            lines.append(f"| {row['model']} | {row['precision']} | {row['backend']} | | | | | | | | ⚠️ error | |")
            continue
        size = None if row["size_bytes"] is None else row["size_bytes"] / 1e6
        verdict = "✅" if row["status"] == "passed" else "❌ " + ", ".join(row["failed_gates"])
        lines.append(
            f"| {row['model']} | {row['precision']} | {row['backend']} | {_fmt(row['top1'], '.2f')} | "
            f"{_fmt(row['top1_delta_pp'], '+.2f')} | {_fmt(row['agreement'], '.4f')} | {_fmt(row['cosine'], '.6f')} | "
            f"{_fmt(row['p50_ms_b1'], '.2f')} | {_fmt(row['images_per_s_b8'], '.1f')} | {_fmt(size, '.1f')} | {verdict} | "
            f"{'★' if row['cell'] in front else ''} |"
        )
    for row in rows:
        if row.get("error"):
            lines += ["", f"> **{row['cell']}** could not run: {row['error']}"]
    return "\n".join(lines) + "\n"


def write_markdown(root: Path, sweep: dict[str, Any]) -> Path:
    path = root / SWEEP_MD_NAME
    write_text(path, render_markdown(sweep))
    return path


def write_pareto_plot(root: Path, rows: Sequence[dict[str, Any]]) -> Path | None:
    """pareto.png: accuracy against batch-1 p50 latency, one labelled point per cell, the front drawn; None when untimed."""
    key, label = accuracy_axis(rows)
    timed = [r for r in rows if r.get("p50_ms_b1") is not None and r.get(key) is not None]
    if not timed:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    points = [(r["p50_ms_b1"], r[key]) for r in timed]
    front = pareto_front(points)
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    on_front = set(front)
    ax.scatter([p[0] for i, p in enumerate(points) if i not in on_front], [p[1] for i, p in enumerate(points) if i not in on_front],
               color="tab:gray", label="dominated")
    ax.scatter([points[i][0] for i in front], [points[i][1] for i in front], color="tab:red", zorder=3, label="Pareto front")
    ax.step([points[i][0] for i in front], [points[i][1] for i in front], where="post", color="tab:red", alpha=0.6)
    for row, (x, y) in zip(timed, points):
        ax.annotate(f"{row['model']}\n{row['precision']}/{row['backend']}", (x, y), textcoords="offset points",
                    xytext=(5, 4), fontsize=7)
    ax.set_xlabel("p50 latency at batch 1 (ms, lower is better)")
    ax.set_ylabel(f"{label} (higher is better)")
    ax.set_title("Sweep: accuracy against latency")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = root / PARETO_PNG_NAME
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def write_junit(path: Path, sweep: dict[str, Any]) -> Path:
    """JUnit XML: one ``<testsuite>`` per cell, one ``<testcase>`` per gate; a cell that could not run is an error."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="resnext-deploy sweep")
    for row in sweep["cells"]:
        gates = row.get("gates") or []
        suite = ET.SubElement(root, "testsuite", name=row["cell"], tests=str(max(len(gates), 1)),
                              failures=str(sum(g["status"] == "failed" for g in gates)), errors=str(int(bool(row.get("error")))),
                              skipped=str(sum(g["status"] == "skipped" for g in gates)))
        if row.get("error"):
            ET.SubElement(ET.SubElement(suite, "testcase", name="run", classname=row["cell"]), "error", message=row["error"])
        for gate in gates:
            case = ET.SubElement(suite, "testcase", name=gate["name"], classname=row["cell"])
            line = f"{gate['name']}: measured {gate['measured']}, threshold {gate['threshold']} {gate['reason']}".strip()
            if gate["status"] == "failed":
                ET.SubElement(case, "failure", message=line, type="GateFailed").text = line
            elif gate["status"] == "skipped":
                ET.SubElement(case, "skipped", message=gate["reason"])
    ET.indent(root)
    write_bytes(path, ET.tostring(root, encoding="utf-8", xml_declaration=True))
    return Path(path)


def print_summary(sweep: dict[str, Any], directory: Path) -> None:
    """The cells as a rich table on stdout, and where the reports are."""
    from rich.table import Table

    front = set(sweep["pareto_front"])
    table = Table(title=f"sweep: {len(sweep['cells'])} cell(s) on {sweep['scheduler']['kind']}")
    for column in ("cell", "top-1 %", "Δ pp", "agreement", "p50 b1 ms", "img/s b8", "MB", "gates", "front"):
        table.add_column(column)
    for row in sweep["cells"]:
        if row.get("error"):
            table.add_row(row["cell"], "", "", "", "", "", "", "[red]error[/]", "")
            continue
        size = None if row["size_bytes"] is None else row["size_bytes"] / 1e6
        verdict = "[green]passed[/]" if row["status"] == "passed" else "[red]failed: " + ", ".join(row["failed_gates"]) + "[/]"
        table.add_row(row["cell"] + (" (kept)" if row.get("resumed") else ""), _fmt(row["top1"], ".2f"),
                      _fmt(row["top1_delta_pp"], "+.2f"), _fmt(row["agreement"], ".4f"), _fmt(row["p50_ms_b1"], ".2f"),
                      _fmt(row["images_per_s_b8"], ".1f"), _fmt(size, ".1f"), verdict, "★" if row["cell"] in front else "")
    out.print(table)
    written = [directory / name for name in (SWEEP_MD_NAME, SWEEP_JSON_NAME, PARETO_PNG_NAME) if (directory / name).is_file()]
    out.print("reports: " + ", ".join(map(str, written)))  # no pareto.png line when none was written (untimed)
