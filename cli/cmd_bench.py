"""``atfr bench``: videos per second of ATFR inference (exact vs padded batching vs the backbone
without SGS), the profiler's overhead, GMACs look-up vs fvcore trace, and decoding throughput.

A thin skin: the options are ``BenchConfig``'s fields (declared there, once) and this command's
own outputs; ``run_bench`` measures, the result is printed and
written (``--json``, ``--out``, ``--report``)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from atfr_cli.derive import config_command


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
    from atfr_analysis.bench.config import BenchConfig

    @config_command(app, "bench", BenchConfig)
    def bench_cmd(
        cfg: dict,
        suite: str | None = typer.Option(
            None,
            "--suite",
            help="'gpu': the prepared GPU run (SlowFast 4x16 R50 and X3D-S ATFR, batch 32, fp32 and bf16, a short "
            "profile); --out is then a folder",
        ),
        smoke: bool = typer.Option(False, "--smoke", help="with --suite: the same steps at a tiny size (runs on CPU)"),
        json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
        out: Path | None = typer.Option(None, "--out", help="also write the JSON result to this file"),
        report: Path | None = typer.Option(
            None, "--report", help="add/replace this run's section in a Markdown report"
        ),
        from_json: Path | None = typer.Option(
            None, "--from-json", help="with --report: write the report from a saved result"
        ),
    ) -> None:
        """Videos/s of exact vs padded batching vs the backbone without SGS, profiler overhead, GMACs
        look-up vs fvcore trace, and PyAV decoding (medians over timed rounds after warm-up)."""
        from atfr_analysis import bench
        from atfr_analysis.errors import InputError

        cmd = ["atfr"] + sys.argv[1:]
        if suite is not None:
            from atfr_analysis.bench.suite import run_suite

            device, quiet = cfg["device"], cfg["quiet"]
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
        _emit(bench.run_bench(bench.BenchConfig(**cfg), command=cmd), json_out, out, report)
