"""Wall-clock timing: medians over rounds whose mode order rotates, A B B A pairs, laps."""

from __future__ import annotations

import functools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch

__all__ = ["sync", "median", "spread", "autocast", "auto_reps", "timed_rounds", "paired_overhead", "Laps"]


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def spread(xs: Sequence[float]) -> float:
    """(max - min) / median of repeated timings: how far one round may stray."""
    return (max(xs) - min(xs)) / median(xs) if xs else float("nan")


def autocast(dev: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(dev.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def auto_reps(pass_s: float, min_time: float, min_reps: int, max_reps: int) -> int:
    """Timed rounds so that the fastest mode is timed for ``min_time`` seconds in all, within
    ``[min_reps, max_reps]``: short passes get more rounds (their medians are noisier)."""
    want = math.ceil(min_time / pass_s) if pass_s > 0 else max_reps
    return max(min_reps, min(max_reps, want))


class Laps:
    """Time stamps at the ends of consecutive parts (synchronised on CUDA)."""

    def __init__(self, dev: torch.device):
        self.dev = dev
        sync(dev)
        self.t = [time.perf_counter()]

    def lap(self) -> None:
        sync(self.dev)
        self.t.append(time.perf_counter())

    def seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.t, self.t[1:])]


def _timed(fn: Callable[[], None], dev: torch.device, repeats: int = 1) -> float:
    laps = Laps(dev)
    for _ in range(repeats):
        fn()
    laps.lap()
    return laps.seconds()[0]


def timed_rounds(
    fns: dict[str, Callable[[], None]],
    reps: int | None,
    warmup: int,
    dev: torch.device,
    min_time: float = 10.0,
    min_reps: int = 5,
    max_reps: int = 50,
) -> dict[str, list[float]]:
    """Wall seconds of each function, ``reps`` timed rounds after ``warmup`` untimed ones; the
    order of the functions rotates from round to round (drifting load hits every mode alike).
    ``reps=None``: from the last warm-up round's fastest pass (``auto_reps``; at least one warm-up
    round is run then)."""
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    warm: dict[str, float] = {}
    if reps is None:
        warmup = max(1, warmup)
    r = 0
    while reps is None or r < warmup + reps:
        k0 = r % len(names)
        for name in names[k0:] + names[:k0]:
            dt = _timed(fns[name], dev)
            if r >= warmup:
                times[name].append(dt)
            else:
                warm[name] = dt
        r += 1
        if reps is None and r == warmup:
            reps = auto_reps(min(warm.values()), min_time, min_reps, max_reps)
    return times


def paired_overhead(
    plain: Callable,
    instrumented: Callable,
    batches,
    dev,
    rounds: int,
    batch_s: float,
    unit_s: float = 0.25,
    budget_s: float = 40.0,
) -> dict[str, Any]:
    """The overhead measured batch by batch: ``plain(batch)`` (A, the model set to exact batching
    by the caller) and ``instrumented(batch)`` (B) timed back to back as A B B A (a linear drift of
    the machine's speed cancels), the ratio (B1 + B2) / (A1 + A2) per batch and round; their median
    and quartiles. Each timing runs the batch ``repeats`` times (at least ``unit_s`` seconds: short
    timings are noisy); at most ``budget_s`` seconds in all, and ``rounds`` rounds over the batches
    or fewer."""
    repeats = max(1, math.ceil(unit_s / batch_s)) if batch_s > 0 else 1
    pairs_max = max(2 * len(batches), int(budget_s / (4 * repeats * max(batch_s, 1e-9))))
    ratios: list[float] = []
    for _ in range(rounds):
        for xs in batches:
            ts = [_timed(functools.partial(fn, xs), dev, repeats) for fn in (plain, instrumented, instrumented, plain)]
            ratios.append((ts[1] + ts[2]) / (ts[0] + ts[3]))
        if len(ratios) >= pairs_max:
            break
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "median": median(ratios),
        "q1": q[0],
        "q3": q[2],
        "pairs": len(ratios),
        "repeats": repeats,
        "method": "A B B A per batch, each timing the batch run `repeats` times",
    }
