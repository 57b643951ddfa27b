"""``atfr profile``: a checkpoint on a video list into a per-view log."""
from __future__ import annotations

import sys
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
        views: Optional[int] = typer.Option(None, "--views", help="temporal clips per video (default: the config's 10)"),
        crops: Optional[int] = typer.Option(None, "--crops", help="spatial crops per clip: 3 or 1 (default 3)"),
        batching: str = typer.Option("exact", "--batching", help="exact (per-clip results) or padded (official)"),
        batch_size: int = typer.Option(8, "--batch-size", help="views per forward pass"),
        workers: int = typer.Option(0, "--workers", help="DataLoader decoding workers"),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda"),
        precision: str = typer.Option("fp32", "--precision", help="fp32, or on CUDA bf16/fp16 (GMACs do not change)"),
        resume: bool = typer.Option(False, "--resume", help="continue an interrupted run in --out"),
        shard: Optional[str] = typer.Option(None, "--shard", help="i/n: profile every n-th video from i (job arrays)"),
        allow_missing: Optional[str] = typer.Option(None, "--allow-missing", help="'sgs': baseline weights into an _atfr model"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    ) -> None:
        """Profile a checkpoint on real videos (PySlowFast multi-view test protocol) into a per-view log."""
        from atfr_analysis.profile.run import profile

        summary = profile(
            checkpoint, model, data, out, data_root=data_root, labels=labels, views=views, crops=crops,
            batching=batching, batch_size=batch_size, workers=workers, device=device, resume=resume,
            shard=shard, allow_missing=allow_missing, quiet=quiet, precision=precision,
            command=["atfr"] + sys.argv[1:],
        )
        for line in summary.lines():
            typer.echo(line)
