"""BN folding, ONNX export, simplification fallbacks and parity, on the tiny ResNeXt."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from resnext_deploy.errors import DeployError, UsageError
from resnext_deploy.exporters.export import export_fp32
from resnext_deploy.exporters.fold import count_batchnorms, fold_batchnorm
from resnext_deploy.exporters.models import build_model
from resnext_deploy.exporters.onnx_export import export_to_onnx, resolve_opset, simplify
from resnext_deploy.exporters.parity import check_parity, ort_session
from resnext_deploy.metadata import read_metadata


@pytest.fixture(scope="module")
def tiny_model(tiny_spec):
    """The tiny ResNeXt with non-trivial BatchNorm statistics and affine terms, so folding matters."""
    model, _ = build_model(tiny_spec, "random")
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.2)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


META = {"model_name": "resnext_tiny", "num_classes": 10, "preprocess": {"input_size": 64}}


@pytest.fixture(scope="module")
def dynamo_export(tiny_model, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The tiny model exported once by ``export_fp32`` with the default (dynamo) exporter: (path, result), read-only."""
    path = tmp_path_factory.mktemp("dynamo") / "model.onnx"
    return path, export_fp32(tiny_model, path, input_size=64, metadata=META, exporter="dynamo")


@pytest.fixture(scope="module")
def tiny_proto(dynamo_export):  # type: ignore[no-untyped-def]
    """The folded tiny model's dynamo graph, as that export wrote it."""
    return onnx.load(str(dynamo_export[0]))


def test_fold_removes_every_batchnorm_and_keeps_outputs(tiny_model):
    folded = fold_batchnorm(tiny_model)
    assert folded.batchnorms_before == count_batchnorms(tiny_model) > 0
    assert count_batchnorms(folded.model) == 0
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        reference, got = tiny_model(x), folded.model(x)
    # FP32 folding changes rounding only: 1e-5 relative to the logit scale.
    assert torch.max(torch.abs(reference - got)) <= 1e-5 * torch.max(torch.abs(reference)) + 1e-6


def test_fold_refuses_a_batchnorm_without_a_conv():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.BatchNorm2d(4)).eval()
    with pytest.raises(DeployError, match="do not follow a convolution"):
        fold_batchnorm(model)


@pytest.mark.parametrize(("exporter", "opset"), [("dynamo", 18), pytest.param("torchscript", 17, marks=pytest.mark.slow)])
def test_export_writes_a_checked_simplified_graph_with_metadata(tiny_model, dynamo_export, tmp_path, exporter, opset):  # type: ignore[no-untyped-def]
    if exporter == "dynamo":  # the module's export (its other tests read it too)
        path, result = dynamo_export
    else:
        path = tmp_path / "model.onnx"
        result = export_fp32(tiny_model, path, input_size=64, metadata=META, exporter=exporter)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert "BatchNormalization" not in {n.op_type for n in proto.graph.node}
    assert result.batchnorms_folded == count_batchnorms(tiny_model)
    assert result.simplify.applied and result.simplify.nodes_after <= result.simplify.nodes_before
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert result.exporter == exporter and result.to_dict()["exporter"] == exporter
    assert result.opset == opset and {o.domain: o.version for o in proto.opset_import}[""] == opset
    assert read_metadata(path) == META | {
        "opset": opset, "exporter": exporter, "input_name": "input", "output_name": "logits"
    }
    assert result.parity.ok and result.parity.max_abs_diff < 1e-4 and result.parity.min_cosine > 0.99999
    assert sorted({d["batch"] for d in result.parity.details}) == [1, 8]
    session = ort_session(str(path))
    for batch in (1, 5):
        (logits,) = session.run(None, {"input": np.zeros((batch, 3, 64, 64), np.float32)})
        assert logits.shape == (batch, 10)


def test_simplifier_failure_keeps_the_unsimplified_graph(tiny_proto, monkeypatch):
    import onnxsim

    proto = tiny_proto

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(onnxsim, "simplify", broken)
    kept, result = simplify(proto, 64)
    assert kept is proto and not result.applied and "boom" in result.reason


def test_simplifier_that_changes_outputs_is_rejected(tiny_proto, monkeypatch):
    import onnxsim

    proto = tiny_proto
    real = onnxsim.simplify

    def damaging(model, **kwargs):
        simplified, ok = real(model, **kwargs)
        damaged = onnx.ModelProto()
        damaged.CopyFrom(simplified)
        weight = next(t for t in damaged.graph.initializer if len(t.dims) == 4)
        array = onnx.numpy_helper.to_array(weight) * 1.5
        weight.CopyFrom(onnx.numpy_helper.from_array(array, weight.name))
        return damaged, ok

    monkeypatch.setattr(onnxsim, "simplify", damaging)
    kept, result = simplify(proto, 64)
    assert kept is proto and not result.applied and "changed outputs" in result.reason


def test_parity_detects_a_graph_of_another_model(tiny_proto, tiny_spec):
    other, _ = build_model(tiny_spec, "random")
    result = check_parity(other, tiny_proto.SerializeToString(), 64)
    assert not result and result.max_abs_diff > result.bound


@pytest.mark.parametrize(("exporter", "opset", "hint"), [("torchscript", 11, "--opset 13"), ("dynamo", 17, "torchscript")])
def test_too_old_opset_is_refused_before_exporting(exporter, opset, hint):
    with pytest.raises(UsageError, match=f"opset {opset}") as info:
        export_to_onnx(torch.nn.Identity(), 64, opset=opset, exporter=exporter)
    assert hint in (info.value.hint or "")


def test_unknown_exporter_is_a_usage_error():
    with pytest.raises(UsageError, match="exporter 'jit'") as info:
        resolve_opset("jit", None)
    assert "dynamo" in (info.value.hint or "") and "torchscript" in (info.value.hint or "")
