"""Per-layer INT8 sensitivity: how far the logits move when one layer alone is quantized.

The measure: quantize one thing alone (everything else float) and compare the logits with FP32
on probe images: noise-to-signal ratio ``sum |d|^2 / sum |y|^2``. "Alone quantized" rather than
"alone left in float": a conv whose INT8 output feeds an INT8 conv shares that quantized tensor
with it, so leaving either one alone in float changes nothing and would hide both, whereas
quantizing either alone shows the whole damage.

It is measured per *site* (an activation's Q/DQ pair, or one layer's weights), because sites are
what noise comes from while layers are what the quantizer can leave out: a site disappears only
when every layer that puts it there is in float. A layer's sensitivity is the sum over its own
sites (independent quantization noises add up in power), and the same sums predict the noise
left for any set of float layers, which orders the fallback (``fallback_order``).

Cost: a switchable Q/DQ graph on ONNX Runtime (``qdq_switch``, every site an ``If`` whose untaken
branch costs nothing); every site is one pass of the probe images, nothing is re-quantized, and
each pass starts at the last block boundary before its site from the FP32 tensor there, computed
once (``run_masks``): half the network per site on average. One FP32 pass over the probe images
adds each activation's own quantization noise (ORT's activation matching, computed in the graph);
weights are compared with ORT's ``create_weight_matching`` and ``compute_weight_error``. Every
number is measured on the probe images (the first ``probe_images`` tuning images); the search
then measures its candidates on all tuning images.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from resnext_deploy.calibration.cost import CostModel, layer_edges
from resnext_deploy.calibration.graph_cuts import Cut, data_nodes, extract, node_inputs, single_tensor_cuts
from resnext_deploy.calibration.qdq_switch import MASK_INPUT, build_switchable, freeze_sites
from resnext_deploy.calibration.sensitivity_cache import SensitivityCache, SensitivityKey
from resnext_deploy.console import progress_bar
from resnext_deploy.errors import InputError
from resnext_deploy.numerics import mean_cosine

DEFAULT_PROBE_IMAGES = 8  # make bench-probes: the fallback order of 32 probes for its first 29+ layers (docs)
MIN_STEP_COST = 1e-6  # a group that removes conversions costs (about) nothing: taken first if it removes noise
BATCH = 16
NOISE_BATCH = 4
FULL_INT8 = "full_int8"  # run_masks key of every site on
MAX_CUTS = 8  # a cut costs two sessions and a pass to reach it: a few, each with many masks after it
WIDE_MASK = 8  # a mask with more sites on than this (the full INT8 one) runs in a part of its own


@dataclass
class LayerSensitivity:
    """One quantized layer: where it is, what it costs, and what quantizing it alone does to the logits."""

    name: str  # ONNX node name (what the quantizer's nodes_to_exclude takes)
    label: str  # readable name from its weights ("layer3.2.conv1") or its block ("layer3.2.add")
    op_type: str
    position: int  # index in network order
    cost_share: float  # share of the model's multiply-accumulates
    output_nsr: float  # logits noise-to-signal ratio with this layer alone quantized (sum over its sites)
    local_sqnr_db: float | None  # worst SQNR of the activations it quantizes, on FP32 inputs
    weight_sqnr_db: float | None  # SQNR of its INT8 weights (ORT's compute_weight_error)
    rank: int = 0  # 1 = most sensitive

    @property
    def cosine_drop(self) -> float:
        """Approximate 1 - logits cosine with this layer alone quantized (half the noise ratio for small noise)."""
        return self.output_nsr / 2.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cosine_drop": self.cosine_drop}


@dataclass
class SiteSensitivity:
    """One quantization site and the logits noise it causes alone."""

    index: int
    kind: str  # "activation" | "weight"
    tensor: str
    requesters: list[str]  # layers that put it there: it goes only when all are in float
    follows: int | None  # same-scale site: on whenever that site is
    output_nsr: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SensitivityResult:
    """Every quantized layer and site in network order, the full-INT8 reference numbers and provenance."""

    recipe: str
    method: str
    layers: list[LayerSensitivity]
    sites: list[SiteSensitivity]
    tuning_images: int
    probe_images: int
    full_int8: dict[str, float]  # cosine, agreement, nsr of the all-INT8 model on the tuning images
    seconds: float
    key: str = ""
    cache_hit: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def ranked(self) -> list[LayerSensitivity]:
        """Most sensitive first."""
        return sorted(self.layers, key=lambda layer: layer.rank)

    def active_sites(self, in_float: Iterable[str]) -> list[bool]:
        """Which sites remain with ``in_float`` left out of INT8 (ORT's quantizer's rule, as in ``qdq_switch``)."""
        floating = set(in_float)
        active = [False] * len(self.sites)
        for site in self.sites:
            active[site.index] = any(name not in floating for name in site.requesters) or (
                site.follows is not None and active[site.follows]
            )
        return active

    def noise(self, in_float: Iterable[str]) -> float:
        """Predicted logits noise ratio with ``in_float`` in float: the remaining sites' noise, summed."""
        active = self.active_sites(in_float)
        return sum(s.output_nsr for s in self.sites if active[s.index] and not (s.follows is not None and active[s.follows]))

    def predicted_cosine(self, in_float: Iterable[str]) -> float:
        """Logits cosine predicted for ``in_float``: the measured full-INT8 cosine scaled by the remaining noise."""
        everything = self.noise(()) or 1e-30
        return 1.0 - (1.0 - self.full_int8["cosine"]) * self.noise(in_float) / everything

    def cost_model(self, precision: str = "fp32") -> CostModel | None:
        """The latency cost model of these layers at ``precision`` (None for an analysis cached before it existed)."""
        data = self.extra.get("cost_model")
        return CostModel.from_dict(data, precision) if data else None

    def fallback_order(self, precision: str = "fp32") -> list[str]:
        """Layers in the order fallback leaves them out of INT8: most predicted noise removed per latency cost first.

        Each step adds the layer, or the group of layers that together remove a shared site, with
        the best ratio of predicted noise removed to predicted latency added on the engine
        (``calibration.cost``: the float MACs at ``precision`` and the conversions where the set
        breaks an INT8 chain, so a layer next to one already in float, or next to the float world,
        is cheaper than one between INT8 neighbours). Without a cost model: MAC share plus a small
        per-layer overhead. Equal sensitivity, lower cost first; more noise, first at equal cost.
        """
        by_name = {layer.name: layer for layer in self.layers}
        overhead = 0.1 / max(len(self.layers), 1)
        model = self.cost_model(precision)

        def added_cost(floating: set[str], group: frozenset[str]) -> float:
            if model is None:
                return sum(by_name[name].cost_share + overhead for name in group)
            return max((model.cost(floating | group) - model.cost(floating)) / model.total_macs, MIN_STEP_COST)

        floating: set[str] = set()
        order: list[str] = []
        current = self.noise(floating)
        while len(floating) < len(self.layers):
            active = self.active_sites(floating)
            options = {frozenset([name]) for name in by_name if name not in floating}
            options |= {frozenset(set(s.requesters) - floating) for s in self.sites if active[s.index] and s.requesters}
            best: tuple[float, float, int] | None = None
            chosen: frozenset[str] = frozenset()
            for group in options:
                if not group:
                    continue
                remaining = self.noise(floating | group)
                cost = added_cost(floating, group)
                key = ((current - remaining) / cost, -cost, -min(by_name[name].position for name in group))
                if best is None or key > best:
                    best, chosen, after = key, group, remaining
            order.extend(sorted(chosen, key=lambda name: (-by_name[name].output_nsr, by_name[name].position)))
            floating |= chosen
            current = after
        return order

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["layers"] = [layer.to_dict() for layer in self.layers]
        data["sites"] = [site.to_dict() for site in self.sites]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensitivityResult:
        values = dict(data)
        values["layers"] = [LayerSensitivity(**{k: v for k, v in layer.items() if k != "cosine_drop"})
                            for layer in data["layers"]]
        values["sites"] = [SiteSensitivity(**site) for site in data["sites"]]
        return cls(**values)


