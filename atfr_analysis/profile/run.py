"""``profile``: a checkpoint and a video list in, a per-view log of bins, GMACs and scores out.

The run follows PySlowFast's multi-view test protocol (``views`` temporal clips x ``crops``
spatial crops per video), writes Parquet parts as it goes (a killed run loses at most the videos
not yet flushed, and ``resume=True`` continues it), records undecodable videos as ``failed`` rows,
and shards deterministically over ranks (``torchrun``: ``RANK`` / ``WORLD_SIZE``) or job-array
indices (``shard="i/n"``): shard ``i`` of ``n`` takes the videos at list positions ``k`` with
``k % n == i``, and every shard writes its own part files into the same run folder.

Order of the checks (a one-line error at the first problem, nothing written before the run
folder is opened): the arguments, the checkpoint against ``model`` (strict keys and shapes, its
PySlowFast cfg), the video list (empty, unknown label, duplicate path, more classes than the
head), the run folder (a run with other settings, or results present without ``resume``).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import signal
import sys
import threading
import time
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from atfr_analysis.checkpoint import CheckpointError, check_cfg, load_checkpoint, load_state_into, sha256sum
from atfr_analysis.errors import InputError
from atfr_analysis.flops.cost import CostModel, static_model
from atfr_analysis.models import build_model
from atfr_analysis.models.registry import get_entry
from atfr_analysis.profile.instrument import Profiler
from atfr_analysis.profile.log import (
    SCHEMA_VERSION,
    RunError,
    create_meta,
    done_video_ids,
    failed_video_ids,
    is_run,
    load_videos,
    read_meta,
    write_meta,
    write_parts,
)

__all__ = ["profile", "summarize", "RunSummary", "parse_shard", "resolve_device", "load_model_from_checkpoint"]

# settings that must agree between a run and its resumption (and between the shards of a run)
_RESUME_KEYS = (
    "model", "checkpoint_sha256", "num_classes", "frames", "sampling_rate", "crop", "views", "crops",
    "batching", "precision", "data_fingerprint",
)
#: failure reasons the summary shows
_SHOW_FAILURES = 3


@dataclass
class RunSummary:
    """The closing summary of a run folder (every shard's parts logged so far)."""

    run_dir: Path
    videos_ok: int
    videos_failed: int
    views: int  # rows (video, view) logged
    top1: float | None  # video-level, % of ok videos with a label (sum of softmax over views)
    top5: float | None
    gmacs_x_views: float | None  # mean over ok videos of the sum of their per-view GMACs
    static_gmacs_x_views: float | None  # the static backbone (no SGS) x views
    reduction_pct: float | None
    mean_bins: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    shard: tuple[int, int] = (0, 1)
    videos_total: int | None = None  # videos in the list
    views_per_video: int | None = None
    num_bins: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, error), the first few
    processed: int = 0  # videos profiled by this call
    skipped: int = 0  # videos of this shard done earlier (resume)
    distributed: bool = False  # a torchrun rank
    loop_s: float = 0.0  # seconds spent decoding and profiling (elapsed_s less the setup)

    @property
    def complete(self) -> bool:
        return self.videos_total is not None and self.videos_ok + self.videos_failed >= self.videos_total

    def lines(self) -> list[str]:
        i, n = self.shard
        head = f"run: {self.run_dir}"
        if n > 1:
            head += f"  (shard {i}/{n}{' of torchrun' if self.distributed else ''}; the numbers below cover every shard)"
        out = [head]
        logged = self.videos_ok + self.videos_failed
        s = f"videos: {self.videos_ok} ok, {self.videos_failed} failed"
        if self.videos_total is not None:
            s += f", {logged} of {self.videos_total} logged" + ("" if self.complete else " (incomplete: --resume continues)")
        s += f"; {self.views} rows"
        if self.views_per_video:
            s += f" ({self.views_per_video} views per video)"
        out.append(s)
        for path, err in self.failures[:_SHOW_FAILURES]:
            out.append(f"  failed: {err}" if path in err else f"  failed: {path}: {err}")
        if self.videos_failed > _SHOW_FAILURES:
            out.append(f"  ... and {self.videos_failed - _SHOW_FAILURES} more failed videos (status == 'failed' in the log)")
        if self.videos_failed:
            out.append("  (--resume --retry-failed tries the failed videos again)")
        if self.top1 is not None:
            out.append(
                f"video-level top-1 {self.top1:.2f}%  top-5 {self.top5:.2f}%  "
                "(sum of softmax over views, as PySlowFast's TestMeter)"
            )
        if self.gmacs_x_views is not None:
            s = f"GFLOPs x views: {self.gmacs_x_views:.4g}"
            if self.views_per_video:
                s += f" (mean {self.gmacs_x_views / self.views_per_video:.4g} per view x {self.views_per_video})"
            if self.static_gmacs_x_views and self.num_bins:
                s += f"; static baseline {self.static_gmacs_x_views:.4g}; reduction {self.reduction_pct:.1f}%"
            out.append(s + "  [GMACs, conv+fc]")
        if self.mean_bins:
            out.append(
                "mean active bins B': "
                + ", ".join(
                    f"{k} {v:.2f}" + (f" of {self.num_bins[k]}" if k in self.num_bins else "")
                    for k, v in self.mean_bins.items()
                )
            )
        rate = ""
        if self.processed and self.loop_s > 0:
            rate = f" (setup {self.elapsed_s - self.loop_s:.1f} s): {self.processed / self.loop_s:.2f} videos/s"
            if self.views_per_video:
                rate += f", {self.processed * self.views_per_video / self.loop_s:.1f} views/s"
        skipped = f", {self.skipped} done earlier" if self.skipped else ""
        out.append(f"this call: {self.processed} videos profiled{skipped} in {self.elapsed_s:.1f} s{rate}")
        return out

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("run_dir")
        d["shard"] = list(self.shard)
        d["failures"] = [list(f) for f in self.failures]
        d["complete"] = self.complete
        return d


