"""Ray: the sweep's steps as Ray tasks that ask for the cores they really use.

Exports, builds and evaluation shards ask for one CPU each (a shard runs one inference thread and
one decoding thread). A cell's latency step asks for ``latency_threads`` CPUs, by default every CPU
of the smallest node, so Ray places nothing else of ours on that node while it is timed. Artifacts
travel by path on storage every node mounts at the same place; logits travel through the object
store (see docs/DESIGN.md). ``ray`` is imported here only, inside functions.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from resnext_deploy.environment import toolchain_version
from resnext_deploy.errors import DeployError, InputError, NotAvailableError, UsageError
from resnext_deploy.sweep import cells
from resnext_deploy.sweep.schedule import Event, Work

RAY_HINT = "pip install 'resnext-deploy[ray]', or leave out --ray to use this machine's cores"
PROBE_TIMEOUT_S = 3.0
NODE_CHECK_TIMEOUT_S = 120.0


def import_ray() -> Any:
    """The ``ray`` module, or a ``NotAvailableError`` naming the extra."""
    try:
        import ray
    except ImportError:
        raise NotAvailableError("--ray needs Ray, which is not installed", hint=RAY_HINT) from None
    return ray


def host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``ray://HOST:PORT``) split, or a ``UsageError``."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UsageError(f"--ray {address}: expected 'auto' or HOST:PORT",
                         hint="e.g. --ray 10.0.0.1:6379 (a `ray start --head` node) or --ray ray://head:10001")
    return host.strip("[]"), int(port)


def probe(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Fail in seconds when nothing listens at ``address`` (ray.init itself retries for minutes)."""
    host, port = host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise NotAvailableError(
            f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}",
            hint="check the address (`ray status` on the head node prints it), start the cluster with "
                 "`ray start --head`, or leave out --ray to use this machine's cores",
        ) from None


