"""``profile``: a checkpoint and a video list in, a per-view log of bins, GMACs and scores out.

The run follows PySlowFast's multi-view test protocol (``views`` temporal clips x ``crops``
spatial crops per video), writes Parquet parts as it goes (a killed run loses at most the videos
in flight, and ``resume=True`` continues it), records undecodable videos as ``failed`` rows, and
shards deterministically over ranks (``torchrun``: ``RANK`` / ``WORLD_SIZE``) or job-array
indices (``shard="i/n"``).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from atfr_analysis.checkpoint import CheckpointError, check_cfg, load_checkpoint, load_state_into, sha256sum
from atfr_analysis.flops.cost import CostModel, static_model
from atfr_analysis.models import build_model
from atfr_analysis.models.base import make_inputs
from atfr_analysis.models.registry import get_entry
from atfr_analysis.profile.instrument import Profiler
from atfr_analysis.profile.log import (
    SCHEMA_VERSION,
    RunError,
    done_video_ids,
    is_run,
    load_videos,
    read_meta,
    write_meta,
    write_parts,
)

__all__ = ["profile", "RunSummary", "parse_shard", "resolve_device", "load_model_from_checkpoint"]

# settings that must agree between a run and its resumption
_RESUME_KEYS = ("model", "checkpoint_sha256", "views", "crops", "crop", "batching", "frames", "data_fingerprint")


@dataclass
class RunSummary:
    run_dir: Path
    videos_ok: int
    videos_failed: int
    views: int
    top1: float | None
    top5: float | None
    gmacs_x_views: float | None  # mean over ok videos of the sum of per-view GMACs
    static_gmacs_x_views: float | None
    reduction_pct: float | None
    mean_bins: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    shard: tuple[int, int] = (0, 1)

    def lines(self) -> list[str]:
        out = [
            f"run: {self.run_dir}",
            f"videos: {self.videos_ok} ok, {self.videos_failed} failed ({self.views} views)",
        ]
        if self.top1 is not None:
            out.append(f"video-level top-1 {self.top1:.2f}%  top-5 {self.top5:.2f}%  (sum of softmax over views)")
        if self.gmacs_x_views is not None:
            s = f"GFLOPs x views: {self.gmacs_x_views:.3f} (GMACs, conv_fc)"
            if self.static_gmacs_x_views:
                s += f" vs {self.static_gmacs_x_views:.3f} static backbone without SGS: reduction {self.reduction_pct:.1f}%"
            out.append(s)
        if self.mean_bins:
            out.append("mean active bins: " + ", ".join(f"{k} {v:.2f}" for k, v in self.mean_bins.items()))
        out.append(f"elapsed {self.elapsed_s:.1f} s")
        return out


def parse_shard(shard: str | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n); else the torchrun environment (RANK, WORLD_SIZE); else (0, 1)."""
    if shard:
        try:
            i, n = (int(v) for v in shard.split("/"))
        except ValueError:
            raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {shard!r}") from None
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"--shard i/n needs 0 <= i < n, got {shard!r}")
        return i, n
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return 0, 1


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"--device must be one of auto, cpu, cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA device is available")
    return torch.device(device)


def load_model_from_checkpoint(
    checkpoint: str | Path, model_name: str, allow_missing: str | None = None
):
    """Build ``model_name`` to fit ``checkpoint`` (class count from its head) and load it strictly."""
    get_entry(model_name)  # unknown name: one-line error before reading anything
    ckpt = load_checkpoint(checkpoint)
    ncls = ckpt.num_classes() or 400
    overrides = {}
    model = build_model(model_name, num_classes=ncls, **overrides)
    problems = check_cfg(ckpt.facts, model)
    if problems:
        raise CheckpointError(f"checkpoint cfg does not match --model {model_name}: " + "; ".join(problems))
    info = load_state_into(model, ckpt.state_dict, allow_missing=allow_missing)
    return model, ckpt, info


def _read_entries(data: str | Path, data_root, labels):
    from atfr_analysis.data.datasets import read_folder, read_label_map, read_video_list

    data = Path(data)
    label_map = read_label_map(labels) if labels else None
    if data.is_dir():
        entries = read_folder(data, labels=label_map)
    elif data.is_file():
        entries = read_video_list(data, data_root=data_root, labels=label_map)
    else:
        raise FileNotFoundError(f"--data not found: {data}")
    return entries, label_map


