"""``atfr bench``: videos per second of ATFR inference (exact vs padded batching vs the backbone
without SGS), the profiler's overhead, GMACs look-up vs fvcore trace, and decoding throughput.

A thin skin: the options make a ``BenchConfig``, ``run_bench`` measures, the result is printed and
written (``--json``, ``--out``, ``--report``)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def _emit(result: dict, json_out: bool, out: Path | None, report: Path | None) -> None:
    from atfr_analysis import bench

    text = bench.dumps(result)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    if report:
        bench.write_report(result, report)
    typer.echo(text if json_out else bench.format_summary(result))
    if report and not json_out:
        typer.echo(f"report: {report}")


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench_cmd(
        model: str | None = typer.Option(
            None, "--model", help="an _atfr registry name (default: the checkpoint's, else slowfast_4x16_r50_atfr)"
        ),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda"),
        batch_size: int | None = typer.Option(None, "--batch-size", help="clips per forward (default: cpu 8, cuda 32)"),
        clips: int | None = typer.Option(None, "--clips", help="clips measured (default: 2 batches)"),
        crop: int | None = typer.Option(
            None, "--crop", help="spatial size (default: cpu 112, cuda the model's test crop)"
        ),
        frames: int | None = typer.Option(None, "--frames", help="clip frames (fast pathway); default the model's"),
        precision: str = typer.Option("fp32", "--precision", help="fp32, or on CUDA bf16/fp16 (GMACs do not change)"),
        checkpoint: str | None = typer.Option(
            None, "--checkpoint", help="trained weights (default: random weights); 'demo': the shipped slow_tiny_atfr"
        ),
        data: str | None = typer.Option(
            None,
            "--data",
            help="a video list or class folder: its test views as the clips; 'demo': the demo's test split",
        ),
        data_root: Path | None = typer.Option(None, "--data-root", help="prefix for the list's relative paths"),
        reps: int | None = typer.Option(
            None, "--reps", help="timed rounds (default: enough for --min-time, at least cpu 5 / cuda 10, at most 50)"
        ),
        min_time: float | None = typer.Option(
            None, "--min-time", help="with the default --reps: timed seconds per mode at least (cpu 10, cuda 3)"
        ),
        warmup: int | None = typer.Option(None, "--warmup", help="untimed rounds first (default: cpu 1, cuda 3)"),
        trace_clips: int = typer.Option(2, "--trace-clips", help="clips re-traced with fvcore"),
        check_clips: int = typer.Option(4, "--check-clips", help="clips compared with their batch-1 outputs"),
        decode_videos: int | None = typer.Option(
            None, "--decode-videos", help="videos per decoding pass (default: cpu 4, cuda 8)"
        ),
        decode_workers: str = typer.Option(
            "0,1,2", "--decode-workers", help="loader worker counts, comma-separated ('' skips decoding)"
        ),
        decode_reps: int = typer.Option(1, "--decode-reps", help="timed decoding passes per worker count"),
        cuda_graphs: bool | None = typer.Option(
            None, "--cuda-graphs/--no-cuda-graphs", help="exact batching replays CUDA graphs (default: on with CUDA)"
        ),
        cudnn_benchmark: bool = typer.Option(
            True, "--cudnn-benchmark/--no-cudnn-benchmark", help="cuDNN autotuning (CUDA)"
        ),
        threads: int | None = typer.Option(None, "--threads", help="torch intra-op threads"),
        profile_ops: int = typer.Option(
            0, "--profile-ops", help="add the top N operators of an exact and a baseline pass"
        ),
        profile_videos: int | None = typer.Option(
            None,
            "--profile-videos",
            help="profile throughput: sample videos profiled (default: cpu 5, cuda 8; the first is the steady state's "
            "warm-up)",
        ),
        profile_batch_size: int | None = typer.Option(
            None,
            "--profile-batch-size",
            help="profile throughput: views per batch (default: the profile's default on the device)",
        ),
        profile_views: int | None = typer.Option(
            None, "--profile-views", help="profile throughput: temporal views per video (default: the model's)"
        ),
        profile_crops: int | None = typer.Option(
            None, "--profile-crops", help="profile throughput: spatial crops, 1 or 3 (default: cpu 1, cuda the model's)"
        ),
        profile_workers: str | None = typer.Option(
            None,
            "--profile-workers",
            help="a profile run per loader worker count, comma-separated (default: cpu 0,1, cuda 0,4; '' skips)",
        ),
        suite: str | None = typer.Option(
            None,
            "--suite",
            help="'gpu': the prepared GPU run (SlowFast 4x16 R50 and X3D-S ATFR, batch 32, fp32 and bf16, a short "
            "profile); --out is then a folder",
        ),
        smoke: bool = typer.Option(False, "--smoke", help="with --suite: the same steps at a tiny size (runs on CPU)"),
        seed: int = typer.Option(0, "--seed", help="seed of the weights and the clips"),
        json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
        out: Path | None = typer.Option(None, "--out", help="also write the JSON result to this file"),
        report: Path | None = typer.Option(
            None, "--report", help="add/replace this run's section in a Markdown report"
        ),
        from_json: Path | None = typer.Option(
            None, "--from-json", help="with --report: write the report from a saved result"
        ),
        quiet: bool = typer.Option(False, "--quiet", help="no progress on stderr"),
    ) -> None:
        """Videos/s of exact vs padded batching vs the backbone without SGS, profiler overhead, GMACs
        look-up vs fvcore trace, and PyAV decoding (medians over timed rounds after warm-up)."""
        from atfr_analysis import bench
        from atfr_analysis.errors import InputError

        cmd = ["atfr"] + sys.argv[1:]
        if suite is not None:
            from atfr_analysis.bench.suite import run_suite

            res = run_suite(suite, device=device, smoke=smoke, out=out, report=report, quiet=quiet, command=cmd)
            for r in res["runs"]:
                typer.echo(bench.format_summary(r))
            for why in res["skipped"]:
                typer.echo(f"skipped: {why}")
            typer.echo(
                f"suite {suite}{' (smoke)' if smoke else ''}: {len(res['runs'])} run(s) in {res['elapsed_s']:.0f} s"
                + (f"; results in {out}" if out else "")
                + (f"; report: {report}" if report else "")
            )
            return
        if smoke:
            raise InputError("--smoke needs --suite")
        if from_json is not None:
            if report is None:
                raise InputError("--from-json needs --report")
            bench.write_report(bench.load_result(from_json), report, " ".join(cmd))
            typer.echo(f"report: {report}")
            return
        cfg = bench.BenchConfig(
            model=model,
            device=device,
            batch_size=batch_size,
            clips=clips,
            crop=crop,
            frames=frames,
            precision=precision,
            checkpoint=checkpoint,
            data=data,
            data_root=str(data_root) if data_root else None,
            reps=reps,
            min_time=min_time,
            warmup=warmup,
            trace_clips=trace_clips,
            check_clips=check_clips,
            decode_videos=decode_videos,
            decode_workers=bench.parse_workers(decode_workers),
            decode_reps=decode_reps,
            cuda_graphs=cuda_graphs,
            cudnn_benchmark=cudnn_benchmark,
            threads=threads,
            profile_ops=profile_ops,
            seed=seed,
            quiet=quiet,
            profile_videos=profile_videos,
            profile_batch_size=profile_batch_size,
            profile_views=profile_views,
            profile_crops=profile_crops,
            profile_workers=None
            if profile_workers is None
            else bench.parse_workers(profile_workers, "--profile-workers"),
        )
        _emit(bench.run_bench(cfg, command=cmd), json_out, out, report)
