"""Zoo table vs the real timm models, and every way of loading weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resnext_deploy.errors import UsageError, WeightsError
from resnext_deploy.exporters.models import build_model, cached_pretrained_file, state_dict_sha256
from resnext_deploy.zoo import SEED_MODELS, get_model_spec


@pytest.mark.slow
@pytest.mark.parametrize("spec", SEED_MODELS, ids=lambda s: s.name)
def test_seed_models_match_the_table(spec):
    """Parameter counts to the table's 0.01M precision; MACs within 5% of the table at 224."""
    import timm
    from torch.utils.flop_counter import FlopCounterMode

    model, info = build_model(spec, "random")
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(params - spec.params_m) < 0.006
    assert info.is_random
    counter = FlopCounterMode(display=False)
    size = spec.preprocess.input_size
    with counter, torch.no_grad():  # counted from shapes alone: on the meta device nothing is computed
        model.to("meta")(torch.zeros(1, 3, size, size, device="meta"))
    gmacs = counter.get_total_flops() / 2e9
    assert gmacs == pytest.approx(spec.gmacs, rel=0.05)
    cfg = timm.models.get_pretrained_cfg(spec.timm_pretrained_name)
    assert cfg.input_size == (3, spec.preprocess.input_size, spec.preprocess.input_size)
    assert cfg.crop_pct == spec.preprocess.crop_pct
    assert cfg.interpolation == spec.preprocess.interpolation
    assert tuple(cfg.mean) == spec.preprocess.mean and tuple(cfg.std) == spec.preprocess.std
    if cfg.test_input_size is None:
        assert spec.test_preprocess is None
    else:
        assert spec.test_preprocess is not None
        assert cfg.test_input_size == (3, spec.test_preprocess.input_size, spec.test_preprocess.input_size)
        assert cfg.test_crop_pct == spec.test_preprocess.crop_pct


def test_input_size_override_is_limited_to_the_sizes_the_zoo_lists():
    spec = get_model_spec("resnext50d_32x4d")
    assert spec.preprocess_for(None) == spec.preprocess
    assert spec.preprocess_for(288).input_size == 288 and spec.preprocess_for(288).crop_pct == 0.95
    with pytest.raises(UsageError) as err:
        spec.preprocess_for(300)
    assert "224, 288" in err.value.hint
    with pytest.raises(UsageError):
        get_model_spec("tv_resnext50_32x4d").preprocess_for(288)


def test_unknown_model_suggests_close_names():
    with pytest.raises(UsageError) as err:
        get_model_spec("resnext50_32x4")
    assert "resnext50_32x4d" in err.value.hint


def _save(model: torch.nn.Module, path: Path, wrap: bool = False) -> Path:
    state = model.state_dict()
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}} if wrap else state, path)
    return path


@pytest.mark.parametrize("name,wrap", [("w.pth", False), ("w.pt", True), ("w.safetensors", False)])
def test_checkpoint_round_trip(tiny_spec, tmp_path, name, wrap):
    source, _ = build_model(tiny_spec, "random")
    path = _save(source, tmp_path / name, wrap)
    loaded, info = build_model(tiny_spec, str(path))
    assert state_dict_sha256(loaded) == state_dict_sha256(source)
    assert info.kind == "file" and not info.is_random and len(info.sha256) == 64


@pytest.mark.slow
def test_torchvision_checkpoint_loads_into_tv_model(tmp_path):
    import torchvision

    tv = torchvision.models.resnext50_32x4d(weights=None)
    path = _save(tv, tmp_path / "tv.pth")
    model, _ = build_model(get_model_spec("tv_resnext50_32x4d"), str(path))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), tv.eval()(x), atol=1e-5)


