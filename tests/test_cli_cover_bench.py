"""The options of ``atfr bench`` that no other test passes (tests/test_cli_options.py lists them).

A real bench run takes minutes even at a tiny size (every phase runs, the training phase's two
processes included), and ``tests/test_bench.py`` already measures a tiny ``BenchConfig`` through
every phase, ``--suite gpu --smoke`` included. So here the command runs with ``run_bench`` /
``run_suite`` replaced by a recorder: each option must arrive in the config (or the call) the
library runs, with its value, and ``--json`` / ``--out`` must print and write what the library
returned. The refusals (``--smoke`` without ``--suite``, the GPU suite and ``--device cuda`` on a
machine without CUDA) run for real.
"""

from __future__ import annotations

import json

import pytest
import torch
from profile_helpers import run_cli


@pytest.fixture
def recorded(monkeypatch):
    """``bench.run_bench`` replaced: it records its config and returns a small result."""
    from atfr_analysis import bench

    calls = []

    def fake_run_bench(cfg, command=None):
        calls.append((cfg, command))
        return {"model": cfg.model, "recorded": True, "seed": cfg.seed}

    monkeypatch.setattr(bench, "run_bench", fake_run_bench)
    return calls


def test_every_bench_option_reaches_the_config(recorded, tmp_path, capsys):
    out = tmp_path / "r" / "bench.json"
    code, stdout, err = run_cli(
        capsys, "bench",
        "--model", "x3d_xs_atfr", "--device", "cpu", "--batch-size", "3", "--clips", "6", "--crop", "48",
        "--frames", "8", "--precision", "fp32", "--checkpoint", "demo", "--data", "demo", "--data-root", tmp_path,
        "--reps", "4", "--min-time", "0.5", "--warmup", "2", "--trace-clips", "1", "--check-clips", "3",
        "--decode-videos", "2", "--decode-workers", "0,2", "--decode-reps", "3", "--no-cuda-graphs",
        "--no-cudnn-benchmark", "--threads", "1", "--profile-ops", "5", "--profile-videos", "3",
        "--profile-batch-size", "2", "--profile-views", "2", "--profile-crops", "1", "--profile-workers", "0,1",
        "--seed", "7", "--json", "--out", out, "--quiet",
    )  # fmt: skip
    assert code == 0, err
    ((cfg, command),) = recorded
    want = dict(
        model="x3d_xs_atfr", device="cpu", batch_size=3, clips=6, crop=48, frames=8, precision="fp32",
        checkpoint="demo", data="demo", data_root=str(tmp_path), reps=4, min_time=0.5, warmup=2, trace_clips=1,
        check_clips=3, decode_videos=2, decode_workers=(0, 2), decode_reps=3, cuda_graphs=False,
        cudnn_benchmark=False, threads=1, profile_ops=5, profile_videos=3, profile_batch_size=2, profile_views=2,
        profile_crops=1, profile_workers=(0, 1), seed=7, quiet=True,
    )  # fmt: skip
    got = {k: getattr(cfg, k) for k in want}
    assert got == want
    assert command[0] == "atfr"
    # --json prints the library's result; --out writes the same JSON
    assert json.loads(stdout) == json.loads(out.read_text()) == {"model": "x3d_xs_atfr", "recorded": True, "seed": 7}


def test_bench_cuda_settings_on_and_defaults(recorded, capsys):
    """The positive spellings; without them CUDA graphs are left to the device (None: on with CUDA)."""
    assert run_cli(capsys, "bench", "--cuda-graphs", "--cudnn-benchmark", "--json")[0] == 0
    assert run_cli(capsys, "bench", "--json")[0] == 0
    (on, _), (default, _) = recorded
    assert on.cuda_graphs is True and on.cudnn_benchmark is True
    assert default.cuda_graphs is None and default.cudnn_benchmark is True and default.seed == 0


def test_suite_smoke_out_report_reach_run_suite(monkeypatch, tmp_path, capsys):
    import atfr_analysis.bench.suite as suite

    calls = []

    def fake_run_suite(name, **kw):
        calls.append((name, kw))
        return {"runs": [], "skipped": ["x: not here"], "elapsed_s": 0.0}

    monkeypatch.setattr(suite, "run_suite", fake_run_suite)
    code, stdout, err = run_cli(
        capsys, "bench", "--suite", "gpu", "--smoke", "--device", "cpu", "--out", tmp_path / "o",
        "--report", tmp_path / "b.md", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    ((name, kw),) = calls
    assert name == "gpu" and kw["smoke"] is True and kw["device"] == "cpu" and kw["quiet"] is True
    assert kw["out"] == tmp_path / "o" and kw["report"] == tmp_path / "b.md"
    assert "suite gpu (smoke): 0 run(s)" in stdout and "skipped: x: not here" in stdout


def test_smoke_needs_suite(capsys):
    code, _, err = run_cli(capsys, "bench", "--smoke")
    assert code == 2 and "--smoke needs --suite" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusals are for a machine without CUDA")
def test_gpu_suite_and_cuda_device_are_refused_without_cuda(capsys):
    """Without --smoke the GPU suite needs a GPU, as does --device cuda: one line, exit 2, before
    any measurement."""
    code, _, err = run_cli(capsys, "bench", "--suite", "gpu", "--device", "cpu")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--suite gpu needs a CUDA device" in err
    code, _, err = run_cli(capsys, "bench", "--device", "cuda", "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no CUDA device is available" in err