# ----------------------------------------------------------------------------- arguments
def parse_shard(shard: str | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n); else the torchrun environment (RANK, WORLD_SIZE); else (0, 1)."""
    i, n, _ = _shard(shard)
    return i, n


def _shard(shard: str | None) -> tuple[int, int, bool]:
    """(i, n, from torchrun)."""
    if shard:
        try:
            i, n = (int(v) for v in str(shard).split("/"))
        except ValueError:
            raise InputError(f"--shard must look like i/n (e.g. 0/4), got {shard!r}") from None
        if not (n >= 1 and 0 <= i < n):
            raise InputError(f"--shard i/n needs 0 <= i < n, got {shard!r}")
        return i, n, False
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        try:
            i, n = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        except ValueError:
            raise InputError(
                f"RANK / WORLD_SIZE must be integers, got {os.environ['RANK']!r} / {os.environ['WORLD_SIZE']!r}"
            ) from None
        if not (n >= 1 and 0 <= i < n):
            raise InputError(f"RANK={i} WORLD_SIZE={n}: need 0 <= RANK < WORLD_SIZE")
        # a rendezvous (torchrun) to wait for the other ranks at the end; else shards of a job array
        return i, n, n > 1 and "MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ
    return 0, 1, False


def resolve_device(device: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:K``; under torchrun ``cuda``
    means this rank's GPU (``LOCAL_RANK``)."""
    device = str(device)
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise InputError(f"--device must be one of auto, cpu, cuda (or cuda:K), got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {device} asked for, but no CUDA device is available")
        if device == "cuda" and "LOCAL_RANK" in os.environ:
            device = f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
        dev = torch.device(device)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
        return dev
    return torch.device(device)


