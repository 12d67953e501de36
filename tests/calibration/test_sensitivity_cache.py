"""The sensitivity cache: an entry is used only when it is this key's, bounded and typed as the analysis writes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnext_deploy.calibration.sensitivity import LayerSensitivity, SensitivityResult, SiteSensitivity
from resnext_deploy.calibration.sensitivity_cache import MAX_ENTRY_BYTES, SensitivityCache, SensitivityKey
from resnext_deploy.calibration.stats_cache import StatsKey


def _key(tuning: str = "t") -> SensitivityKey:
    return SensitivityKey(StatsKey("a" * 64, "m", "minmax", {}), tuning, {"name": "onnxruntime"}, 4)


def _result() -> SensitivityResult:
    layer = LayerSensitivity("Conv_0", "stem.conv", "Conv", 0, 0.5, 1e-3, 30.0, None, 1)
    site = SiteSensitivity(0, "activation", "x", ["Conv_0"], None, 1e-3)
    return SensitivityResult("onnxruntime", "minmax", [layer], [site], 8, 4, {"cosine": 0.99}, 1.5)


def test_a_saved_analysis_reads_back(tmp_path: Path) -> None:
    cache = SensitivityCache(tmp_path)
    cache.save(_key(), _result().to_dict())
    loaded = cache.load(_key())
    assert loaded is not None and SensitivityResult.from_dict(loaded).layers[0].name == "Conv_0"


def _layers_a_string(result: dict) -> None:
    result["layers"] = "Conv_0"


def _nsr_a_string(result: dict) -> None:
    result["layers"][0]["output_nsr"] = "0.001"


def _site_unknown_kind(result: dict) -> None:
    result["sites"][0]["kind"] = {"nested": True}


def _missing_field(result: dict) -> None:
    del result["full_int8"]


@pytest.mark.parametrize("edit", [_layers_a_string, _nsr_a_string, _site_unknown_kind, _missing_field])
def test_a_wrongly_typed_result_is_a_miss(tmp_path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    cache = SensitivityCache(tmp_path)
    path = cache.save(_key(), _result().to_dict())
    payload = json.loads(path.read_text())
    edit(payload["result"])
    path.write_text(json.dumps(payload))
    assert cache.load(_key()) is None


def test_another_keys_entry_and_deep_or_oversized_files_are_misses(tmp_path: Path) -> None:
    cache = SensitivityCache(tmp_path)
    foreign = cache.save(_key("other"), _result().to_dict())
    own = cache.path(_key())
    own.write_bytes(foreign.read_bytes())
    assert cache.load(_key()) is None  # another analysis copied under this key's name
    own.write_text("[" * 200_000 + "]" * 200_000)
    assert cache.load(_key()) is None  # nesting too deep to parse is a miss, not a RecursionError
    own.write_bytes(b" " * (MAX_ENTRY_BYTES + 1))
    assert cache.load(_key()) is None  # just over the bound: refused by its size, never read


def test_an_analysis_of_another_graph_does_not_fit() -> None:
    import onnx
    from onnx import helper

    from resnext_deploy.calibration.sensitivity import _fits_graph

    def graph(*names: str) -> onnx.ModelProto:
        nodes = [helper.make_node("Relu", ["x"], [f"y{i}"], name=name) for i, name in enumerate(names)]
        return helper.make_model(helper.make_graph(nodes, "g", [], []))

    assert _fits_graph(_result(), graph("Conv_0"))
    assert not _fits_graph(_result(), graph("Conv_7"))
