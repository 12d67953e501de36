"""Graph inputs/outputs and the machine facts every room reads through one helper."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from resnext_deploy import environment
from resnext_deploy.errors import InputError
from resnext_deploy.onnx_io import graph_inputs, load_model, read_graph_io


def _model(path: Path) -> Path:
    """Y = X + B with B an initializer also listed as a graph input (as old exporters wrote weights)."""
    bias = numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "B"], ["Y"])],
        "io",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 3, None, 8]),
         helper.make_tensor_value_info("B", TensorProto.FLOAT, [1, 3, 1, 1])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 3, None, 8])],
        initializer=[bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_inputs_skip_initializers_and_keep_dimension_kinds(tmp_path: Path) -> None:
    inputs, outputs = read_graph_io(_model(tmp_path / "m.onnx"))
    assert [t.name for t in inputs] == ["X"] and [t.name for t in outputs] == ["Y"]
    assert inputs[0].dims == ("batch", 3, None, 8) and inputs[0].dtype == "float32"
    assert inputs[0].shape == (-1, 3, -1, 8)
    assert graph_inputs(load_model(tmp_path / "m.onnx")) == inputs


def test_missing_and_damaged_files_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_graph_io(tmp_path / "absent.onnx")
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(_model(tmp_path / "m.onnx").read_bytes()[:40])
    with pytest.raises(InputError, match="cannot read ONNX file"):
        read_graph_io(damaged)


def test_machine_facts() -> None:
    cores = environment.usable_cores()
    assert 1 <= cores <= (os.cpu_count() or cores)
    fingerprint = environment.cpu_fingerprint()
    assert set(fingerprint) == {"machine", "system", "model", "flags_sha256"}
    assert fingerprint["model"] == environment.cpu_model() != ""
    flags = " ".join(sorted(environment.cpu_flags())).encode()
    assert fingerprint["flags_sha256"] == hashlib.sha256(flags).hexdigest()
    assert environment.describe()["usable_cores"] == cores