# ----------------------------------------------------------------------------- model
def load_model_from_checkpoint(checkpoint: str | Path, model_name: str, allow_missing: str | None = None):
    """Build ``model_name`` to fit ``checkpoint`` (class count from its head) and load it strictly.

    Raises a one-line ``CheckpointError`` when the file needs arbitrary unpickling, when its
    PySlowFast cfg disagrees with the model (arch, frames, sampling rate, alpha, crop sizes,
    classes), or when keys are missing, unexpected or shape-mismatched (``allow_missing="sgs"``
    lets exactly the SGS parameters be missing).
    """
    get_entry(model_name)  # unknown name: one-line error before reading anything
    with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
        warnings.simplefilter("ignore")
        ckpt = load_checkpoint(checkpoint)
    ncls = ckpt.num_classes() or 400
    model = build_model(model_name, num_classes=ncls)
    problems = check_cfg(ckpt.facts, model)
    if problems:
        raise CheckpointError(f"checkpoint cfg does not match --model {model_name}: " + "; ".join(problems))
    info = load_state_into(model, ckpt.state_dict, allow_missing=allow_missing)
    return model, ckpt, info


# ----------------------------------------------------------------------------- data
def _read_entries(data: str | Path, data_root, labels):
    from atfr_analysis.data import ListError
    from atfr_analysis.data.datasets import read_folder, read_label_map, read_video_list

    data = Path(data)
    label_map = read_label_map(labels) if labels else None
    if data.is_dir():
        entries = read_folder(data, labels=label_map)
    elif data.is_file():
        entries = read_video_list(data, data_root=data_root, labels=label_map)
    else:
        raise ListError(f"--data not found: {data} (a video list file or a folder of class folders)")
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
    from importlib.metadata import PackageNotFoundError, version

    import atfr_analysis

    out = {"python": platform.python_version(), "torch": torch.__version__, "atfr_analysis": atfr_analysis.__version__}
    for mod in ("fvcore", "av", "numpy", "pandas", "pyarrow"):
        try:
            out[mod] = version(mod)
        except PackageNotFoundError:  # pragma: no cover
            pass
    try:
        import av

        out["ffmpeg"] = ".".join(str(v) for v in av.library_versions.get("libavcodec", ()))
    except Exception:  # pragma: no cover - informational only
        pass
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _command(checkpoint, model, data, out, **opts) -> list[str]:
    """The ``atfr profile`` command line equivalent to a call (for run.json)."""
    cmd = ["atfr", "profile", str(checkpoint), "--model", str(model), "--data", str(data), "--out", str(out)]
    for k, v in opts.items():
        if v is None or v is False:
            continue
        flag = "--" + k.replace("_", "-")
        cmd += [flag] if v is True else [flag, str(v)]
    return cmd


_STATIC_CACHE: dict[tuple, tuple[float, float]] = {}


def _static_cost(net, shapes) -> tuple[float, float]:
    """GMACs (conv_fc, fvcore) of the same backbone without SGS at the same input, cached per process."""
    cfg = net.config
    key = (net.model_name, repr(cfg), tuple(map(tuple, shapes)))
    hit = _STATIC_CACHE.get(key)
    if hit is None:
        base = static_model(net).eval() if net.sgs_layer_names() else net
        fc = CostModel(base, shapes).static()
        hit = _STATIC_CACHE[key] = (fc.gmacs, fc.gmacs_fvcore)
    return hit


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a scheduler's kill, torchrun stopping its workers) raises KeyboardInterrupt in the
    main thread, so that the buffered videos are flushed before the process ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"terminated by signal {signum}")

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):  # pragma: no cover
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _same(a, b) -> bool:
    norm = lambda v: json.loads(json.dumps(v, default=str))  # noqa: E731 - tuples vs lists, paths
    return norm(a) == norm(b)


def _open_run(out: Path, meta: dict, resume: bool, mine_ids: set[int], shard_n: int) -> tuple[dict, set[int]]:
    """Create the run folder (race-free between shards) or join / resume the run in it.

    Returns the run's meta and the ids of the videos already logged.
    """
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file, not a folder")
    if not is_run(out) and out.is_dir():
        stray = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        if stray and not is_run(out):  # (re-check: a sibling shard may just have created the run)
            raise RunError(f"--out {out} exists and is not a run folder (it holds {stray[0]!r}); choose an empty or new folder")
    if create_meta(out, meta):
        return meta, set()
    old = read_meta(out)
    diff = [k for k in _RESUME_KEYS if not _same(old.get(k), meta.get(k))]
    if diff:
        detail = "; ".join(f"{k}: {old.get(k)!r} there, {meta.get(k)!r} now" for k in diff[:3])
        raise RunError(f"{out} holds a run with other settings ({detail}); choose another --out")
    done = done_video_ids(out)
    if not resume:
        if shard_n == 1:
            raise RunError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        clash = done & mine_ids
        if clash:
            raise RunError(
                f"{out} already holds {len(clash)} of this shard's videos; pass --resume to continue the run"
            )
    return old, done


