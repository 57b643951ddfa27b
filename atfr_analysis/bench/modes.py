"""The timed modes: exact batching plain and instrumented, padded batching, the baseline (and the
controls: exact timed twice, without CUDA graphs, groups one after the other), and the overhead."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from atfr_analysis.bench.forward import post_exact, post_graphs, profiler_with_costs
from atfr_analysis.bench.inputs import Workload
from atfr_analysis.bench.timing import median, paired_overhead, spread, timed_rounds

__all__ = ["Modes", "time_modes", "bookkeeping_seconds"]


class Modes:
    """One batch of each mode (``*_one(xs)``) and a pass of it over every batch (``passes``)."""

    def __init__(self, w: Workload, prof):
        self.w, self.prof = w, prof
        model = w.model

        def forward_one(net) -> Callable:
            def one(xs):
                with torch.no_grad(), w.amp():
                    net(xs)

            return one

        def profile_one(xs):
            with w.amp():
                prof.frame(prof.run(xs))

        def profile_run_only_one(xs):
            with w.amp():
                prof.run(xs)

        self.plain_one, self.profile_one = forward_one(model), profile_one
        plain = self.over_batches(self.plain_one, "exact")
        # "exact_repeat" times the plain forward a second time: the A/A control of the overhead ratio
        fns: dict[str, Callable[[], None]] = {
            "exact": plain,
            "profile": self.over_batches(profile_one),
            "exact_repeat": plain,
        }
        if w.dev.type == "cuda":  # where the DataFrame step could matter against a fast forward
            fns["profile_run_only"] = self.over_batches(profile_run_only_one)
        fns["padded"] = self.over_batches(self.plain_one, "padded")
        fns["baseline"] = self.over_batches(forward_one(w.base))
        if model.exact_cuda_graphs:
            fns["exact_eager"] = self.with_setting("exact_cuda_graphs", False, plain, restore_previous=True)
        if w.dev.type == "cpu" and torch.get_num_threads() > 1:
            fns["exact_sequential"] = self.with_setting("exact_cpu_workers", 1, plain)
        self.passes = fns

    def over_batches(self, one: Callable, batching: str | None = None) -> Callable[[], None]:
        def run():
            if batching is not None:
                self.w.model.set_batching(batching)
            for xs in self.w.batches:
                one(xs)

        return run

    def with_setting(
        self, name: str, value, fn: Callable[[], None], restore_previous: bool = False
    ) -> Callable[[], None]:
        """``fn`` with the model's ``name`` set to ``value``, restored afterwards (``restore_previous``: to
        its value before the call, which stays False once a CUDA graph capture failed; else None)."""
        model = self.w.model

        def run():
            was = getattr(model, name) if restore_previous else None
            setattr(model, name, value)
            try:
                fn()
            finally:
                setattr(model, name, was)

        return run


def bookkeeping_seconds(w: Workload, prof, cm, min_time: float = 1.0, max_reps: int = 200) -> float:
    """Seconds per pass of what the instrumented profile adds to the forward (``Profiler.record``
    + ``Profiler.frame``: GMACs look-ups, scores to the host, the DataFrame), timed alone on the
    forward's outputs: a median over many repeats, free of the forward's run-to-run noise."""
    import time

    done = []
    with torch.no_grad(), w.amp():
        for xs in w.batches:
            outs, bins = w.model.forward_sgs(xs)
            sig = torch.stack(bins, dim=1).cpu()
            done.append((post_exact(w.model, outs, bins, sig=sig), sig))
    ts: list[float] = []
    while len(ts) < max_reps and (len(ts) < 5 or sum(ts) < min_time):
        t0 = time.perf_counter()
        for scores, sig in done:
            prof.frame(prof.record(cm, scores, sig))
        ts.append(time.perf_counter() - t0)
    return median(ts)


def time_modes(w: Workload, cm, reps, warmup, min_time, min_reps, max_reps, log) -> dict[str, Any]:
    """Every mode's seconds per pass (rotating rounds), the profile's own work timed alone, and
    the overhead timed batch by batch as A B B A."""
    prof = profiler_with_costs(w.model, w.shapes, cm)
    modes = Modes(w, prof)
    rounds = f"{reps} timed" if reps else f"timed rounds for {min_time:g} s per mode ({min_reps} to {max_reps})"
    log(f"timing {', '.join(modes.passes)}: {warmup} warm-up + {rounds} round(s)")
    times = timed_rounds(modes.passes, reps, warmup, w.dev, min_time, min_reps, max_reps)
    n_reps = len(times["exact"])
    log(f"timed {n_reps} round(s): exact {median(times['exact']):.3f} s per pass")
    med = {k: median(v) for k, v in times.items()}
    w.model.set_batching("exact")
    book_s = bookkeeping_seconds(w, prof, cm)
    log(f"profiler bookkeeping alone: {book_s * 1e3:.2f} ms per pass")
    abba = paired_overhead(modes.plain_one, modes.profile_one, w.batches, w.dev, n_reps, med["exact"] / len(w.batches))
    log(f"overhead, paired per batch (ABBA): {abba['median']:.4f} (quartiles {abba['q1']:.4f} to {abba['q3']:.4f})")
    n = w.n

    def ratio(a: str, b: str = "exact"):
        return (med[a] / med[b]) if a in med else None

    return {
        "reps": n_reps,
        "graphs": post_graphs(w.model),
        "bookkeeping_s": book_s,
        "abba": abba,
        "times": {
            "median_s_per_pass": med,
            "videos_per_s": {k: n / v for k, v in med.items()},
            "rounds_s": times,
            "bookkeeping_s_per_pass": book_s,
            "overhead_paired": abba,
            "aa_control": ratio("exact_repeat"),
            "spread_exact": spread(times["exact"]),
            "overhead_run_only": ratio("profile_run_only"),
            "speedup_exact_graphs_vs_eager": ratio("exact_eager"),
            "speedup_exact_threads_vs_sequential": ratio("exact_sequential"),
            "paired_ratio_medians": {
                "overhead": median([a / b for a, b in zip(times["profile"], times["exact"])]),
                "speedup_exact_vs_baseline": median([a / b for a, b in zip(times["baseline"], times["exact"])]),
                "speedup_exact_vs_padded": median([a / b for a, b in zip(times["padded"], times["exact"])]),
            },
        },
    }
