"""``atfr report`` and ``atfr table``: pandas over profiling logs (no model needed)."""

from __future__ import annotations

from pathlib import Path

import typer

ENSEMBLE_HELP = (
    "combine a video's views by the sum of their softmax (sum, PySlowFast's default) or its element-wise maximum (max)"
)
ALLOW_HELP = (
    "compare runs that cover other videos, classes or views (or the same model): "
    "the output then says it is not comparable"
)
INCOMPLETE_HELP = (
    "report a run that has not logged every video of its list (a profile still writing, or "
    "interrupted), marked INCOMPLETE; refused without it"
)


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(
        run: Path = typer.Argument(..., help="run folder written by `atfr profile`"),
        out: Path = typer.Option(..., "--out", help="folder for report.md, CSVs and PNGs"),
        baseline: Path | None = typer.Option(
            None, "--baseline", help="the matching baseline run (accuracy change per class)"
        ),
        by: str = typer.Option(
            "gmacs",
            "--by",
            help="rank classes by mean GMACs per view (gmacs), fraction of bins kept (bins) or top-1 (top1)",
        ),
        k: int = typer.Option(5, "--k", help="classes at each end of the ranking"),
        min_videos: int = typer.Option(
            1, "--min-videos", help="classes with fewer ok videos are listed apart, not ranked"
        ),
        n_boot: int = typer.Option(1000, "--boot", help="bootstrap resamples for the confidence intervals"),
        seed: int = typer.Option(0, "--seed", help="bootstrap seed"),
        ensemble: str = typer.Option("sum", "--ensemble", help=ENSEMBLE_HELP),
        confusion_top: int = typer.Option(
            20, "--confusion-top", help="the confusion figure shows at most this many classes (the most confused)"
        ),
        confusion_classes: str | None = typer.Option(
            None,
            "--confusion-classes",
            help="the classes the confusion figure shows instead: names separated by commas",
        ),
        allow_incomparable: bool = typer.Option(False, "--allow-incomparable", help=ALLOW_HELP),
        allow_incomplete: bool = typer.Option(False, "--allow-incomplete", help=INCOMPLETE_HELP),
    ) -> None:
        """Per-class temporal-resolution report of a run: tables, ranking with CIs, confusion, plots."""
        from atfr_analysis.analysis import RankingSpec, ReportConfig, RunAnalysis, make_report
        from atfr_analysis.analysis.comparable import differences
        from atfr_analysis.errors import InputError
        from atfr_analysis.profile.log import load_run

        if min_videos < 1 or n_boot < 1:  # the library accepts 0 for both (no CI, every class ranked)
            raise InputError("--min-videos and --boot must be >= 1")
        classes = [c.strip() for c in confusion_classes.split(",") if c.strip()] if confusion_classes else None
        cfg = ReportConfig(
            out,
            RankingSpec(by, k, min_videos, n_boot, seed, ensemble),
            classes,
            confusion_top,
            allow_incomparable,
            allow_incomplete,
        )
        log = RunAnalysis(load_run(run), "log")
        base = RunAnalysis(load_run(baseline), "baseline") if baseline else None
        path = make_report(log, cfg, baseline=base)
        for a in (log, base):
            if a is not None and a.incomplete_note():
                typer.echo(f"warning: {a.name}: {a.incomplete_note()} (the report says so)", err=True)
            if a is not None and a.nonfinite_note():
                typer.echo(f"warning: {a.name}: {a.nonfinite_note()} (the report says so)", err=True)
        diffs = differences(log.views, base.views, "baseline") if base is not None and allow_incomparable else []
        if diffs:
            typer.echo("warning: NOT COMPARABLE with the baseline (the report says so): " + "; ".join(diffs), err=True)
        typer.echo(f"wrote {path} (and CSVs, PNGs in {out})")

    @app.command("table")
    def table_cmd(
        runs: list[Path] = typer.Argument(..., help="run folders (baselines and ATFR runs)"),
        baseline: list[Path] | None = typer.Option(
            None,
            "--baseline",
            help="baseline run of each ATFR run, in order (repeat the option); default: the static backbone cost",
        ),
        out: Path | None = typer.Option(
            None, "--out", help="write paper_table.{md,csv,tex} (and accuracy_vs_views.csv) here"
        ),
        ensemble: str = typer.Option("sum", "--ensemble", help=ENSEMBLE_HELP),
        allow_incomparable: bool = typer.Option(False, "--allow-incomparable", help=ALLOW_HELP),
        allow_incomplete: bool = typer.Option(False, "--allow-incomplete", help=INCOMPLETE_HELP),
    ) -> None:
        """The paper's table over runs: model | GFLOPs x views | top-1 | top-5 | mean class | params,
        with reductions."""
        from atfr_analysis.analysis import INCOMPLETE, RunAnalysis, accuracy_vs_views, to_markdown, write_paper_table
        from atfr_analysis.analysis.tables import TableConfig, markdown_table
        from atfr_analysis.errors import InputError
        from atfr_analysis.profile.log import load_run

        cfg = TableConfig(ensemble, allow_incomparable, allow_incomplete, out)
        if baseline and len(baseline) != len(runs):
            raise InputError(
                f"--baseline given {len(baseline)} time(s) for {len(runs)} run(s): give one per run, in order"
            )
        logs = [RunAnalysis(load_run(r), f"runs[{i}]") for i, r in enumerate(runs)]
        bases = [RunAnalysis(load_run(b), "baseline") for b in baseline] if baseline else None
        t = cfg.table(logs, bases)
        if t.attrs.get("not_comparable"):
            typer.echo(
                "warning: NOT COMPARABLE rows (the table says so): "
                + "; ".join(f"{m}: " + "; ".join(d) for m, d in t.attrs["not_comparable"].items()),
                err=True,
            )
        for note in t.attrs.get("notes", []):
            typer.echo(f"warning: {note} (the table says so)", err=True)
        typer.echo(to_markdown(t))
        for r, log in zip(runs, logs):
            sweep = accuracy_vs_views(log, cfg.ensemble)
            if not log.complete:  # every output of an unfinished run says so, the CSV in a column
                sweep.insert(0, "status", INCOMPLETE)
            mark = f" ({INCOMPLETE}: {log.videos_logged} of {log.videos_total} videos)" if not log.complete else ""
            typer.echo(f"\naccuracy vs views used ({ensemble} over views): {r}{mark}")
            typer.echo(markdown_table(sweep))
            if cfg.out_dir:
                cfg.out_dir.mkdir(parents=True, exist_ok=True)
                sweep.to_csv(cfg.out_dir / f"accuracy_vs_views_{Path(r).name}.csv", index=False)
        if cfg.out_dir:
            paths = write_paper_table(t, cfg.out_dir)
            typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))
