"""Profile throughput: videos per second of the real ``atfr profile`` loop (``profile()``, run in a
child process so that its peak memory is its own) on the sample clips, and the split of one
video's time into decode, transfer, pre, SGS, post and bookkeeping, against max(decode, model)."""

from __future__ import annotations

import json
import os
import shutil
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
from atfr_analysis.bench.timing import Laps, autocast
from atfr_analysis.tuning import affinity_cores

__all__ = ["profile_throughput", "profile_protocol", "steady_cpu_seconds", "PARTS"]

#: the parts of one batch of views in the profile loop, in order
PARTS = ("transfer", "pre", "sgs", "post", "bookkeeping")


def _video_list(cfg: BenchConfig, folder: Path) -> Path:
    from atfr_analysis.data.samples import sample_videos

    videos = sample_videos()
    names = list(cfg.decode_names or videos)
    files = []
    for i in range(cfg.profile_videos):
        src = videos[names[i % len(names)]]
        if i < len(names):
            files.append(src)
            continue
        # a list names each file once: a video profiled again is a link of its own
        dst = folder / "again" / f"{i:03d}-{src.name}"
        dst.parent.mkdir(exist_ok=True)
        try:
            dst.symlink_to(src)
        except OSError:  # pragma: no cover - no symlinks here
            shutil.copyfile(src, dst)
        files.append(dst)
    path = folder / "videos.txt"
    path.write_text("".join(f"{f} 0\n" for f in files))
    return path


def _checkpoint(w: Workload, cfg: BenchConfig, folder: Path) -> str:
    """The run's weights as a file for ``profile()``: the checkpoint, or the random weights saved."""
    if cfg.checkpoint:
        return cfg.checkpoint
    from atfr_analysis.checkpoint import save_checkpoint
    from atfr_analysis.train import make_record

    name = w.model.model_name
    return str(save_checkpoint(folder / f"{name}.pyth", w.model, make_record(w.model, name)))


def child_main(args_path: str) -> None:
    """In the child process: one ``profile()`` run (its summary and peak memory), or with
    ``split`` the per-video split of the same videos, as JSON."""
    from atfr_analysis.bench.memory import own_peak_rss_mib, peak_rss_mib
    from atfr_analysis.profile.config import ProfileConfig
    from atfr_analysis.profile.run import run_profile

    args = json.loads(Path(args_path).read_text())
    threads = args.pop("threads")
    if threads:
        torch.set_num_threads(int(threads))
    result_path = Path(args.pop("result"))
    if args.pop("split", False):
        result_path.write_text(json.dumps(_split_child(args)))
        return
    done: list[float] = []  # when each video was logged
    cfg = ProfileConfig(
        args.pop("checkpoint"),
        args.pop("model"),
        args.pop("data"),
        args.pop("out"),
        **args,
        quiet=True,
        command=["atfr", "bench"],
    )
    summary = run_profile(cfg, on_video=lambda row: done.append(time.perf_counter()))
    out = summary.to_dict()
    out["video_done_s"] = [t - done[0] for t in done] if done else []
    out["peak_rss_mib"] = own_peak_rss_mib()
    out["loader_workers_peak_rss_mib"] = peak_rss_mib(children=True)
    if torch.cuda.is_available() and str(args["device"]).startswith("cuda"):
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    result_path.write_text(json.dumps(out))


def _split_child(args: dict) -> dict[str, Any]:
    """The split in a fresh process of its own, like the profile runs it is compared with (the
    bench process, after its other phases, can run the same model at another speed)."""
    from atfr_analysis.data.datasets import read_video_list
    from atfr_analysis.data.views import view_protocol
    from atfr_analysis.loading import load_model_from_checkpoint
    from atfr_analysis.tuning import configure_inference

    dev = torch.device(args["device"])
    model = load_model_from_checkpoint(args["checkpoint"], args["model"])[0].eval().to(dev)
    configure_inference(model, dev)
    proto = view_protocol(model, args["views"], args["crops"], args["short_side"], args["crop"])
    entries = read_video_list(args["data"])
    return _split(model, dev, args["precision"], entries, proto, args["batch_size"], Path(args["cache_dir"]))


