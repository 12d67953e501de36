"""`resnext-deploy doctor`: what this machine can run, as `yolo checks` and `huggingface-cli env` answer it."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from resnext_deploy import machine
from resnext_deploy.cli._errors import handles_errors
from resnext_deploy.cli._options import JsonOpt
from resnext_deploy.console import out
from resnext_deploy.engines.registry import backend_names, get_spec

RequireOpt = Annotated[
    list[str] | None,
    typer.Option("--require", metavar="ENGINE", help=f"Exit 2, with the install hint, unless this engine is usable "
                 f"({', '.join(backend_names(with_auto=False))}); repeat for several.", show_default=False),
]


@handles_errors
def doctor(json_output: JsonOpt = False, require: RequireOpt = None) -> None:
    """Show which engines are installed and usable here, what `--backend auto` picks per precision and why,
    the CPU features that matter (VNNI, AVX-512 BF16, AMX), usable cores, GPUs and package versions.

    The same record is report.json's `environment`. Exit 0 unless an engine named by --require is not usable (2).
    """
    for name in require or []:
        get_spec(name)  # an unknown name is a usage error before anything is probed
    facts = machine.describe()
    if json_output:
        print(json.dumps(facts, indent=2))
    else:
        _print(facts)
    for name in require or []:
        machine.require_engine(facts, name)


def _print(facts: dict[str, Any]) -> None:
    engines = Table(title="engines", box=box.SIMPLE_HEAD, title_justify="left")
    for column in ("engine", "installed", "usable", "version", "why / what to do"):
        engines.add_column(column, no_wrap=column != "why / what to do")
    for e in facts["engines"]:
        note = escape(e["why"]) if e["usable"] else f"[yellow]{escape(e['why'])}[/]\n[dim]{escape(e['hint'])}[/]"
        engines.add_row(e["title"], _yes(e["installed"]), _yes(e["usable"]), e["version"] or "-", note)
    out.print(engines)
    auto = Table(title="--backend auto", box=box.SIMPLE_HEAD, title_justify="left")
    for column in ("precision", "engine", "reason"):
        auto.add_column(column, no_wrap=column != "reason")
    for precision, choice in facts["auto"].items():
        auto.add_row(precision, choice["backend"] or "-", escape(choice["reason"]))
    out.print(auto)
    table = Table(title="machine", box=box.SIMPLE_HEAD, title_justify="left", show_header=False)
    table.add_column("fact", no_wrap=True)
    table.add_column("value")
    features = facts["cpu_features"]
    table.add_row("CPU", f"{facts['cpu']} ({facts['machine']})")
    table.add_row("CPU features", ", ".join(features) if features else "none of AVX2, AVX-512, VNNI, BF16, AMX")
    table.add_row("usable cores", f"{facts['usable_cores']} of {facts['cpu_count']}")
    gpu = facts["gpu"]
    gpus = [f"{d['name']} (compute capability {d['compute_capability']})" for d in gpu["devices"]]
    table.add_row("GPUs", ", ".join(gpus) if gpus else "none (no CUDA driver or device)")
    if gpu["cuda_driver"]:
        table.add_row("CUDA (driver)", gpu["cuda_driver"])
    for e in facts["engines"]:
        for key, value in e["details"].items():
            shown = ", ".join(map(str, value)) if isinstance(value, list) else (
                ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else str(value))
            table.add_row(f"{e['title']} {key.replace('_', ' ')}", escape(shown))
    table.add_row("Python", f"{facts['python']} on {facts['platform']}")
    table.add_row("packages", ", ".join(f"{k} {v}" for k, v in facts["packages"].items()))
    out.print(table)


def _yes(value: bool) -> str:
    return "[green]yes[/]" if value else "[red]no[/]"
