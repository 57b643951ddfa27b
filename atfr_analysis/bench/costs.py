"""GMACs phases: the clips' signatures, the cost cache cold and warm, fvcore re-traces, and the
cold cost of counting a new signature with a pluggable counter (fvcore's trace by default)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from atfr_analysis.bench.forward import part_gmacs
from atfr_analysis.bench.inputs import Workload
from atfr_analysis.bench.timing import median

__all__ = [
    "Counter",
    "CounterFactory",
    "fvcore_counter",
    "new_counter_factory",
    "signatures",
    "count_cold",
    "Costs",
    "measure_costs",
    "bins_distribution",
    "cold_signatures",
]

Signature = tuple[int, ...]


class Counter(Protocol):
    def gmacs(self, sig: Sequence[int]) -> tuple[float, float]:
        """``(conv_fc, fvcore)`` GMACs of one clip with this signature."""


#: builds a counter for one model at one input size (one clip's pathway shapes, batch 1)
CounterFactory = Callable[[Any, list[tuple[int, ...]]], Counter]


def _counter(backend: str, doc: str) -> CounterFactory:
    def make(model, shapes: list[tuple[int, ...]]) -> Counter:
        from atfr_analysis.flops.cost import CostModel

        cm = CostModel(model, shapes, backend=backend)
        _ = cm.num_bins  # counts the part before SGS: the per-model set-up, not a per-signature cost
        return cm

    make.__doc__ = doc
    return make


#: the reference: ``CostModel`` tracing each new part with fvcore
fvcore_counter = _counter(
    "fvcore", "The reference: CostModel(backend='fvcore'), which traces each new part with fvcore."
)
#: the new counter: ``CostModel`` counting each part on the ``meta`` device, computing nothing
meta_counter = _counter(
    "meta", "The new counter: CostModel(backend='meta'), which counts each part on the meta device."
)


def new_counter_factory() -> CounterFactory | None:
    """The counter compared with fvcore's trace in ``cold_signatures``: the meta-device counter."""
    return meta_counter


def signatures(w: Workload) -> tuple[list[Signature], float]:
    """Every clip's signature (B' of each SGS layer, one forward up to SGS per batch) and the seconds it took."""
    t0 = time.perf_counter()
    with torch.no_grad(), w.amp():
        sigs_dev = [torch.stack(w.model.forward_sgs(xs)[1], dim=1) for xs in w.batches]
    sigs = [tuple(int(b) for b in row) for s in sigs_dev for row in s.cpu().tolist()]
    return sigs, time.perf_counter() - t0


def count_cold(factory: CounterFactory, model, shapes, sigs: Sequence[Signature]) -> tuple[Counter, dict[str, Any]]:
    """Build a counter and count each signature of ``sigs`` once (each new to it), timed."""
    t0 = time.perf_counter()
    counter = factory(model, shapes)
    setup_s = time.perf_counter() - t0
    per: list[float] = []
    values: dict[Signature, tuple[float, float]] = {}
    for s in sigs:
        t0 = time.perf_counter()
        values[s] = tuple(counter.gmacs(s))
        per.append(time.perf_counter() - t0)
    n = len(per)
    return counter, {
        "signatures": n,
        "setup_s": setup_s,
        "total_s": setup_s + sum(per),
        "s_per_signature": sum(per) / n if n else float("nan"),
        "median_s_per_signature": median(per),
        "values": values,
    }


def cold_signatures(
    reference: dict[str, Any], model, shapes, sigs: Sequence[Signature], new_counter: CounterFactory | None
) -> dict[str, Any]:
    """fvcore's seconds per new signature (``reference``: ``count_cold`` of the fvcore counter on
    ``sigs``) against ``new_counter``'s on the same signatures, and whether both give the same GMACs."""
    fv = {k: v for k, v in reference.items() if k != "values"}
    out: dict[str, Any] = {"signatures": fv["signatures"], "fvcore": fv, "new": None, "ratio": None, "equal": None}
    if new_counter is None:
        out["new_counter"] = None
        return out
    _c, new = count_cold(new_counter, model, shapes, sigs)
    out["new_counter"] = getattr(new_counter, "__qualname__", repr(new_counter))
    out["equal"] = all(
        math.isclose(a, b, rel_tol=1e-9) for s in sigs for a, b in zip(reference["values"][s], new["values"][s])
    )
    out["new"] = {k: v for k, v in new.items() if k != "values"}
    out["ratio"] = fv["s_per_signature"] / new["s_per_signature"] if new["s_per_signature"] else None
    return out


@dataclass
class Costs:
    """The cost side of a run: per-clip signatures and GMACs, the cache and its timings."""

    cm: Any  # the CostModel (warm)
    sigs: list[Signature]
    base_gmacs: float
    per_clip: list[float]
    post_gmacs: list[float]
    pre_gmacs: float
    executed_gmacs: float  # padded batching: every clip at its batch's largest B'
    cold: dict[str, Any]
    summary: dict[str, Any]  # the result's "gmacs" entry
    signature_seconds: float
    fvcore_trace_s: float | None

    def gmacs_per_clip(self) -> dict[str, float]:
        n = len(self.sigs)
        return {
            "pre": self.pre_gmacs,
            "sgs": sum(self.per_clip) / n - self.pre_gmacs - sum(self.post_gmacs) / n,
            "post_exact": sum(self.post_gmacs) / n,
            "baseline": self.base_gmacs,
        }