def _run_profile(args: dict, folder: Path, tag: str, timeout_s: float, what: str = "the profile run") -> dict[str, Any]:
    args = dict(args, out=str(folder / f"run-{tag}"), result=str(folder / f"result-{tag}.json"))
    args_path = folder / f"args-{tag}.json"
    args_path.write_text(json.dumps(args))
    code = "import sys; from atfr_analysis.bench.throughput import child_main; child_main(sys.argv[1])"
    t0 = time.perf_counter()
    try:
        # the user cost cache of the runs: the one the split filled
        env = dict(os.environ, ATFR_CACHE_DIR=str(folder / "cost-cache"))
        p = subprocess.run(
            [sys.executable, "-c", code, str(args_path)], capture_output=True, text=True, timeout=timeout_s, env=env
        )
    except subprocess.TimeoutExpired:
        return {"error": f"{what} took over {timeout_s:.0f} s"}
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"{what} failed (exit {p.returncode}): {tail[0]}"}
    out = json.loads(Path(args["result"]).read_text())
    out["process_wall_s"] = wall
    return out


def _split(
    model, dev: torch.device, precision: str, entries, proto, batch_size: int, cache_dir: Path
) -> dict[str, Any]:
    """Seconds per video of decoding (0 workers, the profile's dataset settings: its protocol,
    uint8 views) and of each part of the profile's batch (``PARTS``: uint8 to the device and
    normalised there, as the profile does), the cost cache cold (first pass) and warm (second).
    The counts land in ``cache_dir``, the profile runs' user cache: their loops meet the signatures
    of these videos counted, as a long run does after its first videos."""
    from atfr_analysis.data.datasets import ViewDataset
    from atfr_analysis.data.transforms import normalize_views
    from atfr_analysis.data.video import Decoding
    from atfr_analysis.flops.cache import CostCache
    from atfr_analysis.flops.cost import CostModel
    from atfr_analysis.profile.instrument import Profiler

    spec = model.spec
    ds = ViewDataset(entries, spec, proto, dtype=torch.uint8, decoding=Decoding(thread_type="AUTO", thread_count=0))
    decode_s, decode_cpu, items = [], [], []
    for i in range(len(entries)):
        t0, c0 = time.perf_counter(), time.process_time()
        item = ds[i]
        decode_s.append(time.perf_counter() - t0)
        decode_cpu.append(time.process_time() - c0)  # every thread of the process (FFmpeg's too)
        if item["status"] != "ok":
            from atfr_analysis.errors import InputError

            raise InputError(f"decoding failed: {item['error']}")
        items.append(item["pathways"])
    prof = Profiler(model, batching="exact")
    shapes = [(1,) + tuple(p.shape[1:]) for p in items[0]]
    prof.use_cost_model(shapes, CostModel(model, shapes, cache=CostCache(dirs=[cache_dir])))
    _ = prof.cost_model([torch.empty(s, device="meta") for s in shapes]).num_bins  # the profile's set-up
    model.set_batching("exact")
    passes = []
    for _ in ("cold", "warm"):
        tot = {k: 0.0 for k in PARTS}
        per_video, model_cpu = [], []
        for pathways in items:
            video_s, c0 = 0.0, time.process_time()
            for s in range(0, pathways[0].shape[0], batch_size):
                laps = Laps(dev)
                with torch.no_grad(), autocast(dev, precision):
                    xs = normalize_views([p[s : s + batch_size] for p in pathways], device=dev, non_blocking=True)
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
                for k, dt in zip(PARTS, laps.seconds()):  # every batch of the video
                    tot[k] += dt
                    video_s += dt
            per_video.append(video_s)
            model_cpu.append(time.process_time() - c0)
        passes.append({k: v / len(items) for k, v in tot.items()})
    cold, warm = passes
    return {
        "decode_s_per_video": sum(decode_s) / len(decode_s),
        "parts_s_per_video": warm,
        "model_s_per_video": sum(warm.values()),
        "counting_s_per_video": max(0.0, cold["bookkeeping"] - warm["bookkeeping"]),
        "cold_parts_s_per_video": cold,
        "decode_s": decode_s,
        "model_s": per_video,
        "decode_cpu_s": decode_cpu,
        "model_cpu_s": model_cpu,
        "cores": affinity_cores(),
        "means": "seconds per video are means over the videos (the profile's loop seconds per video are a mean)",
    }


