"""One Markdown report of a profiling log: summary, paper-style table, class ranking, per-class
table and figures, with the tables as CSV next to it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atfr_analysis.analysis.aggregate import (
    OVERALL,
    _meta,
    _prepare,
    _video_level,
    bins_layers,
    num_bins,
    per_class,
    run_name,
    views_per_video,
)
from atfr_analysis.analysis.ranking import _check_by, _below, ranking
from atfr_analysis.analysis.tables import accuracy_vs_views, format_paper_table, markdown_table, paper_table, to_csv, to_latex, to_markdown

__all__ = ["write_report", "REPORT_NAME"]

REPORT_NAME = "report.md"


def _f(x: Any, spec: str) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NA:
        return "n/a"
    return format(x, spec)


def _value_spec(by: str) -> str:
    return ".4g" if by == "gmacs" else ".3f"


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
        ("top1", "top-1 %", ".1f"), ("top5", "top-5 %", ".1f"),
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
) -> Path:
    """Write ``out_dir/report.md`` and next to it: ``per_class.csv``, ``ranking.csv``
    (end, rank, class_name, value, ci_low, ci_high, videos, overlaps_other_end),
    ``unranked_classes.csv`` (classes below ``min_videos``), ``videos.csv``,
    ``paper_table.{md,csv,tex}``, ``accuracy_vs_views.csv`` and the figures (PNG):
    ``bins_hist.png`` (runs with SGS layers), ``class_distributions.png``,
    ``gmacs_vs_accuracy.png``, ``gmacs_distribution.png``, ``accuracy_vs_views.png`` and, with a
    baseline, ``delta_vs_reduction.png``. Returns the path of report.md.

    Raises AnalysisError (one line) for an empty log, a log without ok views, an unknown ``by``
    or ``by="bins"`` on a log without bins columns; nothing is written then."""
    from atfr_analysis.analysis import plots

    _check_by(by)
    df = _prepare(log, "log")
    base = _prepare(baseline, "baseline") if baseline is not None else None
    # everything that can fail on the input is computed before anything is written
    rank = ranking(df, by=by, k=k, min_videos=min_videos, n_boot=n_boot, seed=seed)
    unranked = _below(df, min_videos, by)
    pc = per_class(df, baseline=base)
    vids = _video_level(df)
    pt = paper_table([df], baselines=[base] if base is not None else None)
    sweep = accuracy_vs_views(df)
    meta = _meta(df)
    layers = bins_layers(df)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pc.to_csv(out / "per_class.csv", index=False)
    rank.to_csv(out / "ranking.csv", index=False)
    unranked.to_csv(out / "unranked_classes.csv", index=False)
    vids.drop(columns=["scores_sum"]).to_csv(out / "videos.csv", index=False)
    to_markdown(pt, out / "paper_table.md")
    to_csv(pt, out / "paper_table.csv")
    to_latex(pt, out / "paper_table.tex")
    sweep.to_csv(out / "accuracy_vs_views.csv", index=False)

    figs: list[tuple[str, str]] = []
    if layers:
        figs.append(("Active bins per SGS layer", plots.plot_bins_hist(df, out / "bins_hist.png").name))
    figs.append(("Classes at both ends of the ranking",
                 plots.plot_class_distributions(df, out / "class_distributions.png", by=by, k=k,
                                                min_videos=min_videos, n_boot=n_boot, seed=seed, rank=rank).name))
    figs.append(("Per-class cost vs accuracy",
                 plots.plot_gmacs_vs_accuracy(df, out / "gmacs_vs_accuracy.png", table=pc).name))
    figs.append(("Cost per view", plots.plot_gmacs_distribution(df, out / "gmacs_distribution.png").name))
    figs.append(("Accuracy vs views used", plots.plot_accuracy_vs_views(df, out / "accuracy_vs_views.png", baseline=base, sweep=sweep).name))
    if base is not None:
        figs.append(("Accuracy change vs cost reduction per class (against the baseline run)",
                     plots.plot_delta_vs_reduction(df, base, out / "delta_vs_reduction.png", table=pc).name))

    # ------------------------------------------------------------------------- report.md
    name = run_name(df)
    overall = pc[pc["class_name"] == OVERALL].iloc[0]
    row = pt.iloc[-1]
    nv = views_per_video(df)
    L: list[str] = [f"# ATFR analysis: {name}", ""]
    facts = []
    if df.attrs.get("run_dir"):
        facts.append(f"run `{df.attrs['run_dir']}`")
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
    L += ["; ".join(facts) + ".", "", "## Summary", ""]
    n_ok = int((vids["status"] == "ok").sum())
    n_fail = int((vids["status"] != "ok").sum())
    v_fail = int((~df["_ok"]).sum())
    L.append(f"- Videos: {n_ok} ok, {n_fail} failed (no ok view); views: {int(df['_ok'].sum())} ok, {v_fail} failed"
             + (" (failed views are counted here and excluded everywhere else)" if v_fail else "") + ".")
    labelled = int(overall["labelled"])
    if labelled:
        L.append(f"- Top-1 {_f(overall['top1'], '.2f')}%, top-5 {_f(overall['top5'], '.2f')}% "
                 f"(video-level: softmax summed over a video's ok views; {labelled} labelled videos"
                 + (f", {n_ok - labelled} unlabelled not scored" if n_ok - labelled else "") + ").")
    else:
        L.append("- Top-1 / top-5: n/a (no labelled videos).")
    line = (f"- Mean GFLOPs x views: {_f(row['gflops_x_views'], '.4g')} "
            f"(= {_f(row['gflops_per_view'], '.4g')} x {nv}; mean per ok view {_f(overall['gmacs_per_view_mean'], '.4g')})")
    static = meta.get("static_gmacs")
    if layers and isinstance(static, (int, float)) and static > 0 and nv:
        red = 100 * (1 - row["gflops_x_views"] / (static * nv))
        line += f"; static backbone (no SGS, same input): {static:.4g} x {nv} = {static * nv:.4g}; reduction {red:.1f}%"
    L.append(line + ".")
    if base is not None:
        b = pt.iloc[0]
        L.append(f"- Against the baseline run {b['model']}: {_f(b['gflops_x_views'], '.4g')} GFLOPs x views, "
                 f"top-1 {_f(b['top1'], '.2f')}%; reduction {_f(row['reduction_pct'], '.1f')}%, "
                 f"top-1 change {_f(overall.get('top1_delta', np.nan), '+.2f')} points.")
    B = num_bins(df)
    for l in layers:
        frac = f" of B = {B[l]} (fraction kept {overall[f'frac.{l}_mean']:.3f})" if l in B else ""
        L.append(f"- SGS layer `{l}`: mean active bins {_f(overall[f'bins.{l}_mean'], '.2f')}{frac}; "
                 f"median {_f(overall[f'bins.{l}_median'], '.0f')}, p10-p90 "
                 f"{_f(overall[f'bins.{l}_p10'], '.0f')}-{_f(overall[f'bins.{l}_p90'], '.0f')}.")
    if not layers:
        L.append("- No SGS layers in this run (a baseline): every view costs the same; the ranking is by GMACs only.")

    L += ["", "## Paper-style table", "", markdown_table(format_paper_table(pt)), "", pt.attrs["footer"], ""]

    what = rank.attrs.get("metric", by)
    L += [f"## Classes by {what}", "",
          f"The classes with the lowest and the highest {what} (as the poster's "
          f"\"lowest / highest temporal resolution\"; up to {k} per end, the two ends never share a class), among "
          f"{rank.attrs['n_ranked']} classes with at least {min_videos} ok video(s). Value [bootstrap 95% CI over the class's videos, {n_boot} resamples, seed {seed}] "
          f"(n = videos). † = the CI overlaps the CI of a class at the other end, so the two are not clearly separated.",
          "", _ranking_md(rank, by) if len(rank) else "(no class to rank)", ""]
    if len(unranked):
        shown = ", ".join(f"{c} ({v})" for c, v in zip(unranked["class_name"][:30], unranked["videos"][:30]))
        more = f" and {len(unranked) - 30} more" if len(unranked) > 30 else ""
        L += [f"Not ranked (fewer than {min_videos} ok videos; see unranked_classes.csv): {shown}{more}.", ""]

    L += ["## Accuracy vs views used", "",
          "Using only the first n temporal views of each video (all crops), as PySlowFast's multi-clip sweep.", "",
          markdown_table(sweep), ""]

    L += ["## Per class", "",
          "Video-level accuracy; GMACs per view averaged over ok views; GFLOPs x views = mean over the class's "
          "videos of the sum over their ok views. All columns (median, std, p10/p90 per layer) are in per_class.csv.",
          "", _per_class_md(pc, layers), ""]

    L += ["## Figures", ""]
    for title, fname in figs:
        L += [f"### {title}", "", f"![{title}]({fname})", ""]
    L += ["Files: " + ", ".join(f"[{p}]({p})" for p in (
        "per_class.csv", "ranking.csv", "unranked_classes.csv", "videos.csv", "paper_table.csv", "paper_table.tex",
        "accuracy_vs_views.csv")), ""]
    path = out / REPORT_NAME
    path.write_text("\n".join(L), encoding="utf-8")
    return path
