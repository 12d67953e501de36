"""The model zoo: one declarative record per model, read by every stage.

Like timm's ``PretrainedCfg``, a :class:`ModelSpec` holds what a model needs beyond its
weights: input size, normalisation, crop and interpolation, and where the weights come
from. Preprocessing values mirror timm's pretrained config for the named weights (a test
checks that they agree), because timm is the source of truth for these models.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import Any

from resnext_deploy.errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessConfig:
    """The eval transform: resize to size/crop_pct, center crop, normalise."""

    input_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def resize_size(self) -> int:
        """Shorter-side size before the center crop, as timm computes it."""
        import math

        return math.floor(self.input_size / self.crop_pct)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        return cls(
            input_size=int(data["input_size"]),
            crop_pct=float(data["crop_pct"]),
            interpolation=str(data["interpolation"]),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class ModelSpec:
    """A zoo entry: how to build the model, its preprocessing and its reference figures."""

    name: str
    timm_name: str
    pretrained_tag: str
    preprocess: PreprocessConfig
    params_m: float
    gmacs: float
    top1: float | None
    top5: float | None
    weights_source: str
    num_classes: int = 1000
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    test_preprocess: PreprocessConfig | None = None  # timm's test-time size (test_input_size, test_crop_pct)

    @property
    def input_sizes(self) -> tuple[int, ...]:
        """Input resolutions this model's weights were evaluated at (timm's input_size and test_input_size)."""
        sizes = [self.preprocess.input_size]
        if self.test_preprocess is not None:
            sizes.append(self.test_preprocess.input_size)
        return tuple(sizes)

    def preprocess_for(self, input_size: int | None) -> PreprocessConfig:
        """The preprocessing at ``input_size`` (None: the default); other sizes are a ``UsageError``."""
        if input_size is None or input_size == self.preprocess.input_size:
            return self.preprocess
        if self.test_preprocess is not None and input_size == self.test_preprocess.input_size:
            return self.test_preprocess
        raise UsageError(
            f"{self.name} has no preprocessing for input size {input_size}",
            hint=f"use one of: {', '.join(str(size) for size in self.input_sizes)} (timm's train and test sizes)",
        )

    @property
    def timm_pretrained_name(self) -> str:
        """The ``architecture.tag`` name timm's pretrained loading takes."""
        return f"{self.timm_name}.{self.pretrained_tag}" if self.pretrained_tag else self.timm_name

    @property
    def fp32_size_mb(self) -> float:
        """Size of the FP32 weights in MB (10^6 bytes)."""
        return self.params_m * 4.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fp32_size_mb"] = round(self.fp32_size_mb, 1)
        data["timm_pretrained_name"] = self.timm_pretrained_name
        return data


def _spec(**kwargs: Any) -> ModelSpec:
    return ModelSpec(**kwargs)


_TIMM_BICUBIC = PreprocessConfig(interpolation="bicubic")
_TV_BILINEAR = PreprocessConfig(interpolation="bilinear")

SEED_MODELS: tuple[ModelSpec, ...] = (
    _spec(
        name="resnext50d_32x4d",
        timm_name="resnext50d_32x4d",
        pretrained_tag="bt_in1k",
        preprocess=_TIMM_BICUBIC,
        params_m=25.05,
        gmacs=4.5,
        top1=79.67,
        top5=94.87,
        weights_source="timm (Hugging Face Hub timm/resnext50d_32x4d.bt_in1k), trained by Ross Wightman",
        description="ResNeXt-50 32x4d with deep stem and avg-pool downsample (ResNet-D)",
        test_preprocess=PreprocessConfig(input_size=288, crop_pct=0.95, interpolation="bicubic"),
    ),
    _spec(
        name="resnext50_32x4d",
        timm_name="resnext50_32x4d",
        pretrained_tag="a1h_in1k",
        preprocess=PreprocessConfig(interpolation="bicubic", crop_pct=0.95),
        params_m=25.03,
        gmacs=4.3,
        top1=79.79,
        top5=94.61,
        weights_source="timm (Hugging Face Hub timm/resnext50_32x4d.a1h_in1k), ResNet Strikes Back A1h recipe",
        description="ResNeXt-50 32x4d, timm weights",
        test_preprocess=PreprocessConfig(input_size=288, crop_pct=1.0, interpolation="bicubic"),
    ),
    _spec(
        name="tv_resnext50_32x4d",
        timm_name="resnext50_32x4d",
        pretrained_tag="tv_in1k",
        preprocess=_TV_BILINEAR,
        params_m=25.03,
        gmacs=4.3,
        top1=77.61,
        top5=93.68,
        weights_source="torchvision ResNeXt50_32X4D_Weights.IMAGENET1K_V1 (through timm resnext50_32x4d.tv_in1k)",
        description="ResNeXt-50 32x4d, torchvision weights",
    ),
    _spec(
        name="resnext101_32x8d",
        timm_name="resnext101_32x8d",
        pretrained_tag="tv_in1k",
        preprocess=_TV_BILINEAR,
        params_m=88.79,
        gmacs=16.5,
        top1=79.3,
        top5=94.53,
        weights_source="torchvision ResNeXt101_32X8D_Weights.IMAGENET1K_V1 (through timm resnext101_32x8d.tv_in1k)",
        description="ResNeXt-101 32x8d, torchvision weights",
    ),
)

_REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in SEED_MODELS}


def register_model(spec: ModelSpec) -> None:
    """Add (or replace) a zoo entry, for variants of your own or tiny test models."""
    _REGISTRY[spec.name] = spec


def list_models() -> list[ModelSpec]:
    """Every zoo entry, seed models first."""
    return list(_REGISTRY.values())


def get_model_spec(name: str) -> ModelSpec:
    """Look a model up by name; unknown names suggest the closest zoo names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}?" if close else "run `resnext-deploy models` to list the zoo"
        raise UsageError(f"unknown model '{name}'", hint=hint) from None