def analyse_sensitivity(
    setup: Any, tuning: np.ndarray, *, probe_images: int = DEFAULT_PROBE_IMAGES, threads: int | None = None,
    progress: bool = True, reference: np.ndarray | None = None,
) -> SensitivityResult:
    """Measure every site and layer of ``setup`` (a ``calibration.quantize.QuantizationSetup``) on the probe images
    (the first ``probe_images`` of ``tuning``).

    The FP32 pass (reference logits and each activation's own noise, computed in the graph), then the
    branched graph, where each site is an ``If`` holding constant weights, once per site and once with
    every site on (the full-INT8 reference), each from its cut (``run_masks``). ``reference``: the FP32
    logits of ``tuning`` from the baseline cache (``calibration.baseline_cache``), the same reference the
    search and ``verify`` compare with; without it, the FP32 pass's own logits.
    """

    started = time.perf_counter()
    if len(tuning) == 0:
        raise InputError("no tuning images", hint="leave images for tuning: lower --calib-size or add images")
    qdq, _ = setup.quantize(represent=False)
    prepared = setup.prepared_model()
    excluded_out, excluded = setup.recipe.output_quant_excluded, setup.recipe_excluded
    floats = build_switchable(qdq, prepared, excluded_out, excluded, weights="float")
    if not floats.layers:
        raise InputError("the INT8 model has no quantized layer to analyse", hint="check the recipe and the model")
    input_name = prepared.graph.input[0].name
    probe = np.ascontiguousarray(tuning[: max(1, min(probe_images, len(tuning)))], dtype=np.float32)
    measured = [s for s in floats.sites if s.follows is None or s.requesters]

    with progress_bar(progress) as bar:
        task = bar.add_task("sensitivity", total=(len(measured) + 2) * len(probe))
        probe_reference, signal, noise = _fp32_pass(floats, probe, input_name, threads, lambda n: bar.advance(task, n))
        if reference is not None and len(reference) >= len(probe):
            probe_reference = np.asarray(reference[: len(probe)])
        branched = build_switchable(qdq, prepared, excluded_out, excluded, weights="branch")
        masks: dict[Any, np.ndarray] = {site.index: branched.site_mask([site.index]) for site in measured}
        masks[FULL_INT8] = branched.mask(floats.layers)
        logits = run_masks(branched.model, input_name, probe, masks, threads, lambda n: bar.advance(task, n))
    site_nsr = np.zeros(len(floats.sites))
    for site in measured:
        site_nsr[site.index] = nsr(probe_reference, logits[site.index])
    full_probe = logits[FULL_INT8]

    weight_sqnr = _weight_sqnr(prepared, qdq)
    costs = layer_costs(prepared)
    total_cost = sum(costs.values()) or 1
    labels = layer_labels(prepared)
    sites = [SiteSensitivity(s.index, s.kind, s.tensor, list(s.requesters), s.follows, float(site_nsr[s.index]))
             for s in floats.sites]
    layers = []
    for position, name in enumerate(floats.layers):
        own = floats.layer_sites(name)
        local = [_db(signal[s.index], noise[s.index]) for s in own if s.kind == "activation" and signal[s.index] > 0]
        layers.append(LayerSensitivity(
            name=name, label=labels.get(name, name), op_type=floats.op_types[name], position=position,
            cost_share=costs.get(name, 0) / total_cost, output_nsr=float(sum(site_nsr[s.index] for s in own)),
            local_sqnr_db=min(local) if local else None, weight_sqnr_db=weight_sqnr.get(name),
        ))
    for rank, layer in enumerate(sorted(layers, key=lambda item: (-item.output_nsr, item.position)), start=1):
        layer.rank = rank
    full_int8 = {  # on the probe images: the search measures the full INT8 artifact on every tuning image
        "cosine": mean_cosine(probe_reference, full_probe),
        "agreement": float(np.mean(probe_reference.argmax(1) == full_probe.argmax(1))),
        "nsr": nsr(probe_reference, full_probe),
        "images": len(probe),
    }
    weights_nsr = float(sum(s.output_nsr for s in sites if s.kind == "weight"))
    return SensitivityResult(
        recipe=setup.recipe.name, method=setup.method, layers=layers, sites=sites, tuning_images=len(tuning),
        probe_images=len(probe), full_int8=full_int8, seconds=round(time.perf_counter() - started, 3),
        extra={"weights_nsr": weights_nsr, "activations_nsr": float(sum(s.output_nsr for s in sites)) - weights_nsr,
               "cost_model": CostModel({name: int(costs.get(name, 0)) for name in floats.layers},
                                       layer_edges(prepared, floats.layers)).to_dict()},
    )


