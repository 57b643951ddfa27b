"""``atfr train`` and ``atfr demo``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from atfr_cli.derive import config_command


def register(app: typer.Typer) -> None:
    from atfr_analysis.train.config import TrainConfig

    @config_command(app, "train", TrainConfig)
    def train_cmd(
        cfg: dict,
        out: Path = typer.Option(
            ...,
            "--out",
            help="the final checkpoint (m.pyth: its run folder m.run/ beside it) or a run folder (model.pyth in it)",
        ),
        frames: int | None = typer.Option(None, "--frames", help="clip frames (default: the model's)"),
    ) -> None:
        """Train a model (SGD + momentum, warm-up + cosine, cross-entropy) into a PySlowFast-style checkpoint."""
        from atfr_analysis.models import frames_overrides
        from atfr_analysis.train import TrainConfig, train

        cfg = TrainConfig(**cfg, model_overrides=frames_overrides(cfg["model"], frames))
        r = train(cfg, out, command=["atfr"] + sys.argv[1:])
        if int(os.environ.get("RANK", "0")) != 0:
            return
        typer.echo(
            f"wrote {r.checkpoint}: {r.epochs} epochs, {r.steps} steps, {r.seconds:.0f} s; "
            f"loss {r.first_loss:.3f} -> {r.last_loss:.3f}"
            + (f"; train top-1 {r.train_acc[-1]:.1f}%" if r.train_acc else "")
            + (f"; val top-1 {r.val_acc[-1]:.1f}%" if r.val_acc else "")
            + (f"; skipped {r.failed} undecodable videos" if r.failed else "")
        )

    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("reports/demo"), "--out", help="report folder"),
        cache: Path | None = typer.Option(
            None,
            "--cache",
            help="where the demo's data set and runs live (default: $ATFR_CACHE_DIR, else "
            "$XDG_CACHE_HOME/atfr-analysis or ~/.cache/atfr-analysis)",
        ),
        workers: int = typer.Option(0, "--workers"),
        model_card: Path | None = typer.Option(
            None,
            "--model-card",
            help="also write the shipped checkpoints' model card here, from their records and this run's numbers "
            "(maintainers: atfr_analysis/checkpoints/MODEL_CARD.md)",
        ),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """The main job: the shipped baseline and ATFR checkpoints, profiled on the demo test split and reported."""
        from atfr_analysis.demo import run_demo

        res = run_demo(out=out, cache=cache, workers=workers, quiet=quiet)
        for line in res.lines():
            typer.echo(line)
        if model_card is not None:
            from atfr_analysis.shipped import write_model_card

            typer.echo(f"model card: {write_model_card(model_card, res.numbers)}")
