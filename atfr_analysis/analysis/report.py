"""One Markdown report of a profiling log: summary, paper-style table, class ranking, per-class
table and figures, with the tables as CSV next to it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atfr_analysis.analysis.aggregate import (
    OVERALL,
    _check_ensemble,
    _meta,
    _prepare,
    _video_level,
    bins_layers,
    num_bins,
    per_class,
    run_name,
    views_per_video,
)
from atfr_analysis.analysis.comparable import NOT_COMPARABLE, check_comparable
from atfr_analysis.analysis.confusion import confusion_matrix, most_confused_pairs
from atfr_analysis.analysis.ranking import _check_by, _below, ranking
from atfr_analysis.analysis.tables import (
    accuracy_vs_views,
    accuracy_vs_views_both,
    format_paper_table,
    markdown_table,
    paper_table,
    to_csv,
    to_latex,
    to_markdown,
)

__all__ = ["write_report", "REPORT_NAME"]

REPORT_NAME = "report.md"


def _f(x: Any, spec: str) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NA:
        return "n/a"
    return format(x, spec)


def _value_spec(by: str) -> str:
    return {"gmacs": ".4g", "top1": ".1f"}.get(by, ".3f")


def _shown_path(p: Any) -> str:
    """A run folder as shown in a report: under the home folder as ``~/...`` (so the report reads
    the same for everyone who uses the default cache)."""
    try:
        rel = Path(str(p)).resolve().relative_to(Path.home().resolve())
        return str(Path("~") / rel)
    except (ValueError, OSError, RuntimeError):
        return str(p)


def _ranking_md(rank: pd.DataFrame, by: str) -> str:
    spec = _value_spec(by)
    low = rank[rank["end"] == "lowest"].reset_index(drop=True)
    high = rank[rank["end"] == "highest"].reset_index(drop=True)
    n = max(len(low), len(high))

    def side(t: pd.DataFrame, i: int) -> tuple[str, str]:
        if i >= len(t):
            return "", ""
        r = t.iloc[i]
        name = str(r["class_name"]) + (" †" if r["overlaps_other_end"] else "")
        return name, f"{r['value']:{spec}} [{r['ci_low']:{spec}}, {r['ci_high']:{spec}}] (n={r['videos']})"

    rows = []
    for i in range(n):
        a, av = side(low, i)
        b, bv = side(high, i)
        rows.append({"rank": i + 1, "lowest": a, "value [95% CI]": av, "highest": b, "value [95% CI] ": bv})
    table = pd.DataFrame(rows, columns=["rank", "lowest", "value [95% CI]", "highest", "value [95% CI] "])
    return markdown_table(table)


def _per_class_md(pc: pd.DataFrame, layers: list[str]) -> str:
    cols: list[tuple[str, str, str]] = [
        ("class_name", "class", "s"), ("videos", "videos", "d"), ("failures", "failed views", "d"),
        ("top1", "top-1 %", ".1f"), ("top5", "top-5 %", ".1f"), ("mean_class_acc", "mean class %", ".1f"),
        ("gmacs_per_view_mean", "GMACs/view", ".4g"), ("gmacs_x_views_mean", "GFLOPs x views", ".4g"),
        ("reduction_pct", "vs static %", ".1f"),
    ]
    for l in layers:
        cols.append((f"bins.{l}_mean", f"bins {l}", ".2f"))
    cols += [("frac_kept_mean", "frac. kept", ".3f"), ("top1_delta", "top-1 Δ vs base", "+.1f"),
             ("gmacs_reduction_vs_baseline_pct", "GMACs ↓ vs base %", ".1f")]
    cols = [c for c in cols if c[0] in pc.columns]
    disp = pd.DataFrame({head: [(_f(v, spec) if spec != "s" else str(v)) for v in pc[col]] for col, head, spec in cols})
    disp.iloc[-1, 0] = f"**{OVERALL}**"
    if "mean class %" in disp.columns:  # a class's mean class accuracy is its top-1: shown once, overall
        disp.loc[disp.index[:-1], "mean class %"] = ""
    return markdown_table(disp)


def _tradeoff_md(t: pd.DataFrame, lead: list[tuple[str, str, str]]) -> str:
    cols = lead + [("videos", "videos", "d"), ("bins_kept", "bins kept", ".3f"), ("top1_baseline", "top-1 base %", ".1f"),
                   ("top1", "top-1 ATFR %", ".1f"), ("top1_delta", "Δ points", "+.1f"), ("lost", "lost", "d"),
                   ("gained", "gained", "d")]
    if "fraction" not in t.attrs.get("metric", "fraction"):
        cols[len(lead) + 1] = ("bins_kept", "mean bins", ".2f")
    disp = pd.DataFrame({h: [(_f(v, sp) if sp != "s" else str(v)) for v in t[c]] for c, h, sp in cols})
    return markdown_table(disp)


def write_report(
    log: pd.DataFrame,
    out_dir: str | Path,
    baseline: pd.DataFrame | None = None,
    by: str = "gmacs",
    k: int = 5,
    min_videos: int = 1,
    n_boot: int = 1000,
    seed: int = 0,
    ensemble: str = "sum",
    confusion_classes: list[str] | None = None,
    confusion_top: int = 20,
    allow_incomparable: bool = False,
) -> Path:
    """Write ``out_dir/report.md`` and next to it: ``per_class.csv``, ``ranking.csv``
    (end, rank, class_name, value, ci_low, ci_high, videos, overlaps_other_end),
    ``ranking_top1.csv`` (the same by top-1, when ``by`` is not already "top1"),
    ``unranked_classes.csv`` (classes below ``min_videos``), ``videos.csv``,
    ``paper_table.{md,csv,tex}``, ``accuracy_vs_views.csv`` (both ensembles),
    ``confusion_matrix.csv`` (counts, true class x predicted class), ``most_confused_pairs.csv``
    (every pair of different classes with a video, most videos first)
    and the figures (PNG): ``bins_hist.png`` (runs with SGS layers), ``class_distributions.png``,
    ``gmacs_vs_accuracy.png``, ``gmacs_distribution.png``, ``accuracy_vs_views.png``,
    ``confusion.png`` (row-normalised; at most ``confusion_top`` classes, the most confused, or
    ``confusion_classes``) and, with a baseline, ``delta_vs_reduction.png``; with a baseline and a
    run with SGS layers also ``class_tradeoff.csv``, ``accuracy_by_bins.csv`` and
    ``accuracy_by_bins.png`` (accuracy where SGS keeps few bins). Returns the path of report.md.

    ``ensemble``: how a video's views are combined, "sum" of the softmax (PySlowFast's default)
    or element-wise "max". The same inputs give byte-identical files.

    Raises AnalysisError (one line) for an empty log, a log without ok views, an unknown ``by``
    or ``ensemble``, ``by="bins"`` on a log without bins columns, unknown ``confusion_classes``,
    or a baseline that is not comparable (other videos, classes or views, or the same model;
    :class:`IncomparableRunsError`, unless ``allow_incomparable``: the report then says so at the
    top); nothing is written then."""
    from atfr_analysis.analysis import plots
    from atfr_analysis.analysis.compare import accuracy_by_bins, class_tradeoff
    from atfr_analysis.analysis.confusion import select_classes

    _check_by(by)
    _check_ensemble(ensemble)
    df = _prepare(log, "log")
    base = None
    diffs: list[str] = []
    if baseline is not None:
        base = df if baseline is log else _prepare(baseline, "baseline")
        diffs = check_comparable(df, base, "baseline", allow=allow_incomparable)
    # everything that can fail on the input is computed before anything is written
    rank = ranking(df, by=by, k=k, min_videos=min_videos, n_boot=n_boot, seed=seed, ensemble=ensemble)
    unranked = _below(df, min_videos, by, ensemble)
    pc = per_class(df, baseline=base, ensemble=ensemble, allow_incomparable=True)
    vids = _video_level(df, ensemble)
    pt = paper_table([df], baselines=[base] if base is not None else None, ensemble=ensemble, allow_incomparable=True)
    sweep = accuracy_vs_views(df, ensemble)
    sweep_both = accuracy_vs_views_both(df)
    cm = confusion_matrix(df, ensemble)
    pairs = most_confused_pairs(cm, n=None)
    select_classes(cm, confusion_classes, confusion_top)  # unknown names fail here, before writing
    labelled_any = bool(vids["top1"].notna().any())
    rank_top1 = None
    if by != "top1" and labelled_any:
        rank_top1 = ranking(df, by="top1", k=k, min_videos=min_videos, n_boot=n_boot, seed=seed, ensemble=ensemble)
    meta = _meta(df)
    layers = bins_layers(df)
    tradeoff = by_bins = None
    if base is not None and layers:
        tradeoff = class_tradeoff(df, base, ensemble, allow_incomparable=True)
        by_bins = accuracy_by_bins(df, base, groups=5, ensemble=ensemble, allow_incomparable=True)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pc.to_csv(out / "per_class.csv", index=False)
    rank.to_csv(out / "ranking.csv", index=False)
    if rank_top1 is not None:
        rank_top1.to_csv(out / "ranking_top1.csv", index=False)
    unranked.to_csv(out / "unranked_classes.csv", index=False)
    vids.drop(columns=[c for c in vids.columns if c.startswith("scores_")]).to_csv(out / "videos.csv", index=False)
    to_markdown(pt, out / "paper_table.md")
    to_csv(pt, out / "paper_table.csv")
    to_latex(pt, out / "paper_table.tex")
    sweep_both.to_csv(out / "accuracy_vs_views.csv", index=False)
    cm.to_csv(out / "confusion_matrix.csv")
    pairs.to_csv(out / "most_confused_pairs.csv", index=False)
    if tradeoff is not None:
        tradeoff.to_csv(out / "class_tradeoff.csv", index=False)
        by_bins.to_csv(out / "accuracy_by_bins.csv", index=False)

    figs: list[tuple[str, str]] = []
    if layers:
        figs.append(("Active bins per SGS layer", plots.plot_bins_hist(df, out / "bins_hist.png").name))
    figs.append(("Classes at both ends of the ranking",
                 plots.plot_class_distributions(df, out / "class_distributions.png", by=by, k=k,
                                                min_videos=min_videos, n_boot=n_boot, seed=seed, rank=rank).name))
    figs.append(("Per-class cost vs accuracy",
                 plots.plot_gmacs_vs_accuracy(df, out / "gmacs_vs_accuracy.png", table=pc).name))
    figs.append(("Cost per view", plots.plot_gmacs_distribution(df, out / "gmacs_distribution.png").name))
    figs.append(("Accuracy vs views used", plots.plot_accuracy_vs_views(df, out / "accuracy_vs_views.png", baseline=base,
                                                                         sweep=sweep, ensemble=ensemble).name))
    if cm.attrs.get("videos"):
        figs.append(("Confusion matrix (row-normalised)",
                     plots.plot_confusion(df, out / "confusion.png", classes=confusion_classes, top=confusion_top,
                                          ensemble=ensemble, matrix=cm).name))
    if base is not None:
        figs.append(("Accuracy change vs cost reduction per class (against the baseline run)",
                     plots.plot_delta_vs_reduction(df, base, out / "delta_vs_reduction.png", table=pc).name))
    if by_bins is not None and len(by_bins):
        figs.append(("Accuracy where SGS keeps few bins (against the baseline run, same videos)",
                     plots.plot_accuracy_by_bins(by_bins, out / "accuracy_by_bins.png", run=run_name(df),
                                                 baseline=run_name(base, "baseline")).name))

    # ------------------------------------------------------------------------- report.md
    name = run_name(df)
    overall = pc[pc["class_name"] == OVERALL].iloc[0]
    row = pt.iloc[-1]
    nv = views_per_video(df)
    how = ("softmax summed over a video's ok views (PySlowFast's default)" if ensemble == "sum"
           else "element-wise maximum of the softmax over a video's ok views (PySlowFast's ENSEMBLE_METHOD: max)")
    L: list[str] = [f"# ATFR analysis: {name}", ""]
    if diffs:
        L += [f"> **{NOT_COMPARABLE}:** the baseline run {run_name(base, 'baseline')} differs from this run: "
              + "; ".join(diffs) + ". Every comparison with it below (accuracy change, reduction, lost/gained videos) "
              "compares different things; it was made with --allow-incomparable.", ""]
    facts = []
    if df.attrs.get("run_dir"):
        facts.append(f"run `{_shown_path(df.attrs['run_dir'])}`")
    if isinstance(meta.get("params"), (int, float)):
        facts.append(f"{meta['params'] / 1e6:.2f}M params")
    if meta.get("frames") is not None or meta.get("crop") is not None:
        fr = "+".join(map(str, meta["frames"])) if isinstance(meta.get("frames"), (list, tuple)) else meta.get("frames", "?")
        facts.append(f"input {fr} frames x {meta.get('crop', '?')}² (crop counted)")
    if meta.get("views") is not None and meta.get("crops") is not None:
        facts.append(f"{meta['views']} temporal x {meta['crops']} spatial views")
    if meta.get("batching"):
        facts.append(f"batching {meta['batching']}")
    facts.append(f"convention {meta.get('convention', 'conv_fc')}")
    facts.append(f"views combined by {ensemble}")
    L += ["; ".join(facts) + ".", "", "## Summary", ""]
    n_ok = int((vids["status"] == "ok").sum())
    n_fail = int((vids["status"] != "ok").sum())
    v_fail = int((~df["_ok"]).sum())
    L.append(f"- Videos: {n_ok} ok, {n_fail} failed (no ok view); views: {int(df['_ok'].sum())} ok, {v_fail} failed"
             + (" (failed views are counted here and excluded everywhere else)" if v_fail else "") + ".")
    labelled = int(overall["labelled"])
    if labelled:
        n_cls = int((pc.iloc[:-1]["labelled"] > 0).sum())
        L.append(f"- Top-1 {_f(overall['top1'], '.2f')}%, top-5 {_f(overall['top5'], '.2f')}%, "
                 f"mean class accuracy {_f(overall['mean_class_acc'], '.2f')}% (mean of the top-1 of {n_cls} classes) "
                 f"(video-level: {how}; {labelled} labelled videos"
                 + (f", {n_ok - labelled} unlabelled not scored" if n_ok - labelled else "") + ").")
    else:
        L.append("- Top-1 / top-5 / mean class accuracy: n/a (no labelled videos).")
    line = (f"- Mean GFLOPs x views: {_f(row['gflops_x_views'], '.4g')} "
            f"(= {_f(row['gflops_per_view'], '.4g')} x {nv}; mean per ok view {_f(overall['gmacs_per_view_mean'], '.4g')})")
    static = meta.get("static_gmacs")
    if layers and isinstance(static, (int, float)) and static > 0 and nv:
        red = 100 * (1 - row["gflops_x_views"] / (static * nv))
        line += f"; static backbone (no SGS, same input): {static:.4g} x {nv} = {static * nv:.4g}; reduction {red:.1f}%"
    L.append(line + ".")
    if base is not None:
        b = pt.iloc[0]
        L.append(f"- Against the baseline run {b['model']}" + (f" ({NOT_COMPARABLE})" if diffs else "")
                 + f": {_f(b['gflops_x_views'], '.4g')} GFLOPs x views, "
                 f"top-1 {_f(b['top1'], '.2f')}%, mean class {_f(b['mean_class_acc'], '.2f')}%; "
                 f"reduction {_f(row['reduction_pct'], '.1f')}%, "
                 f"top-1 change {_f(overall.get('top1_delta', np.nan), '+.2f')} points, "
                 f"mean class change {_f(overall.get('mean_class_acc_delta', np.nan), '+.2f')} points.")
    B = num_bins(df)
    for l in layers:
        frac = f" of B = {B[l]} (fraction kept {overall[f'frac.{l}_mean']:.3f})" if l in B else ""
        L.append(f"- SGS layer `{l}`: mean active bins {_f(overall[f'bins.{l}_mean'], '.2f')}{frac}; "
                 f"median {_f(overall[f'bins.{l}_median'], '.0f')}, p10-p90 "
                 f"{_f(overall[f'bins.{l}_p10'], '.0f')}-{_f(overall[f'bins.{l}_p90'], '.0f')}.")
    if not layers:
        L.append("- No SGS layers in this run (a baseline): every view costs the same; the ranking is by GMACs only.")

    L += ["", "## Paper-style table", "", markdown_table(format_paper_table(pt)), "", pt.attrs["footer"], ""]

    def ranking_section(r: pd.DataFrame, b: str, csv: str) -> list[str]:
        what = r.attrs.get("metric", b)
        return [f"## Classes by {what}", "",
                f"The classes with the lowest and the highest {what}"
                + (" (as the poster's \"lowest / highest temporal resolution\")" if b != "top1" else "")
                + f"; up to {k} per end, the two ends never share a class, among "
                f"{r.attrs['n_ranked']} classes with at least {min_videos} ok "
                + ("labelled " if b == "top1" else "") + f"video(s). Value [bootstrap 95% CI over the class's videos, "
                f"{n_boot} resamples, seed {seed}] (n = videos). † = the CI overlaps the CI of a class at the other end, "
                f"so the two are not clearly separated. All of it: [{csv}]({csv}).",
                "", _ranking_md(r, b) if len(r) else "(no class to rank)", ""]

    L += ranking_section(rank, by, "ranking.csv")
    if len(unranked):
        shown = ", ".join(f"{c} ({v})" for c, v in zip(unranked["class_name"][:30], unranked["videos"][:30]))
        more = f" and {len(unranked) - 30} more" if len(unranked) > 30 else ""
        L += [f"Not ranked (fewer than {min_videos} ok videos; see unranked_classes.csv): {shown}{more}.", ""]
    if rank_top1 is not None:
        L += ranking_section(rank_top1, "top1", "ranking_top1.csv")

    if tradeoff is not None:
        cls = tradeoff.iloc[:-1]
        n_show = min(len(cls), k)
        metric = tradeoff.attrs.get("metric", "bins kept")
        rho = tradeoff.attrs.get("spearman", np.nan)
        ov = tradeoff.iloc[-1]
        L += ["## Where SGS keeps few bins: accuracy against the baseline", "",
              f"The {int(ov['videos'])} labelled videos ok in both runs, paired by path: bins kept = {metric} in this "
              f"run; lost = videos the baseline gets right and this run wrong, gained = the reverse "
              f"(overall {int(ov['lost'])} lost, {int(ov['gained'])} gained, top-1 change {_f(ov['top1_delta'], '+.1f')} points). "
              f"Rank correlation over the classes of bins kept and top-1 change: {_f(rho, '+.2f')} "
              "(positive: classes that keep fewer bins lose more). "
              "All classes: [class_tradeoff.csv](class_tradeoff.csv).", "",
              f"The {n_show} classes that keep the fewest bins:", "",
              _tradeoff_md(cls.head(n_show), [("class_name", "class", "s")]), "",
              "Videos in groups of about equal size by the bins they kept ([accuracy_by_bins.csv](accuracy_by_bins.csv)):", "",
              _tradeoff_md(by_bins.assign(range=[f"{a:.3g}-{b:.3g}" for a, b in zip(by_bins["bins_kept_min"], by_bins["bins_kept_max"])]),
                           [("group", "group", "d"), ("range", "range", "s")]) if len(by_bins) else "(no paired videos)", ""]

    if cm.attrs.get("videos"):
        shown = pairs.head(10)
        L += ["## Most confused classes", "",
              f"Video-level predictions of the {cm.attrs['videos']} labelled ok videos (views combined by {ensemble}). "
              "The pairs (true class, predicted class) with the most videos; share = of the true class's videos. "
              "Counts of every pair: [confusion_matrix.csv](confusion_matrix.csv) (rows: true class, columns: predicted); "
              "the pairs: [most_confused_pairs.csv](most_confused_pairs.csv).", ""]
        if len(shown):
            disp = pd.DataFrame({"true class": shown["true_class"], "predicted as": shown["predicted"],
                                 "videos": shown["videos"], "of": shown["true_videos"],
                                 "share %": [f"{x:.1f}" for x in shown["share_pct"]]})
            L += [markdown_table(disp), ""]
        else:
            L += ["(no video is predicted as another class)", ""]

    L += ["## Accuracy vs views used", "",
          "Using only the first n temporal views of each video (all crops), as PySlowFast's multi-clip sweep; "
          "the views combined by the sum of their softmax (`_sum`) or its element-wise maximum (`_max`).", "",
          markdown_table(sweep_both), ""]

    L += ["## Per class", "",
          "Video-level accuracy; GMACs per view averaged over ok views; GFLOPs x views = mean over the class's "
          "videos of the sum over their ok views. All columns (median, std, p10/p90 per layer) are in per_class.csv.",
          "", _per_class_md(pc, layers), ""]

    L += ["## Figures", ""]
    for title, fname in figs:
        L += [f"### {title}", "", f"![{title}]({fname})", ""]
    files = ["per_class.csv", "ranking.csv"] + (["ranking_top1.csv"] if rank_top1 is not None else []) + [
        "unranked_classes.csv", "videos.csv", "paper_table.csv", "paper_table.tex", "accuracy_vs_views.csv",
        "confusion_matrix.csv", "most_confused_pairs.csv"] + (["class_tradeoff.csv", "accuracy_by_bins.csv"] if tradeoff is not None else [])
    L += ["Files: " + ", ".join(f"[{p}]({p})" for p in files), ""]
    path = out / REPORT_NAME
    path.write_text("\n".join(L), encoding="utf-8")
    return path