def _class_names(entries, label_map) -> list[str]:
    if label_map:
        names = [None] * (max(label_map.values()) + 1)
        for n, i in label_map.items():
            names[i] = n
        return [n if n is not None else str(i) for i, n in enumerate(names)]
    pairs = sorted({(e.label, e.class_name) for e in entries if e.label >= 0})
    if not pairs:
        return []
    names = [str(i) for i in range(pairs[-1][0] + 1)]
    for i, n in pairs:
        names[i] = n
    return names


def _fingerprint(entries) -> str:
    import hashlib

    h = hashlib.sha256()
    for e in entries:
        h.update(f"{e.video_id}\t{e.path}\t{e.label}\n".encode())
    return h.hexdigest()[:16]


def _versions() -> dict[str, str]:
    import fvcore  # noqa: F401

    import atfr_analysis

    out = {"python": platform.python_version(), "torch": torch.__version__, "atfr_analysis": atfr_analysis.__version__}
    for mod in ("fvcore", "av", "pandas", "pyarrow"):
        try:
            from importlib.metadata import version

            out[mod] = version(mod)
        except Exception:  # pragma: no cover
            pass
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def profile(
    checkpoint: str | Path,
    model: str,
    data: str | Path,
    out: str | Path,
    data_root: str | Path | None = None,
    labels: str | Path | None = None,
    views: int | None = None,
    crops: int | None = None,
    batching: str = "exact",
    batch_size: int = 8,
    workers: int = 0,
    device: str = "auto",
    resume: bool = False,
    shard: str | None = None,
    allow_missing: str | None = None,
    quiet: bool = False,
    precision: str = "fp32",
    flush_every: int = 8,
    command: Sequence[str] | None = None,
    stop_after: int | None = None,
) -> RunSummary:
    """Profile ``checkpoint`` (as registry model ``model``) on the videos of ``data``.

    Returns the run's summary (of this shard); the log is in ``out`` (see ``load_run``).
    ``stop_after`` stops after that many videos of this call (for tests of resumption).
    """
    t0 = time.perf_counter()
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    if workers < 0:
        raise ValueError(f"--workers must be >= 0, got {workers}")
    if batching not in ("exact", "padded"):
        raise ValueError(f"--batching must be one of exact, padded, got {batching!r}")
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"--precision must be one of fp32, bf16, fp16, got {precision!r}")
    shard_i, shard_n = parse_shard(shard)
    dev = resolve_device(device)
    if precision != "fp32" and dev.type != "cuda":
        raise ValueError("--precision bf16/fp16 is offered on CUDA only")

    # 1. the model and its weights, before any video is read
    net, ckpt, load_info = load_model_from_checkpoint(checkpoint, model, allow_missing)
    spec = net.spec
    views = views or spec.num_views
    crops = crops or spec.num_crops
    if views < 1 or crops not in (1, 3):
        raise ValueError(f"--views must be >= 1 and --crops 1 or 3, got views={views} crops={crops}")

    # 2. the video list, checked before any compute
    entries, label_map = _read_entries(data, data_root, labels)
    class_names = _class_names(entries, label_map)
    ncls = net.config.num_classes
    if class_names and len(class_names) > ncls:
        raise CheckpointError(
            f"the labels name {len(class_names)} classes but the checkpoint's head has {ncls}"
        )

    out = Path(out)
    layers = net.sgs_layer_names()
    crop = spec.test_crop
    shapes = [(1, 3, t, crop, crop) for t in spec.frames]
    sha = sha256sum(checkpoint)
    meta: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model": model,
        "model_config": dataclasses.asdict(net.config) if dataclasses.is_dataclass(net.config) else None,
        "params": int(sum(p.numel() for p in net.parameters())),
        "num_classes": ncls,
        "class_names": class_names,
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha,
        "checkpoint_missing_allowed": load_info["missing"],
        "frames": list(spec.frames),
        "sampling_rate": spec.sampling_rate,
        "alpha": spec.alpha,
        "crop": crop,
        "views": views,
        "crops": crops,
        "batching": batching,
        "precision": precision,
        "convention": "conv_fc",
        "conventions": {
            "gmacs": "fvcore count without normalisation layers (conv + linear, incl. the SGS MLP and bmm); 1 multiply-add = 1",
            "gmacs_fvcore": "fvcore default count, BatchNorm included",
            "gmacs_executed": "cost the batch executed for the view (padded batching: at the batch's largest B')",
        },
        "data": str(data),
        "data_root": str(data_root) if data_root else None,
        "labels": str(labels) if labels else None,
        "num_videos": len(entries),
        "data_fingerprint": _fingerprint(entries),
        "versions": _versions(),
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
        "command": list(command) if command is not None else sys.argv,
        "start_time": _now(),
        "end_time": None,
    }
    if is_run(out):
        if not resume:
            raise RunError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        old = read_meta(out)
        diff = [k for k in _RESUME_KEYS if old.get(k) != meta.get(k)]
        if diff:
            raise RunError(f"cannot resume {out}: it was run with other settings ({', '.join(diff)})")
        meta["start_time"] = old.get("start_time", meta["start_time"])
    elif out.exists() and any(out.iterdir()):
        raise RunError(f"{out} exists and is not a run folder; choose an empty or new --out")

    # static cost of the same backbone without SGS at the same input (the reference for reductions)
    net.eval()
    base = static_model(net).eval() if layers else net
    static = CostModel(base, shapes).static()
    meta["static_gmacs"] = static.gmacs
    meta["static_gmacs_fvcore"] = static.gmacs_fvcore
    prof_cost = CostModel(net, shapes)
    meta["sgs_layers"] = {name: {"num_bins": b} for name, b in zip(layers, prof_cost.num_bins)} if layers else {}
    if shard_i == 0 or not is_run(out):
        write_meta(out, meta)

    # 3. this shard's videos, minus those already done
    mine = [e for k, e in enumerate(entries) if k % shard_n == shard_i]
    done = done_video_ids(out) if resume else set()
    todo = [e for e in mine if e.video_id not in done]

    net.to(dev)
    profiler = Profiler(net, batching=batching)
    profiler._costs[tuple(tuple(s) for s in shapes)] = prof_cost
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
        if precision != "fp32"
        else None
    )

    from atfr_analysis.data.datasets import ViewDataset, collate_videos

    ds = ViewDataset(todo, spec, views=views, crops=crops, crop=crop)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=1, shuffle=False, num_workers=workers, collate_fn=collate_videos,
        persistent_workers=False, prefetch_factor=4 if workers > 0 else None,
    )

    from atfr_analysis.profile.progress import ProfileProgress

    tag_base = f"{shard_i:03d}of{shard_n:03d}-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    buf_views: list[dict] = []
    buf_videos: list[dict] = []
    seq = 0
    nviews = views * crops

    def flush():
        nonlocal seq, buf_views, buf_videos
        if buf_videos:
            write_parts(out, buf_views, buf_videos, layers, f"{tag_base}-{seq:05d}")
            seq += 1
            buf_views, buf_videos = [], []

    processed = 0
    with ProfileProgress(total=len(todo), quiet=quiet, layers=layers) as bar:
        try:
            for items in loader:
                for item in items:
                    entry = ds.entries[item["index"]] if "index" in item else _entry_of(todo, item["video_id"])
                    vrows, video_row = _profile_video(
                        item, entry, profiler, layers, nviews, crops, batch_size, dev, autocast
                    )
                    buf_views.extend(vrows)
                    buf_videos.append(video_row)
                    bar.update(video_row, vrows)
                    processed += 1
                    if len(buf_videos) >= flush_every:
                        flush()
                if stop_after is not None and processed >= stop_after:
                    break
        finally:
            flush()

    return _finish(out, meta, layers, shard_i, shard_n, time.perf_counter() - t0, static.gmacs)


