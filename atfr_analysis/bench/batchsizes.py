"""Seconds per clip of the exact forward by batch size, at the crop the profile runs at: the
measurement behind the profile's default batch size on each device
(``atfr_analysis.tuning.default_batch_size``).

Clips made like the bench's (re-timed sample footage, ``bench.clips``) at the profile's crop (the
bench's own crop is often reduced on the CPU, and which batch size is fastest depends on the
size) run in batches of 1, 2, 4, ... up to the bench's batch size, every size timed in the same
rounds (their order rotating, ``timing.timed_rounds``), medians over the rounds. Padded batching
at the bench's batch size is timed in the same rounds: exact against padded at the profile's crop
(the bench's main figure is at its own crop)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from atfr_analysis.bench.inputs import Workload
from atfr_analysis.bench.timing import median, timed_rounds

__all__ = ["batch_sizes", "sizes_up_to"]


def sizes_up_to(batch_size: int) -> list[int]:
    """1, 2, 4, ... below ``batch_size``, and ``batch_size`` itself."""
    out, b = [], 1
    while b < batch_size:
        out.append(b)
        b *= 2
    return out + [batch_size]


def batch_sizes(
    w: Workload,
    batch_size: int,
    crop: int,
    reps: int | None,
    warmup: int,
    min_time: float,
    min_reps: int,
    max_reps: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Median seconds per clip of a pass over ``batch_size`` clips at ``crop`` at each batch size
    (exact batching)."""
    from atfr_analysis.bench.clips import build_clips
    from atfr_analysis.data.transforms import pack_pathways

    model = w.model
    n = batch_size
    xs_all = w.xs_all if crop == w.crop and w.n >= n else pack_pathways(build_clips(w.spec, crop, n, seed)[0], w.spec)
    xs_all = [p[:n] for p in xs_all]

    def pass_at(b: int, batching: str = "exact") -> Callable[[], None]:
        batches = [[p[i : i + b] for p in xs_all] for i in range(0, n, b)]
        batches = [[x.to(w.dev) for x in xs] for xs in batches]

        def run() -> None:
            model.set_batching(batching)
            with torch.no_grad(), w.amp():
                for xs in batches:
                    model(xs)

        return run

    sizes = sizes_up_to(batch_size)
    fns = {str(b): pass_at(b) for b in sizes}
    fns["padded"] = pass_at(batch_size, "padded")
    times = timed_rounds(fns, reps, warmup, w.dev, min_time, min_reps, max_reps)
    model.set_batching("exact")
    per_clip = {b: median(times[str(b)]) / n for b in sizes}
    padded = median(times["padded"]) / n
    best = min(per_clip, key=per_clip.get)
    return {
        "sizes": sizes,
        "s_per_clip": {str(b): per_clip[b] for b in sizes},
        "vs_largest": {str(b): per_clip[batch_size] / per_clip[b] for b in sizes},
        "fastest": best,
        "padded_s_per_clip": padded,
        "speedup_exact_vs_padded": padded / per_clip[batch_size],
        "rounds": len(times[str(sizes[0])]),
        "clips": n,
        "crop": crop,
        "method": "a pass over clips made like the bench's, at the profile's crop, with exact batching at each "
        "batch size, the sizes timed in "
        "the same rounds (order rotating), median over rounds / clips; vs_largest = seconds per clip at the "
        "bench's batch size over those at this size (above 1: faster than the largest batch); padded: padded batching "
        "at the bench's batch size in the same rounds, speedup_exact_vs_padded = its seconds over exact's at that size",
    }
