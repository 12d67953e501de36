"""`resnext-deploy inspect`: print a bundle's manifest and verify every checksum."""

from __future__ import annotations

import json
from typing import Any

from resnext_deploy import console
from resnext_deploy.bundle import open_bundle
from resnext_deploy.cli._errors import handles_errors
from resnext_deploy.cli._options import BundleArg, JsonOpt
from resnext_deploy.cli.groups import TrustArgs, uses
from resnext_deploy.engines.registry import REGISTRY


def _target_line(target: dict[str, Any]) -> str:
    spec = REGISTRY.get(str(target.get("backend")))
    return spec.describe_target(target) if spec else f"{target.get('backend')} (unknown to this resnext-deploy)"


def print_manifest(manifest: dict[str, Any], verified: set[str], signature: Any = None) -> None:
    """Rich view of a manifest: model, tensors, preprocessing, toolchain, targets, files."""
    from rich.table import Table

    model, pre, tool = manifest["model"], manifest["preprocessing"], manifest.get("toolchain", {})
    summary = Table(show_header=False, box=None, pad_edge=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("schema", f"{manifest['schema']} v{manifest['schema_version']}")
    summary.add_row("model", f"{model['name']} ({model['num_classes']} classes), precision {manifest['precision']}")
    weights = model.get("weights", {})
    summary.add_row("weights", ("[bold red]RANDOM[/] " if model.get("random_weights") else "") + str(weights.get("origin", "?")))
    for key in ("input", "output"):
        spec = manifest[key]
        summary.add_row(key, f"{spec['name']} {spec['dtype']} ({', '.join(str(d) for d in spec['shape'])})")
    summary.add_row("preprocessing", f"resize {pre['input_size']}/{pre['crop_pct']} {pre['interpolation']}, "
                    f"center crop {pre['input_size']}, mean {pre['mean']}, std {pre['std']}")
    summary.add_row("toolchain", f"exported with resnext-deploy {tool.get('exported_with')}, packaged with {tool.get('packaged_with')}, "
                    f"python {tool.get('python')}, opset {tool.get('opset')}")
    summary.add_row("libraries", ", ".join(f"{k} {v}" for k, v in sorted(tool.get("packages", {}).items())))
    if signature is not None:
        summary.add_row("signature", ("[green]✓[/] " if signature.verified else "") + signature.note)
    for target in manifest.get("targets", []) or [None]:
        summary.add_row("target", _target_line(target) + f": {target['artifact']}" if target else "none recorded (run `resnext-deploy build`)")
    console.out.print(summary)
    files = Table(title="files", title_justify="left")
    files.add_column("path")
    files.add_column("size", justify="right")
    files.add_column("sha256")
    files.add_column("ok")
    for record in manifest["files"]:
        ok = "[green]✓[/]" if record["path"] in verified else "[red]✗[/]"
        files.add_row(record["path"], f"{record['size']:,}", record["sha256"][:16] + "…", ok)
    console.out.print(files)


@handles_errors
@uses(trust=TrustArgs)
def inspect_bundle(bundle: BundleArg, trust: TrustArgs, json_output: JsonOpt = False) -> None:
    """Print BUNDLE's manifest and verify every file's size and sha256, that the manifest agrees with the model it
    ships, and the signature (a tampered, edited or wrongly signed bundle exits 2)."""

    with open_bundle(bundle, trust.to_policy()) as opened:
        for warning in opened.warnings:
            console.warn(warning)
        verified = {f["path"] for f in opened.manifest["files"]}
        if json_output:
            console.out.print_json(json.dumps({"bundle": str(bundle), "verified": True, "warnings": opened.warnings,
                                               "signature": opened.signature.to_dict() if opened.signature else None,
                                               "manifest": opened.manifest}))
            return
        print_manifest(opened.manifest, verified, opened.signature)
        console.out.print(f"[green]✓[/] {len(verified)} files match manifest.json ({bundle})")
