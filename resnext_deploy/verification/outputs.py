"""What verification leaves behind: report.md (PR comment), JUnit XML, latency.png, a printed table."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from resnext_deploy.console import out
from resnext_deploy.errors import InputError
from resnext_deploy.files import atomic_path, write_bytes, write_text
from resnext_deploy.report import GatesRecord, Report, VerificationRecord
from resnext_deploy.verification.held_out import summary_lines

REPORT_MD = "report.md"
LATENCY_PNG = "latency.png"
JUNIT_SUITE = "resnext-deploy gates"


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        return f"{value:.{digits}g}"
    return str(value)


def _sqnr(accuracy: dict[str, Any]) -> str:
    return "∞ (identical logits)" if accuracy.get("identical_logits") else _fmt(accuracy["sqnr_db"])


def _sections(report: Report) -> tuple[VerificationRecord, GatesRecord]:
    """The verification and gates sections every output reads (a verified report has both)."""
    if report.verification is None or report.gates is None:
        raise InputError("this report was never verified", hint="run `resnext-deploy verify` on the export directory")
    return report.verification, report.gates


def _name(report: Report) -> str:
    return report.model.name if report.model is not None else "?"


def _status_icon(status: str) -> str:
    return {"passed": "✅", "failed": "❌"}.get(status, "⏭️")


def render_markdown(report: Report) -> str:
    """A Markdown summary for a PR comment: accuracy, latency and gate tables."""
    ver, gates = _sections(report)
    acc = ver.accuracy
    lines = [
        f"### resnext-deploy verify: {_name(report)} {report.precision} "
        f"{'✅ passed' if gates.passed else '❌ failed'}",
        "",
        *([f"**Failed gates:** {', '.join(f'`{name}`' for name in gates.failed)}", ""] if gates.failed else []),
        "| | |", "|---|---|",
        f"| model | `{_name(report)}` |",
        f"| precision | {report.precision} |",
        f"| backend | {ver.target['backend']} |",
        f"| baseline | {ver.baseline['kind']} on {ver.baseline['backend']}{_providers(ver.baseline)} |",
        f"| eval images | {acc['images']} ({ver.eval_data['kind']}) |",
        "",
    ]
    for warning in ver.notes:
        lines.append(f"> **note:** {warning}")
    lines += ["", "#### Accuracy", "", "| metric | baseline | target | delta |", "|---|---|---|---|"]
    if acc["accuracy_measured"]:
        lines.append(f"| top-1 % | {_fmt(acc['baseline_top1'])} | {_fmt(acc['target_top1'])} | {_fmt(acc['top1_delta_pp'], 3)} pp |")
        lines.append(f"| top-5 % | {_fmt(acc['baseline_top5'])} | {_fmt(acc['target_top5'])} | {_fmt(acc['target_top5'] - acc['baseline_top5'], 3)} pp |")
    else:
        lines.append("| top-1 % | not measured (no labels) | | |")
    lines += [
        f"| top-1 agreement | | {_fmt(acc['top1_agreement'])} | |",
        f"| mean logits cosine | | {_fmt(acc['mean_cosine'], 6)} | |",
        f"| SQNR dB | | {_sqnr(acc)} | |",
    ]
    latency = ver.latency
    if latency and latency.get("per_batch"):
        lines += ["", "#### Latency (ms, random inputs)", ""]
        scope = latency.get("scope") or {}
        if scope.get("target"):
            lines += [f"Target time: {scope['target']}.", ""]
        lines += ["| batch | baseline p50 | target p50 | target p90 | target p99 | target img/s | speedup |",
                  "|---|---|---|---|---|---|---|"]
        for batch, row in latency["per_batch"].items():
            if "skipped" in row:
                lines.append(f"| {batch} | skipped: {row['skipped']} | | | | | |")
                continue
            b, t = row["baseline"], row["target"]
            lines.append(f"| {batch} | {b['p50_ms']:.2f} | {t['p50_ms']:.2f} | {t['p90_ms']:.2f} | {t['p99_ms']:.2f} "
                         f"| {_fmt(t['images_per_s'], 4)} | {_fmt(row.get('speedup'), 3)}x |")
    lines += ["", "#### Gates", "", "| | gate | threshold | measured | margin |", "|---|---|---|---|---|"]
    for gate in gates.results:
        measured = _fmt(gate["measured"]) if gate["status"] != "skipped" else f"skipped: {gate['reason']}"
        lines.append(f"| {_status_icon(gate['status'])} | `{gate['name']}` | {_fmt(gate['threshold'])} | {measured} | {_fmt(gate['margin'])} |")
    return "\n".join(lines) + "\n"


def write_markdown(directory: Path, report: Report) -> Path:
    path = directory / REPORT_MD
    write_text(path, render_markdown(report))
    return path


def write_junit(path: Path, report: Report) -> Path:
    """JUnit XML: one ``<testcase>`` per gate in a ``<testsuite name="resnext-deploy gates">``."""
    _, gates = _sections(report)
    results = gates.results
    required = gates.required
    classname = f"resnext-deploy.{_name(report)}.{report.precision}"
    failures = sum(r["status"] == "failed" or (required and r["status"] == "skipped") for r in results)
    skipped = 0 if required else sum(r["status"] == "skipped" for r in results)
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", name=JUNIT_SUITE, tests=str(len(results)), failures=str(failures),
                          errors="0", skipped=str(skipped))
    for result in results:
        case = ET.SubElement(suite, "testcase", name=result["name"], classname=classname)
        if result["status"] == "failed":
            failure = ET.SubElement(case, "failure", message=_gate_line(result), type="GateFailed")
            failure.text = _gate_line(result)
        elif result["status"] == "skipped" and required:
            message = f"{result['name']} was not measured ({result['reason']}) and --require-gates is set"
            ET.SubElement(case, "failure", message=message, type="GateSkipped").text = message
        elif result["status"] == "skipped":
            ET.SubElement(case, "skipped", message=result["reason"])
        else:
            ET.SubElement(case, "system-out").text = _gate_line(result)
    ET.indent(root)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, ET.tostring(root, encoding="utf-8", xml_declaration=True))
    return path


def _gate_line(result: dict[str, Any]) -> str:
    return (f"{result['name']} ({result['metric']}): measured {_fmt(result['measured'])}, threshold "
            f"{_fmt(result['threshold'])}, margin {_fmt(result['margin'])}")


def write_latency_plot(directory: Path, report: Report) -> Path | None:
    """``latency.png``: p50 baseline vs target by batch size (matplotlib Agg); None when nothing to plot."""
    ver, _ = _sections(report)
    per_batch = {b: r for b, r in (ver.latency or {}).get("per_batch", {}).items() if "skipped" not in r}
    if not per_batch:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    batches = list(per_batch)
    x = range(len(batches))
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    width = 0.38
    ax.bar([i - width / 2 for i in x], [per_batch[b]["baseline"]["p50_ms"] for b in batches], width,
           label=f"baseline ({ver.baseline['kind']})")
    ax.bar([i + width / 2 for i in x], [per_batch[b]["target"]["p50_ms"] for b in batches], width,
           label=f"{report.precision} ({ver.target['backend']})")
    ax.set_xticks(list(x), [f"batch {b}" for b in batches])
    ax.set_ylabel("p50 latency (ms)")
    ax.set_title(f"{_name(report)}: p50 latency (what is timed: report.md)")
    ax.legend()
    fig.tight_layout()
    path = directory / LATENCY_PNG
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


COLD_START_NOTE = ("a cold start compiles the ONNX when it loads, as no engine saved for this machine was found: "
                   "it costs start-up time, not latency, which is measured after warm-up")
_START_WORDS = {"cold": "cold start", "compiled": "cold start", "saved-optimized": "saved engine", "cached": "saved engine"}


def _evaluated_on(eval_data: dict[str, Any], count: int) -> str:
    """``32 images from /data/val`` or ``32 random inputs``."""
    if eval_data.get("kind") == "images":
        return f"{count} images from {eval_data.get('root')}"
    return f"{count} random inputs"


def _start_line(ver: VerificationRecord) -> str:
    """How each side started (saved engine or cold), and once what a cold start means."""
    starts = {side: _START_WORDS.get(str(getattr(ver, side).get("start_mode")))
              for side in ("target", "baseline")}
    shown = [f"{side} {word}" for side, word in starts.items() if word]
    if not shown:
        return ""
    cold = "cold start" in starts.values()
    return "start: " + ", ".join(shown) + (f"; {COLD_START_NOTE}" if cold else "")


def _providers(side: dict[str, Any]) -> str:
    """`` (CPUExecutionProvider)``: the providers a side's session really ran on, when it has any."""
    providers = side.get("providers")
    return f" ({', '.join(providers)})" if providers else ""