def profile_protocol(model, cfg: BenchConfig):
    """The views of the profile runs: the model's protocol at ``profile_views`` x ``profile_crops``,
    scaled to ``profile_crop`` (short side and crop) when it is set."""
    from atfr_analysis.data.views import view_protocol

    c = cfg.profile_crop
    return view_protocol(model, cfg.profile_views, cfg.profile_crops, c, c)


def profile_throughput(w: Workload, cfg: BenchConfig, log=None) -> dict[str, Any]:
    """``profile()`` on ``cfg.profile_videos`` sample videos with each of ``cfg.profile_workers``
    loader workers (videos/s of its loop, peak memory), at the batch size the profile takes by
    default on this device (``--profile-batch-size`` to choose), the per-video split and the
    efficiency max(decode, model) / loop seconds per video: over the whole loop (first-use costs
    included) and in the steady state (from the first video logged to the last)."""
    from atfr_analysis.tuning import default_batch_size

    log = log or (lambda msg: None)
    if not cfg.profile_workers:
        return {"skipped": True}
    if cfg.frames is not None and not cfg.checkpoint:
        return {"skipped": True, "reason": "--frames changes the model: profile() builds the registry's model"}
    proto = profile_protocol(w.model, cfg)
    batch = cfg.profile_batch_size or default_batch_size(w.dev)
    with tempfile.TemporaryDirectory(prefix="atfr-bench-") as tmp:
        folder = Path(tmp)
        data = _video_list(cfg, folder)
        args = {
            "checkpoint": _checkpoint(w, cfg, folder),
            "model": w.model.model_name,
            "data": str(data),
            "views": proto.views,
            "crops": proto.crops,
            "short_side": proto.short_side,
            "crop": proto.crop,
            "batch_size": batch,
            "device": str(w.dev),
            "precision": cfg.precision,
            "threads": cfg.threads,
        }
        split = _run_profile(
            dict(args, split=True, cache_dir=str(folder / "cost-cache")),
            folder,
            "split",
            cfg.profile_timeout,
            what="the split",
        )
        if "error" in split:
            log(f"profile split: {split['error']}")
            return {"skipped": True, "reason": split["error"]}
        log(
            f"profile split: decode {split['decode_s_per_video']:.2f} s, model {split['model_s_per_video']:.2f} s per "
            f"video"
        )
        bound = max(split["decode_s_per_video"], split["model_s_per_video"])
        bound_counting = max(split["decode_s_per_video"], split["model_s_per_video"] + split["counting_s_per_video"])
        split["steady_bound_s_per_video"] = _steady_bound(split)
        split["cpu_bound_s_per_video"] = _cpu_bound(split)
        runs: dict[str, Any] = {}
        for nw in cfg.profile_workers:
            r = _run_profile(dict(args, workers=nw), folder, f"w{nw}", cfg.profile_timeout)
            if "error" not in r:
                r.update(
                    _rates(r, bound, bound_counting, split["steady_bound_s_per_video"], split["cpu_bound_s_per_video"])
                )
                log(
                    f"profile loop, {nw} worker(s): {r['videos_per_s']:.3f} videos/s, efficiency {r['efficiency']:.3f} "
                    f"(steady state {_g(r['efficiency_steady'])}), peak RSS {r['peak_rss_mib']:.0f} MiB"
                )
            else:
                log(f"profile loop, {nw} worker(s): {r['error']}")
            runs[str(nw)] = {
                k: r.get(k)
                for k in (
                    "videos_per_s",
                    "efficiency",
                    "efficiency_with_counting",
                    "steady_videos_per_s",
                    "efficiency_steady",
                    "efficiency_steady_cpu_bound",
                    "steady_videos",
                    "loop_s",
                    "processed",
                    "elapsed_s",
                    "process_wall_s",
                    "peak_rss_mib",
                    "loader_workers_peak_rss_mib",
                    "cuda_max_allocated_mib",
                    "error",
                )
            }
    return {
        "videos": cfg.profile_videos,
        "views": proto.views,
        "crops": proto.crops,
        "crop": proto.crop,
        "short_side": proto.short_side,
        "batch_size": batch,
        "batch_size_default": cfg.profile_batch_size is None,
        "split": split,
        "bound": "max(decode, model)" if split["decode_s_per_video"] > 0 else None,
        "bound_by": "decode" if split["decode_s_per_video"] >= split["model_s_per_video"] else "model",
        "runs": runs,
        "method": "profile() (the atfr profile loop: decode in the loader, uint8 views to the device and normalised "
        "there, forward with exact batching, GMACs look-ups, rows, parquet parts) in a child process per worker "
        "count, at the profile's batch size; the split measured in a fresh process of its own on the same videos "
        "(decoding "
        "with 0 workers; each batch's parts synchronised; bookkeeping = Profiler.record + frame, warm cache; "
        "counting = the cold pass's extra bookkeeping, new signatures counted; the runs read those counts from "
        "their user cost cache, as a long run's later videos do); CPU bound: (decode + model CPU seconds) / cores "
        "(process CPU time, every thread), what overlapping them on this machine's cores can reach at best; efficiency "
        "= max(decode, model) / "
        "loop seconds per video; steady state: from the first video logged to the last (the first video's "
        "first-use costs left out), against max(decode, model) of those videos; peak RSS of a run: VmHWM of its own "
        "process image",
    }