def run_masks(
    model: Any, input_name: str, images: np.ndarray, masks: dict[Any, np.ndarray], threads: int | None = None,
    advance: Any = None, parallel: bool = True,
) -> dict[Any, np.ndarray]:
    """Logits of the branched switchable graph ``model`` on ``images`` for every site mask, each run from the last cut
    before the first site it switches on, with only its own sites switchable.

    The graph is cut where one tensor carries everything forward (``calibration.graph_cuts``: between
    blocks); the FP32 value of that tensor is computed once, by the segment up to it, and each mask runs
    only the part after its cut: on average half the network instead of all of it. In that part every
    site the cut's masks leave off is fixed off (``qdq_switch.freeze_sites``), so ONNX Runtime runs it
    as fast as the FP32 graph. ``parallel``: masks side by side, one core each (else one at a time on
    every core); the logits are the same.
    """
    output = model.graph.output[0].name
    plan = plan_cuts(model, input_name, masks)
    cores = threads or _usable_cores()
    state, results = np.ascontiguousarray(images, dtype=np.float32), {}
    with ThreadPoolExecutor(cores if parallel else 1) as pool:
        for index, (cut, keys) in enumerate(plan):
            if index:  # reach this cut: the FP32 segment from the previous one
                segment = freeze_sites(extract(model, [plan[index - 1][0].tensor], [cut.tensor]), ())
                state = _run_batches(_session(segment, cores, optimize=True), state, None)
            narrow = [key for key in keys if np.count_nonzero(masks[key]) <= WIDE_MASK]
            runs = [(narrow, set().union(*(np.flatnonzero(masks[key]).tolist() for key in narrow)))] if narrow else []
            runs += [([key], set(np.flatnonzero(masks[key]).tolist())) for key in keys if key not in narrow]
            for group, live in runs:
                part = freeze_sites(extract(model, [cut.tensor], [output]), live)
                # masks side by side, one core each (a session runs concurrently): small late layers use two
                # cores badly inside one run; side by side was 1.35x faster on 2 cores, same numbers
                session = _session(part, 1 if parallel and len(group) > 1 else cores, optimize=True)
                for key, logits in zip(group, pool.map(partial(_run_mask, session, state, masks), group)):
                    results[key] = logits
                    if advance is not None:
                        advance(len(images))
    return results


