"""Profile throughput: videos per second of the real ``atfr profile`` loop (``profile()``, run in a
child process so that its peak memory is its own) on the sample clips, and the split of one
video's time into decode, transfer, pre, SGS, post and bookkeeping, against max(decode, model)."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from atfr_analysis.bench.config import BenchConfig
from atfr_analysis.bench.forward import post_exact, sgs_layers
from atfr_analysis.bench.inputs import Workload
from atfr_analysis.bench.timing import Laps, median

__all__ = ["profile_throughput", "PARTS"]

#: the parts of one batch of views in the profile loop, in order
PARTS = ("transfer", "pre", "sgs", "post", "bookkeeping")


def _video_list(cfg: BenchConfig, folder: Path) -> tuple[Path, list]:
    from atfr_analysis.data.datasets import read_video_list
    from atfr_analysis.data.samples import sample_videos

    videos = sample_videos()
    names = list(cfg.decode_names or videos)
    path = folder / "videos.txt"
    path.write_text("".join(f"{videos[names[i % len(names)]]} 0\n" for i in range(cfg.profile_videos)))
    return path, read_video_list(path)


def _checkpoint(w: Workload, cfg: BenchConfig, folder: Path) -> str:
    """The run's weights as a file for ``profile()``: the checkpoint, or the random weights saved."""
    if cfg.checkpoint:
        return cfg.checkpoint
    from atfr_analysis.checkpoint import save_checkpoint
    from atfr_analysis.train import make_record

    name = w.model.model_name
    return str(save_checkpoint(folder / f"{name}.pyth", w.model, make_record(w.model, name)))


def _child(args_path: str) -> None:
    """In the child process: one ``profile()`` run; its summary and peak memory as JSON."""
    from atfr_analysis.bench.memory import own_peak_rss_mib, peak_rss_mib
    from atfr_analysis.profile.run import profile

    args = json.loads(Path(args_path).read_text())
    threads = args.pop("threads")
    if threads:
        torch.set_num_threads(int(threads))
    result_path = Path(args.pop("result"))
    summary = profile(**args, quiet=True, command=["atfr", "bench"])
    out = summary.to_dict()
    out["peak_rss_mib"] = own_peak_rss_mib()
    out["loader_workers_peak_rss_mib"] = peak_rss_mib(children=True)
    if torch.cuda.is_available() and str(args["device"]).startswith("cuda"):
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    result_path.write_text(json.dumps(out))


def _run_profile(args: dict, folder: Path, tag: str, timeout_s: float) -> dict[str, Any]:
    args = dict(args, out=str(folder / f"run-{tag}"), result=str(folder / f"result-{tag}.json"))
    args_path = folder / f"args-{tag}.json"
    args_path.write_text(json.dumps(args))
    code = "import sys; from atfr_analysis.bench.throughput import _child; _child(sys.argv[1])"
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, "-c", code, str(args_path)], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"the profile run took over {timeout_s:.0f} s"}
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"the profile run failed (exit {p.returncode}): {tail[0]}"}
    out = json.loads(Path(args["result"]).read_text())
    out["process_wall_s"] = wall
    return out


def _split(w: Workload, cfg: BenchConfig, entries, views: int, crops: int) -> dict[str, Any]:
    """Seconds per video of decoding (0 workers, the profile's dataset settings) and of each part
    of the profile's batch (``PARTS``), the cost cache cold (first pass) and warm (second pass)."""
    from atfr_analysis.data.datasets import ViewDataset
    from atfr_analysis.profile.instrument import Profiler

    spec, dev, model = w.spec, w.dev, w.model
    ds = ViewDataset(entries, spec, views=views, crops=crops, crop=spec.test_crop, thread_type="AUTO", thread_count=0)
    decode_s, items = [], []
    for i in range(len(entries)):
        t0 = time.perf_counter()
        item = ds[i]
        decode_s.append(time.perf_counter() - t0)
        if item["status"] != "ok":
            from atfr_analysis.errors import InputError

            raise InputError(f"decoding failed: {item['error']}")
        items.append(item["pathways"])
    prof = Profiler(model, batching="exact")
    shapes = [(1,) + tuple(p.shape[1:]) for p in items[0]]
    prof.cost_model([torch.empty(s, device="meta") for s in shapes]).num_bins  # the profile's set-up
    model.set_batching("exact")
    passes = []
    for _ in ("cold", "warm"):
        tot = {k: 0.0 for k in PARTS}
        for pathways in items:
            for s in range(0, pathways[0].shape[0], cfg.batch_size):
                laps = Laps(dev)
                with torch.no_grad(), w.amp():
                    xs = [p[s : s + cfg.batch_size].to(dev, non_blocking=True) for p in pathways]
                    laps.lap()
                    feats = model.forward_pre(xs)
                    laps.lap()
                    outs, bins = sgs_layers(model, feats)
                    sig = torch.stack(bins, dim=1).cpu()
                    laps.lap()
                    scores = post_exact(model, outs, bins, sig=sig) if xs[0].shape[0] > 1 else model.forward_post(outs)
                    laps.lap()
                    prof.frame(prof.record(prof.cost_model(xs), scores, sig))
                    laps.lap()
                for k, dt in zip(PARTS, laps.seconds()):
                    tot[k] += dt
        passes.append({k: v / len(items) for k, v in tot.items()})
    cold, warm = passes
    return {
        "decode_s_per_video": median(decode_s),
        "parts_s_per_video": warm,
        "model_s_per_video": sum(warm.values()),
        "counting_s_per_video": max(0.0, cold["bookkeeping"] - warm["bookkeeping"]),
        "cold_parts_s_per_video": cold,
    }


