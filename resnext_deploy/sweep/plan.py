"""What a sweep runs: the matrix (models x precisions x backends) and each model's weights, from TOML and flags.

A plan file::

    models = ["resnext50d_32x4d", "tv_resnext50_32x4d"]
    precisions = ["fp32", "fp16", "int8"]
    backends = ["onnxruntime"]
    weights = "pretrained"                 # every model; or a table per model:
    # [weights]
    # resnext50d_32x4d = "checkpoints/rx50d.pth"   (relative to the plan file)

Flags (``--models``, ``--precisions``, ``--backends``, ``--weights``) replace the plan's lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from resnext_deploy.engines import backend_names, resolve_backend
from resnext_deploy.errors import InputError, UsageError
from resnext_deploy.layout import PRECISIONS
from resnext_deploy.zoo import get_model_spec

PLAN_KEYS = ("models", "precisions", "backends", "weights")
DEFAULT_WEIGHTS = "pretrained"


@dataclass(frozen=True)
class Plan:
    """The resolved matrix; ``weights`` maps a model to its ``--weights`` argument."""

    models: tuple[str, ...]
    precisions: tuple[str, ...]
    backends: tuple[str, ...]
    weights: dict[str, str] = field(default_factory=dict)

    def weights_for(self, model: str) -> str:
        return self.weights.get(model, DEFAULT_WEIGHTS)

    def cells(self) -> list[tuple[str, str, str]]:
        """Every (model, precision, backend), models outermost, in plan order; ``auto`` resolved per precision here."""

        cells = []
        for model in self.models:
            for precision in self.precisions:
                names = [resolve_backend(b, precision)[0].name if b == "auto" else b for b in self.backends]
                cells += [(model, precision, backend) for backend in dict.fromkeys(names)]
        return cells

    def to_dict(self) -> dict[str, Any]:
        return {"models": list(self.models), "precisions": list(self.precisions), "backends": list(self.backends),
                "weights": {m: self.weights_for(m) for m in self.models}}


def read_plan_file(path: Path) -> dict[str, Any]:
    """The plan file's table; a missing, unreadable or non-TOML file is an ``InputError``."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"plan file {path} does not exist", hint="pass a TOML plan, or --models/--precisions/--backends") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read plan file {path}: {exc}", hint="pass a TOML plan file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"plan file {path} is not valid TOML: {exc}",
                         hint='write e.g. models = ["resnext50d_32x4d"] and precisions = ["fp32", "int8"]') from None
    unknown = sorted(set(data) - set(PLAN_KEYS))
    if unknown:
        raise UsageError(f"plan file {path}: unknown key(s) {', '.join(unknown)}", hint=f"use {', '.join(PLAN_KEYS)}")
    return data


def _names(value: Any, key: str, where: str) -> tuple[str, ...]:
    """A list of names (or one comma-separated string), de-duplicated in order."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}: {key} must be a list of names, got {value!r}", hint=f'e.g. {key} = ["..."]')
    return tuple(dict.fromkeys(v.strip() for v in value))


def _weights(value: Any, base: Path | None, where: str) -> tuple[str | None, dict[str, str]]:
    """(weights for every model, per-model weights); paths relative to the plan file's folder."""

    def resolve(text: str) -> str:
        if text in ("pretrained", "random") or base is None or Path(text).expanduser().is_absolute():
            return text
        return str((base / text).resolve())

    if value is None:
        return None, {}
    if isinstance(value, str):
        return resolve(value), {}
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return None, {str(k): resolve(v) for k, v in value.items()}
    raise UsageError(f"{where}: weights must be a string or a table of model = weights", hint='e.g. [weights] resnext50d_32x4d = "rx50d.pth"')


def _check_choices(kind: str, values: Sequence[str], choices: Sequence[str]) -> None:
    for value in values:
        if value not in choices:
            raise UsageError(f"unknown {kind} '{value}' in the sweep plan", hint=f"use one of: {', '.join(choices)}")


def make_plan(
    path: Path | None = None, models: Sequence[str] | str | None = None, precisions: Sequence[str] | str | None = None,
    backends: Sequence[str] | str | None = None, weights: str | None = None,
) -> Plan:
    """The plan from ``path`` (optional) with flags replacing its lists, every name checked against the zoo and engines."""

    data = read_plan_file(path) if path is not None else {}
    where = str(path) if path is not None else "flags"
    chosen = {
        "models": models if models is not None else data.get("models", ()),
        "precisions": precisions if precisions is not None else data.get("precisions", PRECISIONS),
        "backends": backends if backends is not None else data.get("backends", ("auto",)),
    }
    lists = {key: _names(value, key, where) for key, value in chosen.items()}
    empty = [key for key, value in lists.items() if not value]
    if empty:
        raise UsageError(f"the sweep matrix is empty: no {' and no '.join(empty)}",
                         hint="name at least one model (--models or models = [...] in the plan); "
                              "`resnext-deploy models` lists the zoo")
    for model in lists["models"]:
        get_model_spec(model)
    _check_choices("precision", lists["precisions"], PRECISIONS)
    _check_choices("engine", lists["backends"], backend_names())
    every, per_model = _weights(data.get("weights"), Path(path).parent if path is not None else None, where)
    if weights is not None:
        every, per_model = weights, {}
    table = {model: per_model.get(model, every or DEFAULT_WEIGHTS) for model in lists["models"]}
    for model, value in table.items():
        if value not in ("pretrained", "random") and not Path(value).expanduser().is_file():
            raise InputError(f"weights of {model}: {value} is not a file", hint="pass 'pretrained', 'random' or a checkpoint path")
    return Plan(lists["models"], lists["precisions"], lists["backends"], table)
