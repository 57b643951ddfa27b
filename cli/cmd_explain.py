"""``atfr explain``: what Similarity Guided Sampling does to one video (a figure and a JSON)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain_cmd(
        video: Path | None = typer.Argument(None, help="the video to explain (not with --demo)"),
        checkpoint: Path | None = typer.Option(None, "--checkpoint", help="checkpoint of an _atfr model (.pyth)"),
        model: str | None = typer.Option(
            None, "--model", help="registry name of the checkpoint's model (an _atfr one)"
        ),
        view: int | None = typer.Option(
            None, "--view", help="the view drawn in detail (default 0; every view is in the JSON)"
        ),
        views: int | None = typer.Option(None, "--views", help="temporal views (default: the model's test protocol)"),
        crops: int | None = typer.Option(None, "--crops", help="spatial crops, 1 or 3 (default: the model's)"),
        out: Path | None = typer.Option(
            None, "--out", help="output stem: writes OUT.json and OUT.png (default: explain_<video name>)"
        ),
        allow_missing: str | None = typer.Option(
            None, "--allow-missing", help="'sgs': the checkpoint may lack the SGS parameters"
        ),
        allow_nonfinite_weights: bool = typer.Option(
            False,
            "--allow-nonfinite-weights",
            help="load a checkpoint whose weights hold NaN or inf (refused by default), e.g. to see where a diverged "
            "model breaks",
        ),
        demo: bool = typer.Option(
            False, "--demo", help="explain the demo's still, slow_4x and normal clips into --out (default reports/demo)"
        ),
    ) -> None:
        """Per view and SGS layer: each frame's distance, its bin, the active bins B', the view's GMACs."""
        from atfr_analysis.analysis.explain import ExplainConfig, run_explain
        from atfr_analysis.demo import write_demo_explains
        from atfr_analysis.errors import InputError

        if demo:
            if video is not None or checkpoint is not None or model is not None:
                raise InputError("--demo takes no video, --checkpoint or --model (it uses the shipped ones)")
            for p in write_demo_explains(out or Path("reports/demo")):
                typer.echo(f"wrote {p}")
            return
        if video is None or checkpoint is None or model is None:
            raise InputError("explain needs a VIDEO, --checkpoint and --model (or --demo)")
        cfg = ExplainConfig(
            checkpoint,
            model,
            video,
            view=view,
            views=views,
            crops=crops,
            allow_missing=allow_missing,
            allow_nonfinite_weights=allow_nonfinite_weights,
        )
        res, j, p = run_explain(cfg, out or Path(f"explain_{video.stem}"))
        d = res["views"][res["detail_view"]]
        for lay in d["layers"]:
            bins = " ".join("-" if s["bin"] is None else str(s["bin"]) for s in lay["steps"])
            typer.echo(
                f"view {d['view']} {lay['name']}: B' = {lay['active_bins']} of {lay['num_bins']}; bin per step: {bins}"
            )
        typer.echo(
            f"view {d['view']}: {d['gmacs']:.4f} GMACs ({res['gmacs_all_bins']:.4f} at all bins); {res['num_views']} "
            f"views in the JSON"
        )
        typer.echo(f"wrote {j} and {p}")
