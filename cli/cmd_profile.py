"""``atfr profile``: a checkpoint on a video list into a per-view log.

Exit status: 0 when every logged video was profiled (or at most ``--max-failed-fraction`` of
them failed); 2 for bad input (one ``error:`` line, nothing written); 3 when more than
``--max-failed-fraction`` of the logged videos failed; 4 when no video could be profiled; 130
when interrupted (what was profiled is on disk: ``--resume``). With 3 and 4 the summary is printed
and the log stays as written, the failed videos with their reasons.
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("profile")
    def profile_cmd(
        checkpoint: Path = typer.Argument(..., help="PySlowFast .pyth/.pt checkpoint, a state dict, or ours"),
        model: str = typer.Option(..., "--model", help="registry name, e.g. slowfast_4x16_r50_atfr"),
        data: Path = typer.Option(
            ..., "--data", help="PySlowFast list ('path label' per line) or a folder of class folders"
        ),
        out: Path = typer.Option(..., "--out", help="run folder to write (run.json + Parquet parts)"),
        data_root: Path | None = typer.Option(None, "--data-root", help="prefix for the list's relative paths"),
        labels: Path | None = typer.Option(
            None,
            "--labels",
            help='label map: JSON {"name": id} or one name per line; it must name every output of the head, unless '
            "--class-subset says which ones its entries are",
        ),
        class_subset: str | None = typer.Option(
            None,
            "--class-subset",
            help="the head output of each label-map entry, in map order: a comma list (e.g. 0,5,7) or a file of "
            "indices; scores and predictions are then over those outputs only",
        ),
        skip_missing: bool = typer.Option(
            False,
            "--skip-missing",
            help="skip the list's rows whose file is missing (recorded in run.json) instead of refusing the list",
        ),
        views: int | None = typer.Option(
            None, "--views", help="temporal clips per video (default: the model config's, 10 for Kinetics models)"
        ),
        crops: int | None = typer.Option(
            None, "--crops", help="spatial crops per clip: 3 or 1 (default: the model config's)"
        ),
        short_side: int | None = typer.Option(
            None,
            "--short-side",
            help="scale each frame's short side to S (default: the model's protocol: 3 crops: the test crop; 1 crop: "
            "PySlowFast's 1-crop rule, X3D-S 182)",
        ),
        crop: int | None = typer.Option(
            None,
            "--crop",
            help="square crop size C of each view (default: the model's protocol: 3 crops: the test crop; 1 crop: "
            "PySlowFast's 1-crop test size, X3D-S 160); the GMACs follow it",
        ),
        apply_rotation: bool = typer.Option(
            False,
            "--apply-rotation",
            help="turn frames by their rotation metadata (default: as decoded, as PySlowFast; rotated videos are "
            "counted in the summary)",
        ),
        batching: str = typer.Option("exact", "--batching", help="exact (per-clip results) or padded (official)"),
        batch_size: int | None = typer.Option(
            None,
            "--batch-size",
            help="views per forward pass (default: 8 on CUDA, 1 on the CPU, where bench measures batch 1 as fast as "
            "any)",
        ),
        workers: int | None = typer.Option(
            None,
            "--workers",
            help="DataLoader decoding processes (default: on CUDA this rank's cores less one, at most 8; on the CPU 0: "
            "decoding and the model share the cores)",
        ),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda"),
        precision: str = typer.Option("fp32", "--precision", help="fp32, or on CUDA bf16/fp16 (GMACs do not change)"),
        resume: bool = typer.Option(
            False, "--resume", help="continue the run in --out: videos already logged are skipped"
        ),
        retry_failed: bool = typer.Option(
            False, "--retry-failed", help="with --resume: try the videos logged as failed again"
        ),
        shard: str | None = typer.Option(
            None,
            "--shard",
            help="i/n: profile the videos at list positions k with k % n == i (job arrays; torchrun sets it from "
            "RANK/WORLD_SIZE)",
        ),
        allow_missing: str | None = typer.Option(
            None, "--allow-missing", help="'sgs': baseline weights into an _atfr model"
        ),
        allow_nonfinite_weights: bool = typer.Option(
            False,
            "--allow-nonfinite-weights",
            help="load a checkpoint whose weights hold NaN or inf (refused by default), e.g. to inspect a diverged "
            "model; views with non-finite scores are then failed rows",
        ),
        max_failed_fraction: float = typer.Option(
            0.0,
            "--max-failed-fraction",
            help="share of the logged videos allowed to fail (0..1) before the run exits with status 3; a run where "
            "every video failed exits with 4",
        ),
        cross_check: int = typer.Option(
            0,
            "--cross-check",
            help="count the first K signatures met again with fvcore (the reference counter) and record the comparison "
            "in run.json",
        ),
        cuda_graphs: bool = typer.Option(
            True,
            "--cuda-graphs/--no-cuda-graphs",
            help="CUDA: exact batching replays one CUDA graph per signature and group size",
        ),
        cudnn_benchmark: bool = typer.Option(
            True, "--cudnn-benchmark/--no-cudnn-benchmark", help="CUDA: cuDNN autotuning of the convolutions"
        ),
        quiet: bool = typer.Option(
            False, "--quiet", help="no progress display (for logs); the summary is still printed"
        ),
        flush_every: int = typer.Option(
            16, "--flush-every", help="write a part file every N videos (and every 30 s)", hidden=True
        ),
    ) -> None:
        """Profile a checkpoint on real videos (PySlowFast multi-view test protocol) into a per-view log."""
        from atfr_analysis.profile.config import ProfileConfig
        from atfr_analysis.profile.run import run_profile

        cfg = ProfileConfig(
            checkpoint,
            model,
            data,
            out,
            data_root=data_root,
            labels=labels,
            class_subset=class_subset,
            skip_missing=skip_missing,
            views=views,
            crops=crops,
            short_side=short_side,
            crop=crop,
            apply_rotation=apply_rotation,
            batching=batching,
            batch_size=batch_size,
            workers=workers,
            device=device,
            precision=precision,
            resume=resume,
            retry_failed=retry_failed,
            shard=shard,
            allow_missing=allow_missing,
            allow_nonfinite_weights=allow_nonfinite_weights,
            max_failed_fraction=max_failed_fraction,
            cross_check=cross_check,
            cuda_graphs=cuda_graphs,
            cudnn_benchmark=cudnn_benchmark,
            quiet=quiet,
            flush_every=flush_every,
        )
        try:
            summary = run_profile(cfg)
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM: the videos profiled so far are flushed. (Typer turns a
            # KeyboardInterrupt into a *returned* 130 that main() would drop: exit here.)
            typer.echo(
                f"error: interrupted; the videos profiled so far are in {out} (continue with --resume)", err=True
            )
            raise SystemExit(130) from None
        if not (summary.distributed and summary.shard[0] != 0):  # under torchrun, rank 0 prints the summary
            for line in summary.lines():
                typer.echo(line)
            if summary.rotation_warning():
                typer.echo(f"warning: {summary.rotation_warning()}", err=True)
            if summary.verdict():
                typer.echo(f"error: {summary.verdict()}", err=True)
        if summary.exit_code:
            raise SystemExit(summary.exit_code)