def _entry_of(entries, video_id):
    for e in entries:
        if e.video_id == video_id:
            return e
    raise KeyError(video_id)


def _profile_video(item, entry, profiler: Profiler, layers, nviews, crops, batch_size, dev, autocast):
    base = {"video_id": int(entry.video_id), "path": str(entry.path), "label": int(entry.label), "class_name": entry.class_name}
    rows: list[dict] = []
    if item["status"] != "ok":
        err = item.get("error") or "unknown error"
        for v in range(nviews):
            rows.append(
                base | {
                    "view": v, "temporal_index": v // crops, "spatial_index": v % crops,
                    "frame_start": -1, "frame_end": -1, "status": "failed", "error": err,
                    **{f"bins.{l}": None for l in layers},
                    "gmacs": np.nan, "gmacs_fvcore": np.nan, "gmacs_executed": np.nan,
                    "top5_ids": None, "top5_scores": None, "scores": None,
                }
            )
        video = base | {"status": "failed", "error": err, "views_ok": 0, "scores_sum": None, "top1_id": -1}
        return rows, video
    pathways = item["pathways"]
    meta = item["views"] if "views" in item else item
    n = pathways[0].shape[0]
    results = []
    for s in range(0, n, batch_size):
        chunk = [p[s : s + batch_size].to(dev, non_blocking=True) for p in pathways]
        if autocast is not None:
            with autocast:
                r = profiler.run(chunk)
        else:
            r = profiler.run(chunk)
        results.append(profiler.frame(r))
    import pandas as pd

    df = pd.concat(results, ignore_index=True)
    scores_sum = torch.tensor(np.asarray(df["scores"].tolist(), dtype=np.float32)).sum(0)
    for v in range(n):
        r = df.iloc[v]
        rows.append(
            base | {
                "view": v,
                "temporal_index": int(meta["temporal_index"][v]),
                "spatial_index": int(meta["spatial_index"][v]),
                "frame_start": int(meta["frame_start"][v]),
                "frame_end": int(meta["frame_end"][v]),
                "status": "ok",
                "error": None,
                **{f"bins.{l}": int(r[f"bins.{l}"]) for l in layers},
                "gmacs": float(r["gmacs"]),
                "gmacs_fvcore": float(r["gmacs_fvcore"]),
                "gmacs_executed": float(r["gmacs_executed"]),
                "top5_ids": list(r["top5_ids"]),
                "top5_scores": list(r["top5_scores"]),
                "scores": list(r["scores"]),
            }
        )
    video = base | {
        "status": "ok", "error": None, "views_ok": n,
        "scores_sum": scores_sum.tolist(), "top1_id": int(scores_sum.argmax()),
    }
    return rows, video


