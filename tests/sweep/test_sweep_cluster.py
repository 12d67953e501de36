"""A sweep on a Ray cluster of two nodes (one CPU each) started on this machine with ``ray.cluster_utils.Cluster``.

The second node is given an environment (``sitecustomize`` on its PYTHONPATH) in which one folder does not
exist, as on a node that does not mount it, so the per-node visibility check can be seen failing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sweep.conftest import BACKEND, MODELS, PRECISIONS, copy_fp32_exports, sweep_options
from tests.sweep.test_sweep import ACCURACY_KEYS, _cells, _sweep

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow
MODEL = MODELS[0]  # one model, two cells (fp32, int8), two shards each: as small as the one-node Ray test
CELLS = [f"{MODEL}/{p}-{BACKEND}" for p in PRECISIONS]

HIDING = '''
import os, pathlib
_hidden = os.environ["RESNEXT_TEST_NOT_MOUNTED"]
_exists = pathlib.Path.exists
def exists(self, *args, **kwargs):  # this node does not mount the folder
    return False if str(self).startswith(_hidden) else _exists(self, *args, **kwargs)
pathlib.Path.exists = exists
'''


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """(head node id, second node id, a folder only the head node sees), the driver connected to the cluster."""
    from ray.cluster_utils import Cluster

    root = tmp_path_factory.mktemp("cluster")
    site, head_only = root / "site", root / "head-only"
    site.mkdir()
    head_only.mkdir()
    (site / "sitecustomize.py").write_text(HIDING)
    pythonpath = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    second = cluster.add_node(num_cpus=1, env_vars={"PYTHONPATH": pythonpath, "RESNEXT_TEST_NOT_MOUNTED": str(head_only)})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        yield cluster.head_node.node_id, second.node_id, head_only
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_visibility_check_passes_for_shared_folders_and_names_the_node_that_misses_one(two_nodes, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from resnext_deploy.errors import InputError
    from resnext_deploy.sweep.ray_cluster import RayCluster

    head, second, head_only = two_nodes
    cluster = RayCluster("auto")
    assert sorted(node["node_id"] for node in cluster.nodes) == sorted([head, second])
    assert [node["cpus"] for node in cluster.nodes] == [1, 1] and cluster.latency_threads(None) == 1
    cluster.check_paths([tmp_path])
    with pytest.raises(InputError) as refused:
        cluster.check_paths([tmp_path, head_only])
    assert f"cannot see {head_only}" in refused.value.message and "every node mounts" in (refused.value.hint or "")


def test_two_node_sweep_spreads_builds_shards_and_latency_and_gives_the_local_numbers(
    two_nodes, local_sweep: Path, synthetic_imagenet, tiny_checkpoint, tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    from resnext_deploy.sweep import run_sweep

    head, second, _ = two_nodes
    output = tmp_path / "cluster"
    copy_fp32_exports(local_sweep, output, (MODEL,))  # the local sweep's FP32 artifacts, as in the one-node Ray test
    outcome = run_sweep(sweep_options(output, synthetic_imagenet.root, tiny_checkpoint.checkpoint, ray="auto",
                                      shards=2, models=(MODEL,)), ["test"])
    assert outcome, outcome.sweep["error_cells"]
    local, remote = _cells(local_sweep), _cells(output)
    for cell in CELLS:
        assert {k: remote[cell][k] for k in ACCURACY_KEYS} == {k: local[cell][k] for k in ACCURACY_KEYS}, cell
    ran_on = [remote[cell]["ran_on"] for cell in CELLS]
    nodes = {
        "build (the cell's export: calibration, quantization, engine)": {r["build"]["ray_node"] for r in ran_on},
        "evaluation shard": {s["ray_node"] for r in ran_on for s in r["shards"]},
        "latency": {r["latency"]["ray_node"] for r in ran_on},
    }
    for step, used in nodes.items():
        assert used == {head, second}, f"{step} steps ran on {used}, expected both nodes"
    assert all(r["latency"]["cpus"] == 1 for r in ran_on)
    scheduler = _sweep(output)["scheduler"]
    assert scheduler["kind"] == "ray" and len(scheduler["nodes"]) == 2