# ----------------------------------------------------------------------------- the run
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
    retry_failed: bool = False,
    flush_every: int = 16,
    flush_seconds: float = 30.0,
    command: Sequence[str] | None = None,
    stop_after: int | None = None,
) -> RunSummary:
    """Profile ``checkpoint`` (as registry model ``model``) on the videos of ``data`` into ``out``.

    ``data``: a PySlowFast-style list (``path label`` or ``path,label`` per line; relative paths
    under ``data_root``) or a folder of class folders; ``labels``: a label map. Each video gives
    ``views x crops`` rows (PySlowFast's test protocol; defaults: the model config's). Decoding runs
    in ``workers`` DataLoader processes, inference on ``device`` in batches of ``batch_size`` views
    (``batching="exact"``: every view's result as if alone; ``"padded"``: the official code's
    padding). Parts are flushed every ``flush_every`` videos or ``flush_seconds`` seconds.
    ``resume`` continues the run in ``out`` (videos already logged are skipped; with
    ``retry_failed`` the videos logged as failed are tried again, their new rows replacing the
    failed ones); ``shard="i/n"``
    (or torchrun's ``RANK``/``WORLD_SIZE``) profiles every n-th video from the i-th.
    ``stop_after`` stops after that many videos of this call (tests of resumption).

    Returns the summary of the run folder (all shards); the log is read with ``load_run(out)``.
    """
    t0 = time.perf_counter()
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    if retry_failed and not resume:
        raise InputError("--retry-failed needs --resume (it retries the failed videos of an existing run)")
    if workers < 0:
        raise InputError(f"--workers must be >= 0, got {workers}")
    if batching not in ("exact", "padded"):
        raise InputError(f"--batching must be one of exact, padded, got {batching!r}")
    if precision not in ("fp32", "bf16", "fp16"):
        raise InputError(f"--precision must be one of fp32, bf16, fp16, got {precision!r}")
    if views is not None and views < 1:
        raise InputError(f"--views must be >= 1, got {views}")
    if crops is not None and crops not in (1, 3):
        raise InputError(f"--crops must be 1 or 3, got {crops}")
    if flush_every < 1:
        raise InputError(f"flush_every must be >= 1, got {flush_every}")
    shard_i, shard_n, distributed = _shard(shard)
    dev = resolve_device(device)
    if precision != "fp32" and dev.type != "cuda":
        raise InputError("--precision bf16/fp16 is offered on CUDA only")

    # 1. the model and its weights, before any video is read
    net, ckpt, load_info = load_model_from_checkpoint(checkpoint, model, allow_missing)
    spec = net.spec
    views = spec.num_views if views is None else int(views)
    crops = spec.num_crops if crops is None else int(crops)

    # 2. the video list, checked before any compute
    entries, label_map = _read_entries(data, data_root, labels)
    class_names = _class_names(entries, label_map)
    ncls = net.config.num_classes
    if class_names and len(class_names) > ncls:
        raise CheckpointError(
            f"the {'label map' if label_map else 'video list'} names {len(class_names)} classes "
            f"but the checkpoint's head has {ncls} outputs"
        )

    # 3. costs that do not depend on the videos
    out = Path(out)
    layers = net.sgs_layer_names()
    crop = spec.test_crop
    shapes = [(1, 3, t, crop, crop) for t in spec.frames]
    net.eval()
    static_gmacs, static_gmacs_fvcore = _static_cost(net, shapes)
    prof_cost = CostModel(net, shapes)
    num_bins = dict(zip(layers, prof_cost.num_bins)) if layers else {}

    meta: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model": model,
        "model_config": dataclasses.asdict(net.config) if dataclasses.is_dataclass(net.config) else None,
        "params": int(sum(p.numel() for p in net.parameters())),
        "num_classes": ncls,
        "class_names": class_names,
        "checkpoint": str(Path(checkpoint).resolve()),
        "checkpoint_sha256": sha256sum(checkpoint),
        "checkpoint_cfg": ckpt.facts or None,
        "checkpoint_missing_allowed": load_info["missing"],
        "frames": list(spec.frames),
        "sampling_rate": spec.sampling_rate,
        "alpha": spec.alpha,
        "crop": crop,
        "views": views,
        "crops": crops,
        "batching": batching,
        "batch_size": batch_size,
        "precision": precision,
        "convention": "conv_fc",
        "conventions": {
            "gmacs": "GMACs of the view alone at batch 1: fvcore's count without normalisation layers "
            "(conv + linear, incl. the SGS MLP and its bmm); 1 multiply-add = 1 (the paper's 'GFLOPs')",
            "gmacs_fvcore": "fvcore's default count, BatchNorm included",
            "gmacs_executed": "what the batch executed for the view (exact batching: = gmacs; padded: "
            "the cost at the batch's largest B')",
            "top1": "video level: argmax of the sum of the softmax over the video's views (PySlowFast TestMeter)",
            "static_gmacs": "the same backbone without SGS (all frames kept), one view",
        },
        "static_gmacs": static_gmacs,
        "static_gmacs_fvcore": static_gmacs_fvcore,
        "sgs_layers": {name: {"num_bins": b} for name, b in num_bins.items()},
        "data": str(Path(data).resolve()),
        "data_root": str(Path(data_root).resolve()) if data_root else None,
        "labels": str(Path(labels).resolve()) if labels else None,
        "num_videos": len(entries),
        "data_fingerprint": _fingerprint(entries),
        "versions": _versions(),
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
        "workers": workers,
        "command": list(command) if command is not None else _command(
            checkpoint, model, data, out, data_root=data_root, labels=labels, views=views, crops=crops,
            batching=batching, batch_size=batch_size, workers=workers, device=device, resume=resume,
            shard=shard, allow_missing=allow_missing, quiet=quiet, precision=None if precision == "fp32" else precision,
            retry_failed=retry_failed,
        ),
        "argv": list(sys.argv),
        "start_time": _now(),
        "end_time": None,
    }

    # 4. the run folder; this shard's videos, minus those already logged
    mine = [e for k, e in enumerate(entries) if k % shard_n == shard_i]
    meta, done = _open_run(out, meta, resume, {e.video_id for e in mine}, shard_n)
    retried = (failed_video_ids(out) & done) if retry_failed else set()
    done -= retried
    todo = [e for e in mine if e.video_id not in done]
    if resume and (done or retried) and shard_i == 0:
        m = read_meta(out)
        m.setdefault("resumed", []).append({"time": _now(), "videos_logged": len(done) + len(retried), "failed_retried": len(retried)})
        m["end_time"] = None
        write_meta(out, m)

    net.to(dev)
    profiler = Profiler(net, batching=batching)
    profiler._costs[tuple(tuple(s) for s in shapes)] = prof_cost  # the cost cache built above
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
        if precision != "fp32"
        else None
    )

    from atfr_analysis.data.datasets import ViewDataset, collate_videos

    # FFmpeg's own threads: all cores in the main process, a share of them per loader worker
    threads = 0 if workers == 0 else max(1, (os.cpu_count() or 1) // workers)
    ds = ViewDataset(todo, spec, views=views, crops=crops, crop=crop, thread_type="AUTO", thread_count=threads)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=1, shuffle=False, num_workers=workers, collate_fn=collate_videos,
        # an item holds every view of a video (30 x 3 x T x S x S floats): keep few in flight
        prefetch_factor=2 if workers > 0 else None,
        pin_memory=dev.type == "cuda",
    )

    from atfr_analysis.profile.progress import ProfileProgress

    now = time.time()  # to the microsecond: parts sort in the order the calls started (see log._part_order)
    stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(now)) + f"{int(now * 1e6) % 1_000_000:06d}"
    tag_base = f"{shard_i:03d}of{shard_n:03d}-{stamp}-{uuid.uuid4().hex[:6]}"
    buf_views: list[dict] = []
    buf_videos: list[dict] = []
    seq = 0
    last_flush = time.monotonic()
    nviews = views * crops

    def flush():
        nonlocal seq, buf_views, buf_videos, last_flush
        if buf_videos:
            write_parts(out, buf_views, buf_videos, layers, f"{tag_base}-{seq:05d}")
            seq += 1
            buf_views, buf_videos = [], []
        last_flush = time.monotonic()

    processed = 0
    desc = "profiling" + (f" [shard {shard_i}/{shard_n}]" if shard_n > 1 else "")
    show = not quiet and shard_i == 0 if distributed else not quiet
    t_loop = time.perf_counter()
    with _sigterm_as_interrupt(), ProfileProgress(
        total=len(todo), quiet=not show, layers=layers, description=desc, done_before=len(mine) - len(todo),
        views_per_video=nviews,
    ) as bar:
        try:
            for items in loader:
                for item in items:
                    entry = todo[item["index"]]
                    vrows, video_row = _profile_video(
                        item, entry, profiler, layers, nviews, crops, batch_size, dev, autocast
                    )
                    buf_views.extend(vrows)
                    buf_videos.append(video_row)
                    processed += 1
                    if len(buf_videos) >= flush_every or time.monotonic() - last_flush >= flush_seconds:
                        flush()
                    bar.update(video_row, vrows)
                if stop_after is not None and processed >= stop_after:
                    break
        finally:
            flush()
    loop_s = time.perf_counter() - t_loop

    return _finish(
        out, shard_i, shard_n, distributed, time.perf_counter() - t0,
        processed=processed, skipped=len(mine) - len(todo), loop_s=loop_s,
    )


