"""INT8 Q/DQ recipes: where Q/DQ nodes go and with which types, chosen by the target backend.

Every recipe reads the same calibration statistics; they differ only in quantizer settings:

* ``onnxruntime`` (CPU): unsigned INT8 activations (ORT's x86 kernels are u8s8), per-channel
  symmetric INT8 weights, every op ORT has a QDQ fusion for, grouped convolutions left in float
  (ORT's float grouped conv beats its int8 one; measured by ``bench/bench_quant.py``).
* ``tensorrt``: symmetric signed INT8 activations and per-channel symmetric weights, Q/DQ only on
  the inputs of Conv/Gemm and of the residual Add (NVIDIA's explicit-quantization placement:
  quantize the inputs of weighted layers and the skip connection, not their outputs, so
  TensorRT fuses Conv+bias+Add+ReLU+Q), float bias; optionally grouped 3x3 convs left unquantized
  (TensorRT's INT8 grouped conv is slower than FP16: NVIDIA/TensorRT issues 4529 and 1409).
  Its float regions (and Q/DQ scales) are FP16 with FP32 graph I/O, ModelOpt's default: a strongly
  typed TensorRT network runs exactly the graph's types, so FP32 regions would run in FP32.
* ``openvino`` (CPU): every convolution quantized, grouped ones included (OpenVINO's CPU plugin runs
  Q/DQ grouped convolutions as int8 kernels), symmetric per-channel INT8 weights, float bias, and
  the activation type OpenVINO measured fastest (see ``openvino_recipe``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from resnext_deploy.errors import UsageError

RECIPES = ("onnxruntime", "openvino", "tensorrt")
DEFAULT_RECIPE = RECIPES[0]


@dataclass(frozen=True)
class Recipe:
    """Quantizer settings for ``onnxruntime.quantization.quantize_static`` (QDQ format)."""

    name: str
    activation_type: str  # a QuantType member name: "QUInt8" or "QInt8"
    weight_type: str
    per_channel: bool
    keep_grouped_float: bool
    op_types_to_quantize: tuple[str, ...] | None = None
    extra_options: dict[str, Any] = field(default_factory=dict)
    default_method: str = "entropy"  # the calibration method `--calib-method auto` picks for this recipe
    release_residual_conv_side: bool = False  # see calibration/qdq_placement.py
    float_regions: str = "fp32"  # "fp16": everything not INT8 runs FP16 (calibration/fp16.float_regions_to_fp16)

    @property
    def activation_symmetric(self) -> bool:
        return bool(self.extra_options.get("ActivationSymmetric", False))

    @property
    def output_quant_excluded(self) -> frozenset[str]:
        """Op types whose outputs this recipe leaves unquantized (their consumers quantize their inputs)."""
        return frozenset(self.extra_options.get("OpTypesToExcludeOutputQuantization", ()))

    def quant_types(self) -> tuple[Any, Any]:
        """(activation, weight) as ``QuantType`` members."""
        from onnxruntime.quantization import QuantType

        return QuantType[self.activation_type], QuantType[self.weight_type]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["op_types_to_quantize"] = list(self.op_types_to_quantize) if self.op_types_to_quantize else None
        return data


def onnxruntime_recipe(keep_grouped_float: bool = True) -> Recipe:
    """ORT CPU: QUInt8 activations, per-channel symmetric QInt8 weights, int32 bias (QLinearConv fusion)."""
    return Recipe(
        name="onnxruntime",
        activation_type="QUInt8",
        weight_type="QInt8",
        per_channel=True,
        keep_grouped_float=keep_grouped_float,
        extra_options={
            "ActivationSymmetric": False,
            "WeightSymmetric": True,
            "QuantizeBias": True,
            "OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"],
        },
        # ORT's own default: 0.99921 logits cosine in bench/bench_quant.py (entropy 0.99887, percentile
        # 0.99935) and 512 images calibrated in 50 s, a quarter of the histogram methods' time
        default_method="minmax",
    )


def tensorrt_recipe(keep_grouped_float: bool = False) -> Recipe:
    """TensorRT: symmetric QInt8 everywhere, Q/DQ on Conv/Gemm/MatMul and residual Add inputs only."""
    return Recipe(
        name="tensorrt",
        activation_type="QInt8",
        weight_type="QInt8",
        per_channel=True,
        keep_grouped_float=keep_grouped_float,
        op_types_to_quantize=("Conv", "Gemm", "MatMul", "Add"),
        extra_options={
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "QuantizeBias": False,
            "OpTypesToExcludeOutputQuantization": ["Conv", "Gemm", "MatMul", "Add"],
        },
        # symmetric int8 is sensitive to outliers: percentile (99.999) gave the best logits cosine of the
        # three methods in bench/bench_quant.py (0.99915 vs entropy 0.99863, minmax 0.99870)
        default_method="percentile",
        release_residual_conv_side=True,
        float_regions="fp16",
    )


def openvino_recipe(keep_grouped_float: bool = False, activation_type: str = "QUInt8") -> Recipe:
    """OpenVINO CPU: every conv in INT8 (grouped too), per-channel symmetric QInt8 weights, float bias.

    Activations: unsigned asymmetric (post-ReLU tensors use the whole u8 range; OpenVINO's int8
    kernels are u8s8 on VNNI), measured against signed symmetric in bench/bench_quant.py.
    """
    return Recipe(
        name="openvino",
        activation_type=activation_type,
        weight_type="QInt8",
        per_channel=True,
        keep_grouped_float=keep_grouped_float,
        extra_options={
            "ActivationSymmetric": activation_type == "QInt8",
            "WeightSymmetric": True,
            "QuantizeBias": False,
            "OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"],
        },
        default_method="minmax",
    )


_FACTORIES = {"onnxruntime": onnxruntime_recipe, "openvino": openvino_recipe, "tensorrt": tensorrt_recipe}


def get_recipe(name: str, keep_grouped_float: bool | None = None) -> Recipe:
    """The named recipe; ``keep_grouped_float=None`` takes the recipe's default (ORT: True, OpenVINO and TensorRT: False)."""
    factory = _FACTORIES.get(name)
    if factory is not None:
        return factory() if keep_grouped_float is None else factory(keep_grouped_float)
    raise UsageError(f"unknown quantization recipe {name!r}", hint=f"choose one of: {', '.join(RECIPES)}")


def grouped_conv_nodes(model: Any) -> list[str]:
    """Names of the Conv nodes with ``group > 1`` in an ``onnx.ModelProto`` (ResNeXt's 3x3 convs)."""
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        group = next((attr.i for attr in node.attribute if attr.name == "group"), 1)
        if group > 1:
            names.append(node.name)
    return names


def shared_method(recipes: list[Recipe]) -> str:
    """One calibration method for several recipes, so one pass of statistics serves every artifact.

    Their common default when they agree; otherwise the default of a recipe with symmetric
    activations (percentile for the TensorRT recipe): symmetric INT8 is the outlier-sensitive one,
    and on the benchmark proxy percentile was also the best method for the CPU recipe (logits
    cosine 0.99935 vs minmax 0.99921), only slower to calibrate.
    """
    methods = list(dict.fromkeys(recipe.default_method for recipe in recipes))
    if len(methods) == 1:
        return methods[0]
    return next((r.default_method for r in recipes if r.activation_symmetric), methods[0])
