"""A deliberately sensitive layer: one outlier channel that a per-tensor activation scale cannot represent.

The function is unchanged: output channel ``c`` of ``conv1`` in one bottleneck is scaled up by
``factor`` through its BatchNorm (ReLU commutes with a positive scale) and every weight of the
grouped ``conv2`` that reads channel ``c`` is scaled down by the same factor. In FP32 the logits
are the same; in INT8 the activation between the two convs spends its whole per-tensor range on
one channel, and every other channel falls into a few quantization steps.
"""

from __future__ import annotations

from typing import Any

SENSITIVE_BLOCK = "layer3.0"
OUTLIER_CHANNEL = 5
OUTLIER_FACTOR = 512.0


def with_outlier_channel(state_dict: dict[str, Any], block: str = SENSITIVE_BLOCK, channel: int = OUTLIER_CHANNEL,
                         factor: float = OUTLIER_FACTOR) -> dict[str, Any]:
    """A copy of a timm ResNeXt state_dict computing the same function with one outlier channel after ``block.conv1``."""
    state = {name: value.clone() for name, value in state_dict.items()}
    state[f"{block}.bn1.weight"][channel] *= factor
    state[f"{block}.bn1.bias"][channel] *= factor
    weight = state[f"{block}.conv2.weight"]  # (out, in / groups, k, k), grouped
    per_group_in = weight.shape[1]
    groups = state[f"{block}.bn1.weight"].shape[0] // per_group_in
    per_group_out = weight.shape[0] // groups
    group = channel // per_group_in
    weight[group * per_group_out : (group + 1) * per_group_out, channel % per_group_in] /= factor
    return state