def _failed_rows(base: dict, err: str, layers, nviews: int, crops: int):
    rows = [
        base | {
            "view": v, "temporal_index": v // crops, "spatial_index": v % crops,
            "frame_start": -1, "frame_end": -1, "status": "failed", "error": err,
            **{f"bins.{l}": None for l in layers},
            "gmacs": np.nan, "gmacs_fvcore": np.nan, "gmacs_executed": np.nan,
            "top5_ids": None, "top5_scores": None, "scores": None,
        }
        for v in range(nviews)
    ]
    video = base | {"status": "failed", "error": err, "views_ok": 0, "scores_sum": None, "top1_id": -1}
    return rows, video


def _profile_video(item, entry, profiler: Profiler, layers, nviews, crops, batch_size, dev, autocast):
    base = {"video_id": int(entry.video_id), "path": str(entry.path), "label": int(entry.label), "class_name": entry.class_name}
    if item["status"] != "ok":
        return _failed_rows(base, item.get("error") or "unknown error", layers, nviews, crops)
    pathways = item["pathways"]
    vmeta = item["views"]
    n = pathways[0].shape[0]
    if n != nviews:  # pragma: no cover - the data layer's contract
        raise RuntimeError(f"{entry.path}: {n} views decoded, {nviews} expected")
    scores, bins, gm, gf, ge = [], [], [], [], []
    for s in range(0, n, batch_size):
        chunk = [p[s : s + batch_size].to(dev, non_blocking=True) for p in pathways]
        if autocast is not None:
            with autocast:
                r = profiler.run(chunk)
        else:
            r = profiler.run(chunk)
        scores.append(r["scores"])
        bins.append(r["bins"])
        gm += r["gmacs"]
        gf += r["gmacs_fvcore"]
        ge += r["gmacs_executed"]
    scores_t = torch.cat(scores).float()  # [n, K] softmax, on the host
    bins_t = torch.cat(bins)
    k = min(profiler.topk, scores_t.shape[1])
    top = scores_t.topk(k, dim=1)
    # PySlowFast's TestMeter: video_preds[video] += preds, view by view, in float32
    acc = torch.zeros(scores_t.shape[1], dtype=torch.float32)
    for v in range(n):
        acc += scores_t[v]
    score_rows, top_ids, top_sc, bin_rows = scores_t.tolist(), top.indices.tolist(), top.values.tolist(), bins_t.tolist()
    rows = []
    for v in range(n):
        rows.append(
            base | {
                "view": v,
                "temporal_index": int(vmeta["temporal_index"][v]),
                "spatial_index": int(vmeta["spatial_index"][v]),
                "frame_start": int(vmeta["frame_start"][v]),
                "frame_end": int(vmeta["frame_end"][v]),
                "status": "ok",
                "error": None,
                **{f"bins.{l}": int(bin_rows[v][j]) for j, l in enumerate(layers)},
                "gmacs": float(gm[v]),
                "gmacs_fvcore": float(gf[v]),
                "gmacs_executed": float(ge[v]),
                "top5_ids": top_ids[v],
                "top5_scores": top_sc[v],
                "scores": score_rows[v],
            }
        )
    video = base | {
        "status": "ok", "error": None, "views_ok": n,
        "scores_sum": acc.tolist(), "top1_id": int(acc.argmax()),
    }
    return rows, video


