"""``atfr export``: a run's video-level predictions in PySlowFast's or mmaction2's result files."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_cmd(
        run: Path = typer.Argument(..., help="run folder written by `atfr profile`"),
        format: str = typer.Option(
            ...,
            "--format",
            help="pyslowfast (test_net's SAVE_RESULTS_PATH pickle), mmaction2 (1.2's tools/test.py --dump) "
            "or mmaction2-0.x (0.x's tools/test.py --out)",
        ),
        out: Path = typer.Option(..., "--out", help="the file to write (e.g. results.pkl)"),
        ensemble: str = typer.Option(
            "sum",
            "--ensemble",
            help="combine a video's views by their softmax sum (mmaction2: mean) or element-wise max",
        ),
        failed: str = typer.Option(
            "error",
            "--failed",
            help="videos without an ok view: error (refuse), zeros (zero scores, as PySlowFast keeps "
            "them) or drop (left out)",
        ),
    ) -> None:
        """Write a run's video-level scores and labels in the file another tool's evaluation reads."""
        from atfr_analysis.analysis.export import EXPORT_FORMATS, FAILED_POLICIES, export_predictions
        from atfr_analysis.analysis.run_analysis import check_ensemble
        from atfr_analysis.errors import InputError
        from atfr_analysis.profile.log import load_run

        if format not in EXPORT_FORMATS:
            raise InputError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
        check_ensemble(ensemble)
        if failed not in FAILED_POLICIES:
            raise InputError(f"--failed must be one of {', '.join(FAILED_POLICIES)}, got {failed!r}")
        res = export_predictions(load_run(run), out, format=format, ensemble=ensemble, failed=failed)
        typer.echo(res.summary())