def plan_cuts(model: Any, input_name: str, masks: dict[Any, np.ndarray]) -> list[tuple[Cut, list[Any]]]:
    """The cuts ``run_masks`` starts from, in graph order, each with the masks it runs: a mask belongs to the last
    cut before the first node that reads a site it switches on; the masks of a cut run from an earlier one while that
    one has fewer than 1/``MAX_CUTS`` of the masks (a cut costs two sessions: at most ``MAX_CUTS`` or so)."""
    first_use: dict[str, int] = {}
    for position, node in enumerate(data_nodes(model, input_name)):
        for name in node_inputs(node):
            first_use.setdefault(name, position)
    cuts = single_tensor_cuts(model, input_name)
    groups: dict[Cut, list[Any]] = {}
    for key, mask in masks.items():
        start = min((first_use.get(f"{MASK_INPUT}_{i}", 0) for i in np.flatnonzero(mask)), default=0)
        groups.setdefault(max((c for c in cuts if c.position <= start), key=lambda c: c.position), []).append(key)
    plan: list[tuple[Cut, list[Any]]] = []
    for cut in sorted(groups, key=lambda c: c.position):
        if plan and len(plan[-1][1]) < len(masks) / MAX_CUTS:
            plan[-1][1].extend(groups[cut])
        else:
            plan.append((cut, groups[cut]))
    return plan