def profile_throughput(w: Workload, cfg: BenchConfig, log=None) -> dict[str, Any]:
    """``profile()`` on ``cfg.profile_videos`` sample videos with each of ``cfg.profile_workers``
    loader workers (videos/s of its loop, peak memory), the per-video split and the efficiency
    max(decode, model) / loop seconds per video."""
    log = log or (lambda msg: None)
    if not cfg.profile_workers:
        return {"skipped": True}
    if cfg.frames is not None and not cfg.checkpoint:
        return {"skipped": True, "reason": "--frames changes the model: profile() builds the registry's model"}
    spec = w.spec
    views = spec.num_views if cfg.profile_views is None else cfg.profile_views
    crops = spec.num_crops if cfg.profile_crops is None else cfg.profile_crops
    with tempfile.TemporaryDirectory(prefix="atfr-bench-") as tmp:
        folder = Path(tmp)
        data, entries = _video_list(cfg, folder)
        split = _split(w, cfg, entries, views, crops)
        log(f"profile split: decode {split['decode_s_per_video']:.2f} s, model {split['model_s_per_video']:.2f} s per video")
        args = {
            "checkpoint": _checkpoint(w, cfg, folder), "model": w.model.model_name, "data": str(data),
            "views": views, "crops": crops, "batch_size": cfg.batch_size, "device": str(w.dev),
            "precision": cfg.precision, "threads": cfg.threads,
        }
        runs: dict[str, Any] = {}
        for nw in cfg.profile_workers:
            r = _run_profile(dict(args, workers=nw), folder, f"w{nw}", cfg.profile_timeout)
            if "error" not in r:
                r["videos_per_s"] = r["processed"] / r["loop_s"] if r["loop_s"] > 0 else None
                loop_per_video = r["loop_s"] / r["processed"]
                bound = max(split["decode_s_per_video"], split["model_s_per_video"])
                bound_counting = max(split["decode_s_per_video"], split["model_s_per_video"] + split["counting_s_per_video"])
                r["efficiency"] = bound / loop_per_video
                r["efficiency_with_counting"] = bound_counting / loop_per_video
                log(f"profile loop, {nw} worker(s): {r['videos_per_s']:.3f} videos/s, efficiency {r['efficiency']:.3f}, "
                    f"peak RSS {r['peak_rss_mib']:.0f} MiB")
            else:
                log(f"profile loop, {nw} worker(s): {r['error']}")
            runs[str(nw)] = {k: r.get(k) for k in (
                "videos_per_s", "efficiency", "efficiency_with_counting", "loop_s", "processed", "elapsed_s",
                "process_wall_s", "peak_rss_mib", "loader_workers_peak_rss_mib", "cuda_max_allocated_mib", "error",
            )}
    return {
        "videos": cfg.profile_videos,
        "views": views,
        "crops": crops,
        "crop": spec.test_crop,
        "batch_size": cfg.batch_size,
        "split": split,
        "bound": "max(decode, model)" if split["decode_s_per_video"] > 0 else None,
        "bound_by": "decode" if split["decode_s_per_video"] >= split["model_s_per_video"] else "model",
        "runs": runs,
        "method": "profile() (the atfr profile loop: decode in the loader, transfer, forward with exact batching, "
        "GMACs look-ups, rows, parquet parts) in a child process per worker count, its loop seconds; the "
        "split measured in the bench process on the same videos (decoding with 0 workers; each batch's parts "
        "synchronised; bookkeeping = Profiler.record + frame, warm cache; counting = the cold pass's extra "
        "bookkeeping, new signatures counted with fvcore); efficiency = max(decode, model) / loop seconds per video; "
        "a short run in a fresh process: its loop also pays first-use costs (fvcore's first traces, every "
        "signature new to its cost cache); peak RSS of a run: VmHWM of its own process image",
    }