def _lookup_seconds(cm, sigs, reps: int = 200) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        for s in sigs:
            cm.gmacs(s)
    return (time.perf_counter() - t0) / (reps * len(sigs))


def _fvcore_traces(w: Workload, cm, sigs, clips: int) -> tuple[list[float], bool]:
    from atfr_analysis.flops.cost import direct_trace

    trace_s: list[float] = []
    match = True
    for i in range(min(clips, w.n)):
        clip = [p[i : i + 1].to(w.dev) for p in w.xs_all]
        t0 = time.perf_counter()
        ref = direct_trace(w.model, clip)
        trace_s.append(time.perf_counter() - t0)
        match &= math.isclose(ref.gmacs, cm.gmacs(sigs[i])[0], rel_tol=1e-9)
    return trace_s, match


def measure_costs(w: Workload, trace_clips: int, bs: int, new_counter: CounterFactory | None = None, log=None) -> Costs:
    """Signatures, the cold cache (fvcore), look-ups, fvcore re-traces and the new counter's cold cost."""
    from atfr_analysis.flops.cost import CostModel

    log = log or (lambda msg: None)
    n = w.n
    sigs, t_sig = signatures(w)
    distinct = sorted(set(sigs))
    cm, cold_fv = count_cold(fvcore_counter, w.model, w.shapes, distinct)
    cold_s = cold_fv["total_s"]
    base_cost = CostModel(w.base, w.shapes).static()
    lookup_s = _lookup_seconds(cm, sigs)
    log(f"cost cache: {len(distinct)} signatures in {cold_s:.1f} s; look-up {lookup_s * 1e6:.2f} us/clip")
    trace_s, trace_match = _fvcore_traces(w, cm, sigs, trace_clips)
    fv_s = median(trace_s) if trace_s else None
    if trace_s:
        log(f"fvcore trace: {fv_s:.2f} s/clip (same GMACs as the look-up: {trace_match})")
    cold = cold_signatures(cold_fv, w.model, w.shapes, distinct, new_counter)
    per_clip = [cm.gmacs(s)[0] for s in sigs]
    atfr_total = sum(per_clip)
    executed = 0.0
    for k in range(0, n, bs):
        chunk = sigs[k : k + bs]
        mx = tuple(max(c[j] for c in chunk) for j in range(len(chunk[0])))
        executed += cm.gmacs(mx)[0] * len(chunk)
    pre_gmacs, post_gmacs = part_gmacs(cm, sigs)
    summary = {
        "convention": "conv_fc (GMACs: 1 multiply-add = 1, BatchNorm left out), per clip, batch 1",
        "atfr_mean": atfr_total / n,
        "baseline": base_cost.gmacs,
        "padded_executed_mean": executed / n,
        "flop_ratio_padded_vs_exact": executed / atfr_total,
        "lookup_s_per_clip": lookup_s,
        "fvcore_trace_s_per_clip": fv_s,
        "fvcore_traces": len(trace_s),
        "fvcore_trace_equals_lookup": trace_match if trace_s else None,
        "cold_cache_s": cold_s,
        "cold_cache_s_per_clip": cold_s / n,
    }
    return Costs(
        cm=cm,
        sigs=sigs,
        base_gmacs=base_cost.gmacs,
        per_clip=per_clip,
        post_gmacs=post_gmacs,
        pre_gmacs=pre_gmacs,
        executed_gmacs=executed,
        cold=cold,
        summary=summary,
        signature_seconds=t_sig,
        fvcore_trace_s=fv_s,
    )


def bins_distribution(w: Workload, costs: Costs, bs: int) -> dict[str, Any]:
    """B' per SGS layer over the clips (histogram), groups per batch, mean B' by clip kind."""
    sigs, n = costs.sigs, w.n
    layers = w.model.sgs_layer_names()
    info: dict[str, Any] = {"layers": {}, "distinct_signatures": len(set(sigs))}
    for j, (name, B) in enumerate(zip(layers, costs.cm.num_bins)):
        vals = [s[j] for s in sigs]
        hist: dict[str, int] = {}
        for v in sorted(vals):
            hist[str(v)] = hist.get(str(v), 0) + 1
        info["layers"][name] = {"B": B, "mean": sum(vals) / n, "min": min(vals), "max": max(vals), "hist": hist}
    info["groups_per_batch"] = [len(set(sigs[k : k + bs])) for k in range(0, n, bs)]
    kinds: dict[str, list] = {}
    for r, s in zip(w.recs, sigs):
        kinds.setdefault(r["kind"], []).append(s)
    info["mean_by_kind"] = {
        k: [round(sum(s[j] for s in v) / len(v), 3) for j in range(len(layers))] for k, v in kinds.items()
    }
    info["clip_source"] = w.clip_source
    info["signature_seconds"] = costs.signature_seconds
    return info
