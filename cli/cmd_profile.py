"""``atfr profile``: a checkpoint on a video list into a per-view log."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("profile")
    def profile_cmd(
        checkpoint: Path = typer.Argument(..., help="PySlowFast .pyth/.pt checkpoint, a state dict, or ours"),
        model: str = typer.Option(..., "--model", help="registry name, e.g. slowfast_4x16_r50_atfr"),
        data: Path = typer.Option(..., "--data", help="PySlowFast list ('path label' per line) or a folder of class folders"),
        out: Path = typer.Option(..., "--out", help="run folder to write (run.json + Parquet parts)"),
        data_root: Optional[Path] = typer.Option(None, "--data-root", help="prefix for the list's relative paths"),
        labels: Optional[Path] = typer.Option(None, "--labels", help='label map: JSON {"name": id} or one name per line'),
        views: Optional[int] = typer.Option(None, "--views", help="temporal clips per video (default: the model config's, 10 for Kinetics models)"),
        crops: Optional[int] = typer.Option(None, "--crops", help="spatial crops per clip: 3 or 1 (default: the model config's)"),
        batching: str = typer.Option("exact", "--batching", help="exact (per-clip results) or padded (official)"),
        batch_size: int = typer.Option(8, "--batch-size", help="views per forward pass"),
        workers: int = typer.Option(0, "--workers", help="DataLoader decoding workers"),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda"),
        precision: str = typer.Option("fp32", "--precision", help="fp32, or on CUDA bf16/fp16 (GMACs do not change)"),
        resume: bool = typer.Option(False, "--resume", help="continue the run in --out: videos already logged are skipped"),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="with --resume: try the videos logged as failed again"),
        shard: Optional[str] = typer.Option(None, "--shard", help="i/n: profile the videos at list positions k with k % n == i (job arrays; torchrun sets it from RANK/WORLD_SIZE)"),
        allow_missing: Optional[str] = typer.Option(None, "--allow-missing", help="'sgs': baseline weights into an _atfr model"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress display (for logs); the summary is still printed"),
        flush_every: int = typer.Option(16, "--flush-every", help="write a part file every N videos (and every 30 s)", hidden=True),
    ) -> None:
        """Profile a checkpoint on real videos (PySlowFast multi-view test protocol) into a per-view log."""
        from atfr_analysis.profile.run import _command, profile

        opts = dict(
            data_root=data_root, labels=labels, views=views, crops=crops, batching=batching, batch_size=batch_size,
            workers=workers, device=device, resume=resume, retry_failed=retry_failed, shard=shard, allow_missing=allow_missing, quiet=quiet,
        )
        command = _command(checkpoint, model, data, out, **opts, precision=None if precision == "fp32" else precision)
        try:
            summary = profile(
                checkpoint, model, data, out, precision=precision, flush_every=flush_every, command=command, **opts
            )
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM: the videos profiled so far are flushed. (Typer turns a
            # KeyboardInterrupt into a *returned* 130 that main() would drop: exit here.)
            typer.echo(f"error: interrupted; the videos profiled so far are in {out} (continue with --resume)", err=True)
            raise SystemExit(130) from None
        if summary.distributed and summary.shard[0] != 0:
            return  # under torchrun, rank 0 prints the run's summary
        for line in summary.lines():
            typer.echo(line)
