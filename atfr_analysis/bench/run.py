"""``run_bench``: one bench run as a composition of its measurement phases."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from atfr_analysis.bench.batchsizes import batch_sizes
from atfr_analysis.bench.config import BenchConfig
from atfr_analysis.bench.costs import CounterFactory, bins_distribution, measure_costs, new_counter_factory
from atfr_analysis.bench.decoding import bench_decoding
from atfr_analysis.bench.exactness import exactness_check
from atfr_analysis.bench.inputs import Workload, prepare, resolve_inputs
from atfr_analysis.bench.memory import PeakMemory
from atfr_analysis.bench.modes import time_modes
from atfr_analysis.bench.phases import efficiency_analysis, phase_times, top_ops
from atfr_analysis.bench.throughput import profile_protocol, profile_throughput
from atfr_analysis.bench.training import train_throughput
from atfr_analysis.runtime import resolve_device

__all__ = ["run_bench"]


def _logger(cfg: BenchConfig) -> Callable[[str], None]:
    def log(msg: str) -> None:
        if not cfg.quiet:
            print(f"[bench] {msg}", file=sys.stderr, flush=True)

    return log


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or platform.machine()


def _load_avg() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _configure(cfg: BenchConfig) -> tuple[BenchConfig, torch.device]:
    """The device, the config resolved for it and checked, the torch settings it asks for."""
    dev = resolve_device(cfg.device)
    cfg = cfg.resolved(dev)
    cfg.validate(dev)
    cfg = resolve_inputs(cfg)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    return cfg, dev


def _phases(w: Workload, costs, reps: int, profile_ops: int) -> dict[str, Any]:
    phases = phase_times(w, min(reps, 3))
    phases["gmacs_per_clip"] = costs.gmacs_per_clip()
    phases["analysis"] = efficiency_analysis(phases, phases["gmacs_per_clip"])
    if profile_ops > 0:
        phases["top_ops"] = top_ops(w, profile_ops)
    return phases


def _settings(cfg: BenchConfig, w: Workload, timed: dict, load0) -> dict[str, Any]:
    cuda = w.dev.type == "cuda"
    graphs = timed["graphs"]
    return {
        "reps": timed["reps"],
        "reps_auto": cfg.reps is None,
        "warmup": cfg.warmup,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_avg_start": load0,
        "load_avg_end": _load_avg(),
        "cuda_graphs": bool(w.model.exact_cuda_graphs),
        "cuda_graph_captures": graphs.captures if graphs is not None else 0,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if cuda else None,
        "tf32_conv": bool(torch.backends.cudnn.allow_tf32) if cuda else None,
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32) if cuda else None,
        "python": platform.python_version(),
        "seed": cfg.seed,
        "timing": "wall-clock medians over the timed rounds; one pass = every clip in batches of "
        "batch_size; the modes rotate within a round; inputs already on the device; CUDA synchronised "
        "around each pass",
    }


def run_bench(
    cfg: BenchConfig,
    command: Sequence[str] | None = None,
    new_counter: CounterFactory | None = None,
) -> dict[str, Any]:
    """Run every measurement of the package doc; returns one JSON-able dict (keys ``RESULT_KEYS``).

    ``new_counter``: the GMACs counter timed against fvcore's trace on new signatures (default
    ``costs.new_counter_factory()``)."""
    t_start = time.perf_counter()
    cfg, dev = _configure(cfg)
    log = _logger(cfg)
    load0 = _load_avg()
    mem = PeakMemory(dev)
    phase = _Phases(mem)
    w = phase("setup", prepare, cfg, dev)
    log(f"{w.model.model_name}: {w.spec.label(w.crop)}, {cfg.clips} clips, batch {cfg.batch_size}, {dev}")
    costs = phase("costs", measure_costs, w, cfg.trace_clips, cfg.batch_size, new_counter or new_counter_factory(), log)
    bins = bins_distribution(w, costs, cfg.batch_size)
    check = phase("exactness", exactness_check, w, cfg.check_clips)
    timed = phase(
        "timings", time_modes, w, costs.cm, cfg.reps, cfg.warmup, cfg.min_time, cfg.min_reps, cfg.max_reps, log
    )
    graphs = timed["graphs"]
    if graphs is not None and graphs.error:
        w.notes.append(f"CUDA graphs failed and were turned off: {graphs.error}")
        check["cuda_graphs_error"] = graphs.error
    by_batch = phase(
        "batch_sizes",
        batch_sizes,
        w,
        cfg.batch_size,
        _profile_crop(w, cfg),
        None,
        1,
        cfg.min_time / 2,
        3,
        cfg.max_reps,
        cfg.seed,
    )
    log("seconds per clip by batch size: " + ", ".join(f"{b}: {v:.4f}" for b, v in by_batch["s_per_clip"].items()))
    phases = phase("phases", _phases, w, costs, timed["reps"], cfg.profile_ops)
    log(f"decoding {cfg.decode_videos} video(s) with {', '.join(map(str, cfg.decode_workers))} worker(s)")
    decoding = phase("decoding", bench_decoding, cfg, w.spec, w.crop, w.data_entries, log)
    throughput = phase("profile_throughput", profile_throughput, w, cfg, log)
    training = phase("training", train_throughput, w, cfg, log) if cfg.train_processes else None
    result = _result(cfg, w, costs, bins, check, timed, phases, decoding, load0, command)
    result["profile_throughput"] = throughput
    result["training"] = training
    result["batch_sizes"] = by_batch
    result["memory"] = mem.result()
    result["elapsed_s"] = time.perf_counter() - t_start
    log(f"done in {result['elapsed_s']:.0f} s")
    return result


def _profile_crop(w: Workload, cfg: BenchConfig) -> int:
    """The crop of the profile runs (the model's protocol for the bench's views and crops)."""
    return profile_protocol(w.model, cfg).crop


class _Phases:
    """Runs a named phase between the memory marks."""

    def __init__(self, mem: PeakMemory):
        self.mem = mem

    def __call__(self, name: str, fn: Callable, *args):
        self.mem.start(name)
        try:
            return fn(*args)
        finally:
            self.mem.stop()


def _result(cfg, w: Workload, costs, bins, check, timed, phases, decoding, load0, command) -> dict[str, Any]:
    med = timed["times"]["median_s_per_pass"]
    speed = med["baseline"] / med["exact"]
    flop_ratio = costs.base_gmacs * w.n / sum(costs.per_clip)
    fv_s, lookup_s = costs.fvcore_trace_s, costs.summary["lookup_s_per_clip"]
    return {
        "device": str(w.dev),
        "device_name": torch.cuda.get_device_name(w.dev) if w.dev.type == "cuda" else _cpu_name(),
        "torch": torch.__version__,
        "model": w.model.model_name,
        "checkpoint": cfg.checkpoint,
        "batch_size": cfg.batch_size,
        "clips": w.n,
        "crop": w.crop,
        "frames": list(w.spec.frames),
        "precision": cfg.precision,
        "overhead": timed["abba"]["median"],
        "overhead_rounds": med["profile"] / med["exact"],
        "overhead_bookkeeping": (med["exact"] + timed["bookkeeping_s"]) / med["exact"],
        "speedup_exact_vs_baseline": speed,
        "flop_ratio": flop_ratio,
        "efficiency": speed / flop_ratio,
        "speedup_exact_vs_padded": med["padded"] / med["exact"],
        "gmacs_lookup_vs_fvcore_trace": fv_s / lookup_s if fv_s is not None else None,
        "decoding": decoding["videos_per_s"],
        "bins": bins,
        "gmacs": costs.summary,
        "cold_signatures": costs.cold,
        "times": timed["times"],
        "phases": phases,
        "exact_check": check,
        "decoding_details": decoding,
        "settings": _settings(cfg, w, timed, load0),
        "notes": w.notes,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": list(command) if command is not None else ["atfr", "bench"] + sys.argv[1:],
        "elapsed_s": None,
    }
