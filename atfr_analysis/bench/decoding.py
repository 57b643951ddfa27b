"""Decoding throughput: videos per second of the profile's data pipeline, by loader workers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from atfr_analysis.bench.config import BenchConfig
from atfr_analysis.bench.timing import median
from atfr_analysis.errors import InputError

__all__ = ["bench_decoding"]


def bench_decoding(cfg: BenchConfig, spec, crop: int, data_entries=None, log=None) -> dict[str, Any]:
    """Videos per second of the PyAV pipeline (``ViewDataset`` + ``DataLoader``, the model's test
    views) with each worker count of ``cfg.decode_workers``."""
    from atfr_analysis.data.datasets import VideoEntry, ViewDataset, collate_videos, loader_context
    from atfr_analysis.data.samples import sample_videos
    from atfr_analysis.data.views import ViewProtocol

    log = log or (lambda msg: None)
    if not cfg.decode_workers:
        return {"videos_per_s": {}, "skipped": True}

    if data_entries:  # --data: its own videos
        entries = [data_entries[i % len(data_entries)] for i in range(cfg.decode_videos)]
        names = [Path(e.path).name for e in entries]
    else:
        videos = sample_videos()
        names = list(cfg.decode_names or videos)
        entries = [
            VideoEntry(i, videos[names[i % len(names)]], 0, names[i % len(names)]) for i in range(cfg.decode_videos)
        ]
    # the model's views x crops, each view's short side scaled to the crop
    ds = ViewDataset(entries, spec, ViewProtocol.at_crop(spec, crop=crop))
    out: dict[str, Any] = {}
    rounds: dict[str, list[float]] = {}
    first: dict[str, float] = {}
    ds[0]  # warm-up: the file cache, PyAV's and FFmpeg's first-use costs
    for w in cfg.decode_workers:
        loader = torch.utils.data.DataLoader(
            ds,
            batch_size=1,
            shuffle=False,
            num_workers=w,
            collate_fn=collate_videos,
            persistent_workers=w > 0,
            prefetch_factor=4 if w > 0 else None,
            multiprocessing_context=loader_context(w),
        )

        def one_pass(loader=loader) -> tuple[float, int]:
            t0 = time.perf_counter()
            views = 0
            for items in loader:
                for it in items:
                    if it["status"] != "ok":
                        raise InputError(f"decoding failed: {it['error']}")
                    views += it["pathways"][0].shape[0]
            return time.perf_counter() - t0, views

        if w > 0:  # the workers start (and import) once per run: an untimed first pass
            first[str(w)] = one_pass()[0]
        for _ in range(cfg.decode_reps):
            dt, views = one_pass()
            rounds.setdefault(str(w), []).append(dt)
        del loader  # stops persistent workers
        dt = median(rounds[str(w)])
        out[str(w)] = len(entries) / dt
        log(f"decoding, {w} worker(s): {len(entries) / dt:.2f} videos/s ({views} views, {dt:.1f} s)")
    return {
        "videos_per_s": out,
        "videos": len(entries),
        "views_per_video": spec.num_views * spec.num_crops,
        "crop": crop,
        "sources": sorted(set(names[: cfg.decode_videos])),
        "rounds_s": rounds,
        "first_pass_s": first,
        "method": f"median of {cfg.decode_reps} pass(es) per worker count over the videos after one untimed "
        "video, and with workers after one untimed pass (persistent workers: start-up not timed, see "
        "first_pass_s): decode with PyAV, resize, normalise, cut the model's test views",
    }