def print_summary(report: Report) -> None:
    """A rich table of the gates plus the headline numbers, on stdout."""
    from rich.table import Table

    ver, gates = _sections(report)
    acc = ver.accuracy
    out.print(f"[bold]{_name(report)}[/] {report.precision} on {ver.target['backend']} "
              f"vs {ver.baseline['kind']} baseline{_providers(ver.baseline)}, {_evaluated_on(ver.eval_data, acc['images'])}")
    for note in ver.notes:
        out.print(f"  [bold yellow]! {note}[/]")
    starts = _start_line(ver)
    if starts:
        out.print(f"  [dim]{starts}[/]")
    if acc["accuracy_measured"]:
        out.print(f"  top-1 {acc['baseline_top1']:.2f}% -> {acc['target_top1']:.2f}% ({acc['top1_delta_pp']:+.2f} pp)")
    out.print(f"  agreement {acc['top1_agreement']:.4f}, cosine {acc['mean_cosine']:.6f}, SQNR {_sqnr(acc)} dB")
    if ver.mixed_precision is not None:
        first, *missed = summary_lines(ver.mixed_precision.model_dump(exclude_unset=True))
        out.print(f"  {first}")
        for line in missed:
            out.print(f"  [bold yellow]{line}[/]")
    table = Table(title="gates")
    for column in ("gate", "threshold", "measured", "margin", "result"):
        table.add_column(column)
    for gate in gates.results:
        colour = {"passed": "green", "failed": "red"}.get(gate["status"], "yellow")
        measured = _fmt(gate["measured"]) if gate["status"] != "skipped" else gate["reason"]
        table.add_row(gate["name"], _fmt(gate["threshold"]), measured, _fmt(gate["margin"]), f"[{colour}]{gate['status']}[/]")
    out.print(table)