def _finish(out: Path, shard_i: int, shard_n: int, distributed: bool, elapsed: float, **this_call) -> RunSummary:
    """Wait for the other ranks (torchrun), then summarise the folder and stamp run.json."""
    if distributed:
        import torch.distributed as dist

        own = not dist.is_initialized()
        if own:
            # ranks may finish hours apart on a long run: a generous timeout for the rendezvous
            dist.init_process_group("gloo", timeout=_dt.timedelta(days=7))
        dist.barrier()  # every rank's parts are on disk
    summary = summarize(out, elapsed=elapsed, shard=(shard_i, shard_n))
    summary.distributed = distributed
    for k, v in this_call.items():
        setattr(summary, k, v)
    if shard_i == 0 or not distributed:  # job-array shards each stamp it (the last one wins)
        m = read_meta(out)
        m["end_time"] = _now()
        m["summary"] = summary.to_dict()
        write_meta(out, m)
    if distributed:
        dist.barrier()
        if own:
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
        sc = np.stack(labelled["scores_sum"].map(lambda s: np.asarray(s, dtype=np.float32)).tolist())
        lab = labelled["label"].to_numpy()
        order = np.argsort(-sc, axis=1, kind="stable")
        top1 = float(100 * np.mean(order[:, 0] == lab))
        k = min(5, sc.shape[1])
        top5 = float(100 * np.mean((order[:, :k] == lab[:, None]).any(1)))
    okv = views[views["status"] == "ok"]
    gxv = float(okv.groupby("video_id")["gmacs"].sum().mean()) if len(okv) else None
    nviews = int(meta["views"]) * int(meta["crops"])
    static_xv = float(meta["static_gmacs"]) * nviews if meta.get("static_gmacs") else None
    red = 100 * (1 - gxv / static_xv) if (gxv is not None and static_xv) else None
    bins = {c[5:]: float(okv[c].astype(float).mean()) for c in okv.columns if c.startswith("bins.")} if len(okv) else {}
    failed = vids[vids["status"] != "ok"]
    return RunSummary(
        run_dir=run_dir,
        videos_ok=int(len(ok)),
        videos_failed=int(len(failed)),
        views=int(len(views)),
        top1=top1,
        top5=top5,
        gmacs_x_views=gxv,
        static_gmacs_x_views=static_xv,
        reduction_pct=red,
        mean_bins=bins,
        elapsed_s=elapsed,
        shard=tuple(shard),
        videos_total=meta.get("num_videos"),
        views_per_video=nviews,
        num_bins={k: int(v["num_bins"]) for k, v in (meta.get("sgs_layers") or {}).items()},
        failures=[(str(p), str(e)) for p, e in zip(failed["path"].head(_SHOW_FAILURES), failed["error"].head(_SHOW_FAILURES))],
    )
