"""No backend name is spelled outside engines/: the rest of the toolchain reads the registry.

In ``resnext_deploy/`` outside the rooms (CLI, export flow, verification, bundles) a backend name
may appear neither as an identifier (no import of a backend package) nor in a string; in ``calibration/``,
``exporters/`` and ``data/``, which use ONNX Runtime's quantizer and checker as libraries, not in a string.
Docstrings and comments are prose and may name them. ``calibration/recipes.py`` names the INT8
recipes, each after the engine it is tuned for (the registry maps a backend to its default recipe).
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMES = re.compile(r"\b(onnxruntime|openvino|tensorrt)\b")
PACKAGE = ROOT / "resnext_deploy"
RECIPE_TABLE = PACKAGE / "calibration" / "recipes.py"
ROOMS = ("calibration", "exporters", "data", "engines")
PROSE_BEFORE = {tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING}
TEXT = {tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}  # f-string pieces on Python 3.12+


def _spelled(path: Path, *, identifiers: bool) -> list[str]:
    """``file:line: token`` for each backend name in a code token of ``path`` (docstrings and comments skipped)."""
    found = []
    previous = tokenize.ENCODING
    for token in tokenize.tokenize(io.BytesIO(path.read_bytes()).readline):
        kind = token.type
        if kind in (tokenize.COMMENT, tokenize.NL):
            continue
        is_docstring = kind == tokenize.STRING and previous in PROSE_BEFORE
        checked = (kind in TEXT and not is_docstring) or (identifiers and kind == tokenize.NAME)
        if checked and NAMES.search(token.string):
            where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
            found.append(f"{where}:{token.start[0]}: {token.string.strip()[:80]}")
        previous = kind
    return found


def test_no_backend_name_outside_engines() -> None:
    found: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] not in ROOMS:
            found += _spelled(path, identifiers=True)
    for room in ("calibration", "exporters", "data"):
        for path in sorted((PACKAGE / room).rglob("*.py")):
            if path != RECIPE_TABLE:
                found += _spelled(path, identifiers=False)
    assert not found, "backend names outside engines/ (read them from resnext_deploy.engines.registry):\n" + "\n".join(found)


def test_the_check_catches_a_spelled_name(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""Docstring naming onnxruntime is prose."""\n# tensorrt in a comment\nx = "tensorrt"\nimport openvino\n')
    found = [line.split(": ", 1)[1] for line in _spelled(sample, identifiers=True)]
    assert found == ['"tensorrt"', "openvino"]