def test_mismatched_checkpoint_names_missing_and_unexpected_keys(tiny_spec, tmp_path):
    state = build_model(tiny_spec, "random")[0].state_dict()
    state.pop("fc.weight")
    state["head.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as err:
        build_model(tiny_spec, str(tmp_path / "bad.pth"))
    assert "missing (1): fc.weight" in err.value.message and "unexpected (1): head.extra" in err.value.message


def test_checkpoint_of_wrong_class_count_names_shapes(tiny_spec, tmp_path):
    import timm

    other = timm.create_model(tiny_spec.timm_name, num_classes=7, **tiny_spec.timm_kwargs)
    torch.save(other.state_dict(), tmp_path / "seven.pth")
    with pytest.raises(WeightsError, match="wrong shape .*fc.weight"):
        build_model(tiny_spec, str(tmp_path / "seven.pth"))


@pytest.mark.parametrize(
    "content,name,error",
    [(None, "missing.pth", WeightsError), (b"not a checkpoint", "garbage.pth", WeightsError), (b"x", "w.onnx", UsageError)],
)
def test_unreadable_checkpoints(tiny_spec, tmp_path, content, name, error):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error):
        build_model(tiny_spec, str(path))


def test_offline_pretrained_fails_fast_with_both_alternatives(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        build_model(get_model_spec("resnext50d_32x4d"), "pretrained")
    assert "--weights PATH" in err.value.hint and "--weights random" in err.value.hint


def test_pretrained_loads_from_a_warm_hub_cache(tmp_path, monkeypatch):
    """timm's pretrained path, offline, from a Hugging Face cache laid out as the hub writes it."""
    from safetensors.torch import save_file

    spec = get_model_spec("tv_resnext50_32x4d")
    source, _ = build_model(spec, "random")
    snapshot = tmp_path / "hub" / "models--timm--resnext50_32x4d.tv_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(snapshot / "model.safetensors"))
    (tmp_path / "hub" / "models--timm--resnext50_32x4d.tv_in1k" / "refs").mkdir()
    (tmp_path / "hub" / "models--timm--resnext50_32x4d.tv_in1k" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cached_pretrained_file(spec) == snapshot / "model.safetensors"
    model, info = build_model(spec, "pretrained")
    assert info.kind == "pretrained" and info.origin == "timm:resnext50_32x4d.tv_in1k"
    assert state_dict_sha256(model) == state_dict_sha256(source)


@pytest.mark.slow
def test_random_weights_are_seeded(tiny_spec, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Same seed, same FP32 ONNX (sha256); another seed, another model; the seed is in report.json and the metadata."""
    from resnext_deploy.exporters.models import DEFAULT_SEED
    from resnext_deploy.metadata import read_metadata
    from resnext_deploy.export import ExportOptions, Fp32Options, run_export
    from resnext_deploy.report import Report

    def export(name: str, **seed: int) -> tuple[str, Report]:
        options = ExportOptions(model=tiny_spec.name, weights="random", fp32=Fp32Options(exporter="torchscript"),
                                build_engine=False,
                                output=tmp_path / name, **seed)
        directory, report = run_export(options, command=["test"])
        return str(report.export.sha256), report

    first, report = export("a")
    second, _ = export("b", seed=DEFAULT_SEED)
    other, other_report = export("c", seed=7)
    assert first == second and other != first
    assert report.weights.seed == DEFAULT_SEED and other_report.weights.seed == 7
    assert read_metadata(tmp_path / "c" / "model.onnx")["weights"]["seed"] == 7


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_non_finite_weights_are_found_in_every_float_dtype(dtype) -> None:  # type: ignore[no-untyped-def]
    from resnext_deploy.exporters.models import check_finite

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).to(dtype)
    check_finite(model, "ok")  # finite: nothing raised
    with torch.no_grad():
        model[0].weight[1, 2, 0, 1] = float("nan")
        model[1].running_var[3] = float("-inf")
    with pytest.raises(WeightsError) as err:
        check_finite(model, "damaged")
    assert "NaN and infinity in 2 tensor(s)" in err.value.message
    assert "0.weight" in err.value.message and "1.running_var" in err.value.message