class RayCluster:
    """A connection to a Ray cluster (``auto``: the one Ray finds, else a new local instance)."""

    kind = "ray"

    def __init__(self, address: str, timeout_s: float | None = None) -> None:
        self.ray = import_ray()
        self.address = address
        self.timeout_s = timeout_s
        self.connected_here = False
        if not self.ray.is_initialized():
            target = os.environ.get("RAY_ADDRESS") if address == "auto" else address
            if target and target not in ("auto", "local"):
                probe(target)
            try:
                self.ray.init(address=None if address == "auto" else address, include_dashboard=False,
                              log_to_driver=False, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
                raise NotAvailableError(f"cannot connect to the Ray cluster at {address}: {exc}",
                                        hint="check the address and that the cluster runs the same Ray version") from None
            self.connected_here = True
        self.nodes = [
            {"node_id": n["NodeID"], "host": n.get("NodeManagerHostname"), "address": n.get("NodeManagerAddress"),
             "cpus": int(n.get("Resources", {}).get("CPU", 0))}
            for n in self.ray.nodes() if n.get("Alive")
        ]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "address": self.address, "nodes": self.nodes}

    def eval_slots(self) -> int:
        return max(1, sum(node["cpus"] for node in self.nodes))

    def latency_threads(self, requested: int | None) -> int:
        """``requested``, or every CPU of the smallest node; a count no node has is a ``UsageError``."""
        cpus = [node["cpus"] for node in self.nodes if node["cpus"] > 0]
        if not cpus:
            raise NotAvailableError(f"the Ray cluster at {self.address} has no CPUs", hint="add worker nodes")
        if requested is not None and requested > max(cpus):
            raise UsageError(f"--threads {requested}: no Ray node has {requested} CPUs (the largest has {max(cpus)})",
                             hint=f"pass --threads {max(cpus)} or less")
        return requested or min(cpus)

    def check_paths(self, paths: list[Any]) -> None:
        """Every node sees ``paths`` and runs this toolchain version, or an ``InputError`` before any work."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        check = self.ray.remote(cells.node_facts)
        names = [str(p) for p in paths]
        # keyed by node id: several nodes may share a host name (containers, `ray.cluster_utils.Cluster`)
        refs = {f"{node['host'] or node['address']} (node {node['node_id'][:8]})": check.options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node["node_id"], soft=False)).remote(names)
            for node in self.nodes}
        try:
            facts = dict(zip(refs, self.ray.get(list(refs.values()), timeout=NODE_CHECK_TIMEOUT_S)))
        except self.ray.exceptions.GetTimeoutError:
            raise NotAvailableError(f"Ray nodes did not answer within {NODE_CHECK_TIMEOUT_S:.0f} s",
                                    hint="check `ray status` on the head node") from None
        except self.ray.exceptions.RayError as exc:
            raise NotAvailableError(f"a Ray node cannot run resnext-deploy: {exc}",
                                    hint="install the same resnext-deploy (and its [ray] extra) on every node") from None
        for node, fact in facts.items():
            if fact["missing"]:
                raise InputError(
                    f"Ray node {node} cannot see {', '.join(fact['missing'])}",
                    hint="a sweep passes artifacts and images by path: put the output and image folders on storage "
                         "every node mounts at the same path (NFS, a shared volume)",
                )
            if fact["version"] != toolchain_version():
                raise UsageError(f"Ray node {node} runs resnext-deploy {fact['version']}, this driver {toolchain_version()}",
                                 hint="install the same resnext-deploy on every node")

    def run(self, work: Work) -> Iterator[Event]:
        """Submit every step at once as a task graph; yield each FP32 export and cell as it finishes."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = self.ray.remote(cells.run_quietly)
        submitted: list[Any] = []

        def submit(name: str, cpus: int, turn: int, *args: Any) -> Any:
            # round robin over the nodes that fit the step: the k-th FP32 export, build, shard of a cell and latency
            # step goes to node k mod N, so work (and latency timing, one step per node at a time) is spread
            # deterministically; soft: another node takes it if that one is gone
            fitting = [node for node in self.nodes if node["cpus"] >= cpus] or self.nodes
            node = fitting[turn % len(fitting)]["node_id"]
            strategy = NodeAffinitySchedulingStrategy(node, soft=True)
            ref = task.options(num_cpus=cpus, name=name, scheduling_strategy=strategy).remote(*args)
            submitted.append(ref)
            return ref

        pending: dict[Any, tuple[str, str]] = {}
        fp32 = {job.spec.name: submit(f"fp32 {job.spec.name}", 1, turn, cells.export_fp32, job)
                for turn, job in enumerate(work.fp32_jobs)}
        pending.update({ref: ("fp32", model) for model, ref in fp32.items()})
        for turn, job in enumerate(work.cell_jobs):
            after = [fp32[job.spec.name]] if job.spec.name in fp32 else []
            build = submit(f"build {job.key}", 1, turn, cells.build_cell, job, *after)
            shards = [submit(f"evaluate {job.key} #{index}", 1, index, cells.evaluate_shard, job, index, records, 1, build)
                      for index, records in enumerate(work.shards)]
            final = submit(f"latency {job.key}", work.latency_threads, turn, cells.finish_cell, job,
                           work.latency_threads, build, *shards)
            pending[final] = ("cell", job.key)
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        while pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = self.ray.wait(list(pending), num_returns=1, timeout=left)
            if not ready:
                for ref in submitted:
                    self.ray.cancel(ref, force=True)
                for kind, name in pending.values():
                    yield Event(kind, name, None, DeployError(f"not finished within --timeout {self.timeout_s:g} s",
                                                              hint="run the sweep again to resume, with a longer --timeout"))
                return
            kind, name = pending.pop(ready[0])
            yield self._event(kind, name, ready[0])

    def _event(self, kind: str, name: str, ref: Any) -> Event:
        try:
            return Event(kind, name, self.ray.get(ref), None)
        except self.ray.exceptions.RayTaskError as exc:
            return Event(kind, name, None, getattr(exc, "cause", None) or exc)
        except self.ray.exceptions.RayError as exc:
            return Event(kind, name, None, exc)

    def close(self) -> None:
        if self.connected_here:
            self.ray.shutdown()


def shared_paths(*paths: Path | None) -> list[Path]:
    """The folders every node must see: output, images, weights files."""
    return [Path(p).resolve() for p in paths if p is not None]
