"""Fold BatchNorm into the preceding convolution, explicitly, before export."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from resnext_deploy.errors import DeployError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class FoldResult:
    """The folded model and how many BatchNorm layers it absorbed."""

    model: torch.nn.Module
    batchnorms_before: int
    batchnorms_after: int


def count_batchnorms(model: torch.nn.Module) -> int:
    import torch

    return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def fold_batchnorm(model: torch.nn.Module) -> FoldResult:
    """Trace with torch.fx and fuse every Conv->BatchNorm pair (eval mode, running statistics)."""
    from torch.fx.experimental.optimization import fuse

    before = count_batchnorms(model)
    folded = fuse(model.eval(), inplace=False)
    after = count_batchnorms(folded)
    if after:
        raise DeployError(
            f"{after} of {before} BatchNorm layers do not follow a convolution and cannot be folded",
            hint="this architecture is not a plain ResNeXt; export it without folding is not supported",
        )
    return FoldResult(folded.eval(), before, after)
