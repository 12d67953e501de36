"""`resnext-deploy sensitivity DIR`: which INT8 layers move the logits most, as a table, sensitivity.json and a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from resnext_deploy.calibration.sensitivity import DEFAULT_PROBE_IMAGES
from resnext_deploy.cli._errors import handles_errors
from resnext_deploy.cli._options import ExportDirArg, JsonOpt
from resnext_deploy.console import out
from resnext_deploy.sensitivity_report import SensitivityOptions, run_sensitivity

_WHERE = "Where the images are"


@handles_errors
def sensitivity(
    directory: ExportDirArg,
    calib_data: Annotated[
        Path | None,
        typer.Option("--calib-data", help="The calibration source folder, if it moved since the export [default: the "
                     "manifest's root].", rich_help_panel=_WHERE, show_default=False),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Statistics and sensitivity cache [default: $RESNEXT_DEPLOY_CACHE or "
                     "~/.cache/resnext-deploy].", show_default=False),
    ] = None,
    probe_images: Annotated[
        int, typer.Option("--probe-images", help="Tuning images (the first ones) each site is measured on; "
                          "export's search then measures its candidates on every tuning image.")
    ] = DEFAULT_PROBE_IMAGES,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads [default: every usable core].", show_default=False)
    ] = None,
    top: Annotated[int, typer.Option("--top", "-k", help="Rows of the table (every layer is in sensitivity.json).", min=1)] = 20,
    json_output: JsonOpt = False,
) -> None:
    """Rank the INT8 layers of an export by how far the logits move when each alone is quantized.

    DIR is an export directory with an INT8 artifact and its calibration manifest (which pins the
    held-out tuning images). Writes DIR/sensitivity.json (every layer in network order, the ranking
    and the order `export --target-*` leaves layers in float) and DIR/sensitivity.png.
    Cached: a second run on the same model, images and recipe reads the cache. Exit 2 for bad input.
    """

    options = SensitivityOptions(calib_data=calib_data, probe_images=probe_images, cache_dir=cache_dir, threads=threads)
    result, document, written = run_sensitivity(directory, options)
    if json_output:
        print(json.dumps(document, indent=1))
        return
    print_table(result, document, top)

    out.print(f"  written: {', '.join(str(path) for path in written.values())}"
              f"{' (analysis from the cache)' if result.cache_hit else f' ({result.seconds:.0f}s)'}")


def print_table(result: Any, document: dict[str, Any], top: int) -> None:
    """The most sensitive layers, with their cost share and the analysis's headline numbers."""
    from rich import box
    from rich.table import Table

    full = result.full_int8
    out.print(f"[bold]{document['model']}[/] INT8 ({result.recipe} recipe, {result.method}): full INT8 on the "
              f"{result.probe_images} probe images (of {result.tuning_images} tuning images): cosine {full['cosine']:.5f}, "
              f"agreement {full['agreement']:.3f}")
    table = Table(title=f"most sensitive of {len(result.layers)} layers (alone in INT8, {result.probe_images} probe images)",
                  box=box.SIMPLE_HEAD)
    for column in ("rank", "layer", "op", "position", "MACs", "logits noise", "~cos drop", "act SQNR dB", "weight SQNR dB"):
        table.add_column(column, justify="left" if column in ("layer", "op") else "right", no_wrap=True)
    for layer in result.ranked()[:top]:
        table.add_row(
            str(layer.rank), layer.label, layer.op_type, str(layer.position), f"{layer.cost_share:.1%}",
            f"{layer.output_nsr:.2e}", f"{layer.cosine_drop:.1e}", _db(layer.local_sqnr_db), _db(layer.weight_sqnr_db),
        )
    out.print(table)


def _db(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