def _g(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _mean(xs) -> float:
    return sum(xs) / len(xs)


def _steady_bound(split: dict) -> float | None:
    """max(decode, model) per video over the videos the steady state spans (all but the first)."""
    d, m = split["decode_s"][1:], split["model_s"][1:]
    if not d or not m:
        return None
    return max(_mean(d), _mean(m))


def steady_cpu_seconds(split: dict) -> tuple[float, float] | None:
    """Mean CPU seconds per video of decoding and of the model over the steady state's videos
    (all but the first); None without them."""
    d, m = split.get("decode_cpu_s", [])[1:], split.get("model_cpu_s", [])[1:]
    if not d or not m:
        return None
    return _mean(d), _mean(m)


def _cpu_bound(split: dict) -> float | None:
    """The least seconds per video the machine's cores allow when decoding and the model overlap:
    (decode CPU seconds + model CPU seconds) / cores, over the steady state's videos. Where it
    exceeds max(decode, model), the two compete for the cores and max(decode, model) cannot be
    reached by overlapping them."""
    cpu = steady_cpu_seconds(split)
    return None if cpu is None else sum(cpu) / max(1, split.get("cores") or 1)


def _rates(
    r: dict, bound: float, bound_counting: float, steady_bound: float | None, cpu_bound: float | None = None
) -> dict[str, Any]:
    """Videos per second and efficiencies of one profile run: whole loop and steady state."""
    out: dict[str, Any] = {"videos_per_s": r["processed"] / r["loop_s"] if r["loop_s"] > 0 else None}
    per_video = r["loop_s"] / r["processed"]
    out["efficiency"] = bound / per_video
    out["efficiency_with_counting"] = bound_counting / per_video
    done = r.get("video_done_s") or []
    out["steady_videos"] = max(0, len(done) - 1)
    if len(done) >= 2 and done[-1] > 0:
        steady = done[-1] / (len(done) - 1)
        out["steady_videos_per_s"] = 1.0 / steady
        out["efficiency_steady"] = steady_bound / steady if steady_bound else None
        if cpu_bound:
            out["efficiency_steady_cpu_bound"] = max(steady_bound or 0.0, cpu_bound) / steady
    else:
        out["steady_videos_per_s"] = out["efficiency_steady"] = None
    out.setdefault("efficiency_steady_cpu_bound", None)
    return out