def _finish(out: Path, meta: dict, layers, shard_i, shard_n, elapsed, static_gmacs) -> RunSummary:
    distributed = shard_n > 1 and "WORLD_SIZE" in os.environ
    if distributed:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        dist.barrier()  # every rank's parts are on disk
    summary = summarize(out, elapsed=elapsed, shard=(shard_i, shard_n))
    if shard_i == 0:
        m = read_meta(out)
        m["end_time"] = _now()
        m["summary"] = {k: v for k, v in dataclasses.asdict(summary).items() if k not in ("run_dir",)}
        write_meta(out, m)
    if distributed:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return summary


def summarize(run_dir: str | Path, elapsed: float = 0.0, shard: tuple[int, int] = (0, 1)) -> RunSummary:
    """Summary of everything logged so far in a run folder (all shards)."""
    from atfr_analysis.profile.log import load_run

    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    vids = load_videos(run_dir)
    views = load_run(run_dir)
    ok = vids[vids["status"] == "ok"]
    top1 = top5 = None
    labelled = ok[ok["label"] >= 0]
    if len(labelled):
        sc = np.stack(labelled["scores_sum"].map(np.asarray).tolist())
        lab = labelled["label"].to_numpy()
        order = np.argsort(-sc, axis=1, kind="stable")
        top1 = float(100 * np.mean(order[:, 0] == lab))
        k = min(5, sc.shape[1])
        top5 = float(100 * np.mean((order[:, :k] == lab[:, None]).any(1)))
    okv = views[views["status"] == "ok"]
    gxv = float(okv.groupby("video_id")["gmacs"].sum().mean()) if len(okv) else None
    nviews = meta["views"] * meta["crops"]
    static_xv = meta.get("static_gmacs", 0) * nviews if meta.get("static_gmacs") else None
    red = 100 * (1 - gxv / static_xv) if (gxv is not None and static_xv) else None
    bins = {c[5:]: float(okv[c].astype(float).mean()) for c in okv.columns if c.startswith("bins.")} if len(okv) else {}
    return RunSummary(
        run_dir=run_dir,
        videos_ok=int(len(ok)),
        videos_failed=int((vids["status"] != "ok").sum()),
        views=int(len(views)),
        top1=top1,
        top5=top5,
        gmacs_x_views=gxv,
        static_gmacs_x_views=static_xv,
        reduction_pct=red,
        mean_bins=bins,
        elapsed_s=elapsed,
        shard=shard,
    )
