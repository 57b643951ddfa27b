"""Where the time goes: the exact forward's parts and the baseline's, timed apart; what they say
about the efficiency; the top operators of a pass."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from atfr_analysis.bench.forward import post_exact, sgs_layers
from atfr_analysis.bench.inputs import Workload
from atfr_analysis.bench.timing import Laps, median, sync

__all__ = ["PHASES", "phase_times", "efficiency_analysis", "top_ops"]

PHASES = ("pre", "sgs", "post_exact", "post_padded", "baseline_pre", "baseline_post")


def _one_batch(model, base, xs) -> Iterator[None]:
    """Each part once, in the order of ``PHASES`` (the caller laps between them)."""
    feats = model.forward_pre(xs)
    yield
    outs, bins = sgs_layers(model, feats)
    yield
    post_exact(model, outs, bins)
    yield
    model.forward_post(outs)
    yield
    base_feats = base.forward_pre(xs)
    yield
    base.forward_post(base_feats)
    yield


def phase_times(w: Workload, reps: int) -> dict[str, Any]:
    """Seconds per pass of each part of the exact forward and of the baseline's forward
    (synchronised between parts), medians over ``reps`` passes."""
    acc: dict[str, list[float]] = {k: [] for k in PHASES}
    w.model.set_batching("exact")
    for _ in range(reps):
        tot = {k: 0.0 for k in PHASES}
        with torch.no_grad(), w.amp():
            for xs in w.batches:
                laps = Laps(w.dev)
                for _part in _one_batch(w.model, w.base, xs):
                    laps.lap()
                for k, s in zip(PHASES, laps.seconds()):
                    tot[k] += s
        for k in acc:
            acc[k].append(tot[k])
    med = {k: median(v) for k, v in acc.items()}
    exact = med["pre"] + med["sgs"] + med["post_exact"]
    return {
        "median_s_per_pass": med,
        "share_of_exact": {k: med[k] / exact for k in ("pre", "sgs", "post_exact")},
        "reps": reps,
    }


def efficiency_analysis(phases: dict[str, Any], gmacs: dict[str, float]) -> dict[str, float]:
    """Where the efficiency goes, from the phase times and GMACs of one clip.

    ``post_efficiency``: the time ratio of the baseline's post over exact batching's post, divided by
    their GMACs ratio (1 = the post part runs FLOP-proportionally). ``efficiency_post_proportional``: the
    efficiency exact batching would reach with a FLOP-proportional post (pre and SGS as measured):
    pre costs the same time in both models, so whenever pre's share of the baseline's time is larger
    than its share of the GMACs (full temporal resolution: memory-bound stem, pooling and BN), the
    end-to-end efficiency stays below 1 unless post does better than FLOP-proportional.
    """
    t = phases["median_s_per_pass"]
    base_t = t["baseline_pre"] + t["baseline_post"]
    pre_t = t["pre"]
    base_post_g = gmacs["baseline"] - gmacs["pre"]
    post_flop_ratio = base_post_g / gmacs["post_exact"]
    flop_ratio = gmacs["baseline"] / (gmacs["pre"] + gmacs["sgs"] + gmacs["post_exact"])
    ideal = base_t / (pre_t + t["sgs"] + t["baseline_post"] / post_flop_ratio)
    measured = base_t / (pre_t + t["sgs"] + t["post_exact"])
    return {
        "post_flop_ratio": post_flop_ratio,
        "post_speedup": t["baseline_post"] / t["post_exact"],
        "post_efficiency": t["baseline_post"] / t["post_exact"] / post_flop_ratio,
        "pre_share_of_baseline_time": t["baseline_pre"] / base_t,
        "pre_share_of_baseline_gmacs": gmacs["pre"] / gmacs["baseline"],
        "sgs_share_of_exact_time": t["sgs"] / (pre_t + t["sgs"] + t["post_exact"]),
        "speedup_from_phases": measured,
        "efficiency_from_phases": measured / flop_ratio,
        "efficiency_post_proportional": ideal / flop_ratio,
    }


def top_ops(w: Workload, k: int) -> dict[str, list]:
    """The ``k`` operators with the most self time in one exact pass and one baseline pass."""
    from torch.profiler import ProfilerActivity, profile

    dev, model = w.dev, w.model
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    out: dict[str, list] = {}
    for name, net in (("exact", model), ("baseline", w.base)):
        if name == "exact":
            model.set_batching("exact")
            # the profiler sees the calling thread only: run the groups there, one after the other
            model.exact_cpu_workers = 1
        try:
            with torch.no_grad(), w.amp(), profile(activities=acts) as p:
                for xs in w.batches:
                    net(xs)
                sync(dev)
        finally:
            model.exact_cpu_workers = None
        key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
        rows = []
        for e in p.key_averages():
            t = getattr(e, "self_device_time_total", None) if dev.type == "cuda" else e.self_cpu_time_total
            if t is None:
                t = getattr(e, key, 0)
            rows.append((e.key, float(t) / 1e6, int(e.count)))
        rows.sort(key=lambda r: -r[1])
        total = sum(r[1] for r in rows) or 1.0
        out[name] = [{"op": r[0], "self_s": r[1], "share": r[1] / total, "calls": r[2]} for r in rows[:k]]
    return out
