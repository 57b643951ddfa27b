"""The meta counter against fvcore on random signatures: equality and the cold cost per signature.

A model with fewer distinct signatures than asked for (X3D ATFR: one SGS layer, B = 16) is
counted on every one of them.

``atfr counters [--n 20] [--models a,b,c] [--out reports/counters.json]`` counts ``n``
random signatures of each model with both backends (each in a process already warm: the first
call's one-time set-up of either backend is timed apart, as ``warmup_s``) and prints, per model,
whether every count is identical in both conventions and the seconds per new signature of each
backend (median and mean; a new signature counts its post part and any SGS case not seen yet).
"""

from __future__ import annotations

import math
import random
import statistics
import time

__all__ = ["compare_backends", "DEFAULT_MODELS"]

#: the acceptance's three: SlowFast 4x16 (K400), SSv2 SlowFast 16x8 (174 classes), X3D-XL
DEFAULT_MODELS = (("slowfast_4x16_r50_atfr", 400), ("slowfast_16x8_r50_atfr", 174), ("x3d_xl_atfr", 400))


def compare_backends(name: str, num_classes: int = 400, n: int = 20, seed: int = 0) -> dict:
    import torch

    from atfr_analysis.flops.cost import CostModel
    from atfr_analysis.models import build_model, make_inputs

    model = build_model(name, num_classes=num_classes).eval()
    shapes = [tuple(x.shape) for x in make_inputs(model.spec)]
    out: dict = {
        "model": name,
        "num_classes": num_classes,
        "input_shapes": [list(s) for s in shapes],
        "threads": torch.get_num_threads(),
    }
    cms = {b: CostModel(model, shapes, backend=b) for b in ("meta", "fvcore")}
    warm = {}
    for b, cm in cms.items():  # the pre part and the one-time set-up of the backend
        t = time.perf_counter()
        _ = cm.num_bins  # read for its side effect: the set-up
        warm[b] = round(time.perf_counter() - t, 3)
    bins = cms["meta"].num_bins
    rng = random.Random(f"{name}-{seed}")
    sigs: list[tuple[int, ...]] = []
    n = min(n, math.prod(bins))  # a model has no more distinct signatures than that (X3D: B of one layer)
    while len(sigs) < n:
        s = tuple(rng.randint(1, b) for b in bins)
        if s not in sigs:
            sigs.append(s)
    times = {b: [] for b in cms}
    rows = []
    for sig in sigs:
        got = {}
        for b, cm in cms.items():
            t = time.perf_counter()
            got[b] = cm.exact_counts(sig)
            times[b].append(time.perf_counter() - t)
        rows.append(
            {
                "signature": list(sig),
                "meta": list(got["meta"]),
                "fvcore": list(got["fvcore"]),
                "equal": got["meta"] == got["fvcore"],
            }
        )
    out.update(
        num_bins=bins,
        warmup_s=warm,
        signatures=n,
        equal=all(r["equal"] for r in rows),
        mismatches=[r["signature"] for r in rows if not r["equal"]],
        seconds_per_signature={
            b: {"median": round(statistics.median(v), 4), "mean": round(statistics.fmean(v), 4)}
            for b, v in times.items()
        },
        rows=rows,
    )
    med = out["seconds_per_signature"]
    out["speedup_median"] = round(med["fvcore"]["median"] / med["meta"]["median"], 2)
    out["speedup_mean"] = round(med["fvcore"]["mean"] / med["meta"]["mean"], 2)
    return out
