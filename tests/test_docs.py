"""docs/cli.md is what Typer generates from the commands today, so an option change cannot leave it behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the Makefile's `docs` target runs the same command
COMMAND = ["-m", "typer", "resnext_deploy.cli", "utils", "docs", "--name", "resnext-deploy",
           "--title", "resnext-deploy command reference"]


def test_cli_reference_is_up_to_date(tmp_path: Path) -> None:
    generated = tmp_path / "cli.md"
    subprocess.run([sys.executable, *COMMAND, "--output", str(generated)], check=True, capture_output=True, cwd=ROOT,
                   timeout=120)
    committed = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert generated.read_text(encoding="utf-8") == committed, (
        "docs/cli.md is out of date with the CLI's commands and options: run `make docs` "
        f"(or `python {' '.join(COMMAND)} --output docs/cli.md`) and commit the result"
    )


def test_readme_links_resolve() -> None:
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(((?:docs|bench)/[^)#]+)", readme):
        assert (ROOT / target).is_file(), f"README.md links to {target}, which does not exist"