def _run_mask(session: Any, inputs: np.ndarray, masks: dict[Any, np.ndarray], key: Any) -> np.ndarray:
    return _run_batches(session, inputs, masks[key])


def _run_batches(session: Any, inputs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The one output of a graph part fed ``inputs`` in batches (and the site mask where the part reads it)."""
    names = [i.name for i in session.get_inputs()]
    data = next(name for name in names if name != MASK_INPUT)
    extra = {MASK_INPUT: mask} if MASK_INPUT in names else {}
    return np.concatenate([session.run(None, {data: inputs[s : s + BATCH], **extra})[0]
                           for s in range(0, len(inputs), BATCH)])


def _fp32_pass(
    floats: Any, images: np.ndarray, input_name: str, threads: int | None, advance: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FP32 logits and, per activation site, sum(x^2) and sum((fake_quant(x) - x)^2) over ``images``.

    Small batches: the graph materializes every site's difference tensor.
    """

    model, outputs = floats.with_noise_outputs()
    session = _session(model, threads)
    names = [o.name for o in session.get_outputs()]
    signal, noise = np.zeros(len(floats.sites)), np.zeros(len(floats.sites))
    reference = []
    off = floats.mask([])
    for start in range(0, len(images), NOISE_BATCH):
        batch = np.ascontiguousarray(images[start : start + NOISE_BATCH], dtype=np.float32)
        values = dict(zip(names, session.run(None, {input_name: batch, MASK_INPUT: off})))
        reference.append(values[names[0]])
        for index, s_name, n_name in outputs:
            signal[index] += float(values[s_name])
            noise[index] += float(values[n_name])
        advance(len(batch))
    return np.concatenate(reference), signal, noise


def nsr(reference: np.ndarray, other: np.ndarray) -> float:
    """Noise-to-signal power ratio of ``other`` against ``reference``."""
    ref = reference.astype(np.float64)
    return float(np.sum((other.astype(np.float64) - ref) ** 2) / max(np.sum(ref**2), 1e-30))


def run_logits(model: Any, images: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Logits of an ONNX model (``ModelProto`` or path) on ONNX Runtime's CPU provider, in batches."""
    session = _session(model, threads, optimize=True)
    name = session.get_inputs()[0].name
    return np.concatenate([
        session.run(None, {name: np.ascontiguousarray(images[s : s + BATCH], dtype=np.float32)})[0]
        for s in range(0, len(images), BATCH)
    ])


def layer_costs(model: Any) -> dict[str, int]:
    """Multiply-accumulates per Conv/Gemm node at batch 1 (shapes from the graph's value_info)."""
    from onnx import numpy_helper  # noqa: F401  (onnx is loaded; keeps the import lazy)

    shapes = {v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.value_info, *model.graph.output]}
    weights = {init.name: list(init.dims) for init in model.graph.initializer}
    costs: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and node.input[1] in weights and node.output[0] in shapes:
            costs[node.name] = int(np.prod(shapes[node.output[0]][1:]) * np.prod(weights[node.input[1]][1:]))
        elif node.op_type in ("Gemm", "MatMul") and len(node.input) > 1 and node.input[1] in weights:
            costs[node.name] = int(np.prod(weights[node.input[1]]))
    return costs


def layer_labels(model: Any) -> dict[str, str]:
    """Readable names: a weighted node's weight name without ``.weight``; an Add after one, its block + ``.add``."""
    initializers = {init.name for init in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    labels: dict[str, str] = {}
    for node in model.graph.node:
        weight = next((name for name in node.input[1:] if name in initializers), None)
        if weight is not None and node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            labels[node.name] = weight[: -len(".weight")] if weight.endswith(".weight") else weight
    for node in model.graph.node:
        if node.name in labels:
            continue
        for name in node.input:
            source = producer.get(name)
            if source is not None and source.name in labels and "." in labels[source.name]:
                labels[node.name] = f"{labels[source.name].rsplit('.', 1)[0]}.{node.op_type.lower()}"
                break
    return labels


def _weight_sqnr(prepared: Any, qdq: Any) -> dict[str, float]:
    """SQNR (dB) of each layer's INT8 weights, with ORT's ``create_weight_matching``/``compute_weight_error``."""
    import tempfile
    from pathlib import Path

    import onnx
    from onnxruntime.quantization.qdq_loss_debug import compute_weight_error, create_weight_matching

    consumers = {name: node.name for node in prepared.graph.node for name in node.input[1:2]}
    with tempfile.TemporaryDirectory(prefix="resnext-sens.") as tmp:
        float_path, qdq_path = Path(tmp) / "float.onnx", Path(tmp) / "qdq.onnx"
        onnx.save(prepared, os.fspath(float_path))
        onnx.save(qdq, os.fspath(qdq_path))
        errors = compute_weight_error(create_weight_matching(os.fspath(float_path), os.fspath(qdq_path)))
    return {consumers[name]: float(value) for name, value in errors.items() if name in consumers}


def _db(signal: float, noise: float) -> float:
    return 10.0 * math.log10(max(signal, 1e-30) / max(noise, 1e-30))


def _session(model: Any, threads: int | None, optimize: bool = False) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or _usable_cores()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # sessions alternate; spinning steals cores
    if not optimize:  # keep the switches and reductions as written; constant folding of weight DQs still applies
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    source = model if isinstance(model, (str, os.PathLike)) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _fits_graph(result: SensitivityResult, model: Any) -> bool:
    """Whether a cached analysis describes this graph: its layers are this graph's nodes, its sites in order."""
    nodes = {node.name for node in model.graph.node}
    layers = {layer.name for layer in result.layers}
    return layers <= nodes and all(
        site.index == index and set(site.requesters) <= layers and (site.follows is None or site.follows < index)
        for index, site in enumerate(result.sites)
    )


def cached_sensitivity(
    setup: Any, tuning: np.ndarray, tuning_sha256: str, *, probe_images: int = DEFAULT_PROBE_IMAGES,
    cache_dir: str | os.PathLike[str] | None = None, threads: int | None = None, progress: bool = True,
    reference: np.ndarray | None = None,
) -> SensitivityResult:
    """The analysis of ``setup`` on these tuning images from the cache, else measured and cached."""

    probe = max(1, min(probe_images, len(tuning)))
    key = SensitivityKey(setup.key, tuning_sha256, setup.recipe.to_dict(), probe,
                         {"excluded_by_recipe": list(setup.recipe_excluded),
                          "reference": "fp32 pass" if reference is None else "baseline cache"})
    cache = SensitivityCache(cache_dir)
    cached = cache.load(key)
    if cached is not None:
        try:
            result = SensitivityResult.from_dict(cached)
        except (TypeError, KeyError, ValueError):
            result = None
        if result is not None and _fits_graph(result, setup.prepared_model()):
            result.cache_hit, result.key = True, key.digest()
            return result
    result = analyse_sensitivity(setup, tuning, probe_images=probe, threads=threads, progress=progress,
                                 reference=reference)
    result.key = key.digest()
    cache.save(key, result.to_dict())
    return result
