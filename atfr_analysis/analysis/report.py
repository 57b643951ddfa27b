"""One Markdown report of a profiling log: summary, paper-style table, class ranking, per-class
table and figures, with the tables as CSV next to it.

The report is a list of sections (:data:`SECTIONS`). Each section is a function of the report's
data (:class:`ReportData`: the run's :class:`RunAnalysis`, its baseline's, and what every section
shares, computed once before anything is written) returning a :class:`Section`: its Markdown,
the files it writes and the figures it draws. A new section is one more function in that list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atfr_analysis.analysis.aggregate import OVERALL, per_class, run_name
from atfr_analysis.analysis.common import AnalysisError
from atfr_analysis.analysis.comparable import NOT_COMPARABLE, check_comparable
from atfr_analysis.analysis.confusion import confusion_matrix, most_confused_pairs, select_classes
from atfr_analysis.analysis.ranking import RankingSpec, below_min_videos, rank_classes
from atfr_analysis.analysis.run_analysis import INCOMPLETE, RunAnalysis, frac_column
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
from atfr_analysis.analysis.tradeoff import accuracy_by_bins, class_tradeoff
from atfr_analysis.profile.schema import bins_column

__all__ = ["write_report", "make_report", "ReportConfig", "ReportData", "Section", "SECTIONS", "REPORT_NAME"]

REPORT_NAME = "report.md"
#: the order of the "Files:" line (the files a run's report writes, among these)
LISTED_FILES = (
    "per_class.csv",
    "ranking.csv",
    "ranking_top1.csv",
    "unranked_classes.csv",
    "videos.csv",
    "paper_table.csv",
    "paper_table.tex",
    "accuracy_vs_views.csv",
    "confusion_matrix.csv",
    "most_confused_pairs.csv",
    "class_tradeoff.csv",
    "accuracy_by_bins.csv",
)
#: the order of the figures
FIGURES = (
    "bins_hist.png",
    "class_distributions.png",
    "gmacs_vs_accuracy.png",
    "gmacs_distribution.png",
    "accuracy_vs_views.png",
    "confusion.png",
    "delta_vs_reduction.png",
    "accuracy_by_bins.png",
)


@dataclass(frozen=True)
class ReportConfig:
    """Every setting of a report, checked when it is made (AnalysisError, one line): where it
    goes, how classes are ranked (:class:`RankingSpec`, whose ``ensemble`` the whole report
    uses), which classes the confusion figure shows, and whether an incomparable baseline or an
    unfinished run is reported (marked) instead of refused."""

    out_dir: Path
    ranking: RankingSpec = field(default_factory=RankingSpec)
    confusion_classes: tuple[str, ...] | None = None
    confusion_top: int = 20
    allow_incomparable: bool = False
    allow_incomplete: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if not isinstance(self.ranking, RankingSpec):
            raise AnalysisError(f"ranking must be a RankingSpec, got {type(self.ranking).__name__}")
        if isinstance(self.confusion_classes, str):
            raise AnalysisError("confusion_classes must be a list of class names, not one string")
        if self.confusion_classes is not None:
            object.__setattr__(self, "confusion_classes", tuple(str(c) for c in self.confusion_classes) or None)
        if int(self.confusion_top) < 1:
            raise AnalysisError(f"confusion_top must be >= 1, got {self.confusion_top}")

    @property
    def ensemble(self) -> str:
        return self.ranking.ensemble


Writer = Callable[[Path], Any]


@dataclass
class Section:
    """One part of the report: its Markdown lines, the files it writes ({name: writer(path)}) and
    its figures ({file name: (title, draw(path))})."""

    markdown: list[str] = field(default_factory=list)
    files: dict[str, Writer] = field(default_factory=dict)
    figures: dict[str, tuple[str, Writer]] = field(default_factory=dict)


@dataclass
class ReportData:
    """What the sections share, computed once (everything that can fail on the input)."""

    cfg: ReportConfig
    run: RunAnalysis
    base: RunAnalysis | None
    diffs: list[str]
    rank: pd.DataFrame
    rank_top1: pd.DataFrame | None
    unranked: pd.DataFrame
    pc: pd.DataFrame
    pt: pd.DataFrame
    sweep: pd.DataFrame
    sweep_both: pd.DataFrame
    cm: pd.DataFrame
    pairs: pd.DataFrame
    tradeoff: pd.DataFrame | None = None
    by_bins: pd.DataFrame | None = None


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
        ("class_name", "class", "s"),
        ("videos", "videos", "d"),
        ("failures", "failed views", "d"),
        ("top1", "top-1 %", ".1f"),
        ("top5", "top-5 %", ".1f"),
        ("mean_class_acc", "mean class %", ".1f"),
        ("gmacs_per_view_mean", "GMACs/view", ".4g"),
        ("gmacs_x_views_mean", "GFLOPs x views", ".4g"),
        ("reduction_pct", "vs static %", ".1f"),
    ]
    for l in layers:
        cols.append((f"{bins_column(l)}_mean", f"bins {l}", ".2f"))
    cols += [
        ("frac_kept_mean", "frac. kept", ".3f"),
        ("top1_delta", "top-1 Δ vs base", "+.1f"),
        ("gmacs_reduction_vs_baseline_pct", "GMACs ↓ vs base %", ".1f"),
    ]
    cols = [c for c in cols if c[0] in pc.columns]
    disp = pd.DataFrame({head: [(_f(v, spec) if spec != "s" else str(v)) for v in pc[col]] for col, head, spec in cols})
    disp.iloc[-1, 0] = f"**{OVERALL}**"
    if "mean class %" in disp.columns:  # a class's mean class accuracy is its top-1: shown once, overall
        disp.loc[disp.index[:-1], "mean class %"] = ""
    return markdown_table(disp)


def _tradeoff_md(t: pd.DataFrame, lead: list[tuple[str, str, str]]) -> str:
    cols = lead + [
        ("videos", "videos", "d"),
        ("bins_kept", "bins kept", ".3f"),
        ("top1_baseline", "top-1 base %", ".1f"),
        ("top1", "top-1 ATFR %", ".1f"),
        ("top1_delta", "Δ points", "+.1f"),
        ("lost", "lost", "d"),
        ("gained", "gained", "d"),
    ]
    if "fraction" not in t.attrs.get("metric", "fraction"):
        cols[len(lead) + 1] = ("bins_kept", "mean bins", ".2f")
    disp = pd.DataFrame({h: [(_f(v, sp) if sp != "s" else str(v)) for v in t[c]] for c, h, sp in cols})
    return markdown_table(disp)


def report_data(log: pd.DataFrame | RunAnalysis, baseline: Any, cfg: ReportConfig) -> ReportData:
    """The analyses and the tables of a report, each computed once; raises before anything is written."""
    spec, ensemble = cfg.ranking, cfg.ensemble
    run = RunAnalysis.of(log, "log")
    run.require_complete(cfg.allow_incomplete)
    base, diffs = None, []
    if baseline is not None:
        base = run if baseline is log else RunAnalysis.of(baseline, "baseline")
        base.require_complete(cfg.allow_incomplete)
        diffs = check_comparable(run.views, base.views, "baseline", allow=cfg.allow_incomparable)
    d = ReportData(
        cfg,
        run,
        base,
        diffs,
        rank=rank_classes(run, spec),
        rank_top1=None,
        unranked=below_min_videos(run, spec.min_videos, spec.by, ensemble),
        pc=per_class(run, baseline=base, ensemble=ensemble, allow_incomparable=True),
        pt=paper_table(
            [run],
            baselines=[base] if base is not None else None,
            ensemble=ensemble,
            allow_incomparable=True,
            allow_incomplete=True,
        ),
        sweep=accuracy_vs_views(run, ensemble),
        sweep_both=accuracy_vs_views_both(run),
        cm=confusion_matrix(run, ensemble),
        pairs=pd.DataFrame(),
    )
    d.pairs = most_confused_pairs(d.cm, n=None)
    select_classes(d.cm, list(cfg.confusion_classes or []) or None, cfg.confusion_top)  # unknown names fail here
    if spec.by != "top1" and bool(run.videos(ensemble)["top1"].notna().any()):
        d.rank_top1 = rank_classes(run, RankingSpec("top1", spec.k, spec.min_videos, spec.n_boot, spec.seed, ensemble))
    if base is not None and run.layers:
        d.tradeoff = class_tradeoff(run, base, ensemble, allow_incomparable=True)
        d.by_bins = accuracy_by_bins(run, base, groups=5, ensemble=ensemble, allow_incomparable=True)
    return d


# ----------------------------------------------------------------------------- sections
def header_section(d: ReportData) -> Section:
    """Title, the marks (not comparable, INCOMPLETE) and the run's facts."""
    run, meta = d.run, d.run.meta
    L: list[str] = [f"# ATFR analysis: {run.name}", ""]
    if d.diffs:
        L += [
            f"> **{NOT_COMPARABLE}:** the baseline run {run_name(d.base.views, 'baseline')} differs from this run: "
            + "; ".join(d.diffs)
            + ". Every comparison with it below (accuracy change, reduction, "
            "lost/gained videos) "
            "compares different things; it was made with --allow-incomparable.",
            "",
        ]
    for a, what in ((run, "this run"), (d.base, "the baseline run")):
        if a is not None and not a.complete:
            L += [
                f"> **{INCOMPLETE}:** {what} {a.name} has logged {a.videos_logged} of the {a.videos_total} videos "
                "of its list (a profile still writing, or interrupted): every number below covers those videos "
                "only; it was made with --allow-incomplete.",
                "",
            ]
    facts = []
    if run.run_dir:
        facts.append(f"run `{_shown_path(run.run_dir)}`")
    if isinstance(meta.get("params"), (int, float)):
        facts.append(f"{meta['params'] / 1e6:.2f}M params")
    if meta.get("frames") is not None or meta.get("crop") is not None:
        frames = meta.get("frames", "?")
        fr = "+".join(map(str, frames)) if isinstance(frames, (list, tuple)) else frames
        facts.append(f"input {fr} frames x {meta.get('crop', '?')}² (crop counted)")
    if meta.get("views") is not None and meta.get("crops") is not None:
        facts.append(f"{meta['views']} temporal x {meta['crops']} spatial views")
    if meta.get("batching"):
        facts.append(f"batching {meta['batching']}")
    facts.append(f"convention {meta.get('convention', 'conv_fc')}")
    facts.append(f"views combined by {d.cfg.ensemble}")
    return Section(L + ["; ".join(facts) + ".", ""])


def _accuracy_line(d: ReportData, overall: pd.Series) -> str:
    ensemble, vids = d.cfg.ensemble, d.run.videos(d.cfg.ensemble)
    if d.run.nonfinite_views:
        return f"- Top-1 / top-5 / mean class accuracy: n/a: {d.run.nonfinite_note()}."
    labelled = int(overall["labelled"])
    if not labelled:
        return "- Top-1 / top-5 / mean class accuracy: n/a (no labelled videos)."
    how = (
        "softmax summed over a video's ok views (PySlowFast's default)"
        if ensemble == "sum"
        else "element-wise maximum of the softmax over a video's ok views (PySlowFast's ENSEMBLE_METHOD: max)"
    )
    n_ok = int((vids["status"] == "ok").sum())
    n_cls = int((d.pc.iloc[:-1]["labelled"] > 0).sum())
    return (
        f"- Top-1 {_f(overall['top1'], '.2f')}%, top-5 {_f(overall['top5'], '.2f')}%, "
        f"mean class accuracy {_f(overall['mean_class_acc'], '.2f')}% (mean of the top-1 of {n_cls} classes) "
        f"(video-level: {how}; {labelled} labelled videos"
        + (f", {n_ok - labelled} unlabelled not scored" if n_ok - labelled else "")
        + ")."
    )


def _cost_lines(d: ReportData, overall: pd.Series) -> list[str]:
    row, run, nv = d.pt.iloc[-1], d.run, d.run.views_per_video
    line = (
        f"- Mean GFLOPs x views: {_f(row['gmacs_x_views'], '.4g')} "
        f"(= {_f(row['gmacs_per_view'], '.4g')} x {nv}; "
        f"mean per ok view {_f(overall['gmacs_per_view_mean'], '.4g')})"
    )
    static = run.meta.get("static_gmacs")
    if run.layers and isinstance(static, (int, float)) and static > 0 and nv:
        red = 100 * (1 - row["gmacs_x_views"] / (static * nv))
        line += f"; static backbone (no SGS, same input): {static:.4g} x {nv} = {static * nv:.4g}; reduction {red:.1f}%"
    L = [line + "."]
    if d.base is not None:
        b = d.pt.iloc[0]
        L.append(
            f"- Against the baseline run {b['model']}"
            + (f" ({NOT_COMPARABLE})" if d.diffs else "")
            + f": {_f(b['gmacs_x_views'], '.4g')} GFLOPs x views, "
            f"top-1 {_f(b['top1'], '.2f')}%, mean class {_f(b['mean_class_acc'], '.2f')}%; "
            f"reduction {_f(row['reduction_pct'], '.1f')}%, "
            f"top-1 change {_f(overall.get('top1_delta', np.nan), '+.2f')} points, "
            f"mean class change {_f(overall.get('mean_class_acc_delta', np.nan), '+.2f')} points."
        )
    return L


def _bins_lines(d: ReportData, overall: pd.Series) -> list[str]:
    B, L = d.run.num_bins, []
    for l in d.run.layers:
        col = bins_column(l)
        frac = f" of B = {B[l]} (fraction kept {overall[f'{frac_column(l)}_mean']:.3f})" if l in B else ""
        L.append(
            f"- SGS layer `{l}`: mean active bins {_f(overall[f'{col}_mean'], '.2f')}{frac}; "
            f"median {_f(overall[f'{col}_median'], '.0f')}, p10-p90 "
            f"{_f(overall[f'{col}_p10'], '.0f')}-{_f(overall[f'{col}_p90'], '.0f')}."
        )
    if not d.run.layers:
        L.append("- No SGS layers in this run (a baseline): every view costs the same; the ranking is by GMACs only.")
    return L


def summary_section(d: ReportData) -> Section:
    """Videos and views, the headline accuracy, the cost, the bins per SGS layer."""
    from atfr_analysis.analysis import plots

    run, ensemble = d.run, d.cfg.ensemble
    vids = run.videos(ensemble)
    overall = d.pc[d.pc["class_name"] == OVERALL].iloc[0]
    n_ok, n_fail = int((vids["status"] == "ok").sum()), int((vids["status"] != "ok").sum())
    v_fail = int((~run.ok).sum())
    L = [
        "## Summary",
        "",
        f"- Videos: {n_ok} ok, {n_fail} failed (no ok view); views: {int(run.ok.sum())} ok, {v_fail} failed"
        + (" (failed views are counted here and excluded everywhere else)" if v_fail else "")
        + ".",
        _accuracy_line(d, overall),
        *_cost_lines(d, overall),
        *_bins_lines(d, overall),
    ]
    s = Section(
        L,
        {
            "videos.csv": lambda p: vids.drop(columns=[c for c in vids.columns if c.startswith("scores_")]).to_csv(
                p, index=False
            )
        },
    )
    if run.layers:
        s.figures["bins_hist.png"] = ("Active bins per SGS layer", lambda p: plots.plot_bins_hist(run, p))
    s.figures["gmacs_distribution.png"] = ("Cost per view", lambda p: plots.plot_gmacs_distribution(run, p))
    return s


def paper_table_section(d: ReportData) -> Section:
    pt = d.pt
    return Section(
        ["", "## Paper-style table", "", markdown_table(format_paper_table(pt)), "", pt.attrs["footer"], ""],
        {
            "paper_table.md": lambda p: to_markdown(pt, p),
            "paper_table.csv": lambda p: to_csv(pt, p),
            "paper_table.tex": lambda p: to_latex(pt, p),
        },
    )


def _ranking_text(d: ReportData, r: pd.DataFrame, b: str, csv: str) -> list[str]:
    spec = d.cfg.ranking
    what = r.attrs.get("metric", b)
    return [
        f"## Classes by {what}",
        "",
        f"The classes with the lowest and the highest {what}"
        + (' (as the poster\'s "lowest / highest temporal resolution")' if b != "top1" else "")
        + f"; up to {spec.k} per end, the two ends never share a class, among "
        f"{r.attrs['n_ranked']} classes with at least {spec.min_videos} ok "
        + ("labelled " if b == "top1" else "")
        + f"video(s). Value [bootstrap 95% CI over the class's videos, "
        f"{spec.n_boot} resamples, seed {spec.seed}] (n = videos). † = the CI overlaps the CI of a class at the "
        f"other end, so the two are not clearly separated. All of it: [{csv}]({csv}).",
        "",
        _ranking_md(r, b) if len(r) else "(no class to rank)",
        "",
    ]


def ranking_section(d: ReportData) -> Section:
    """The class ranking (and by top-1), the classes left out."""
    from atfr_analysis.analysis import plots

    spec, unranked = d.cfg.ranking, d.unranked
    L = _ranking_text(d, d.rank, spec.by, "ranking.csv")
    if len(unranked):
        shown = ", ".join(f"{c} ({v})" for c, v in zip(unranked["class_name"][:30], unranked["videos"][:30]))
        more = f" and {len(unranked) - 30} more" if len(unranked) > 30 else ""
        L += [f"Not ranked (fewer than {spec.min_videos} ok videos; see unranked_classes.csv): {shown}{more}.", ""]
    files = {
        "ranking.csv": lambda p: d.rank.to_csv(p, index=False),
        "unranked_classes.csv": lambda p: unranked.to_csv(p, index=False),
    }
    if d.rank_top1 is not None:
        L += _ranking_text(d, d.rank_top1, "top1", "ranking_top1.csv")
        files["ranking_top1.csv"] = lambda p: d.rank_top1.to_csv(p, index=False)
    s = Section(L, files)
    s.figures["class_distributions.png"] = (
        "Classes at both ends of the ranking",
        lambda p: plots.plot_class_distributions(
            d.run, p, by=spec.by, k=spec.k, min_videos=spec.min_videos, n_boot=spec.n_boot, seed=spec.seed, rank=d.rank
        ),
    )
    return s


def tradeoff_section(d: ReportData) -> Section:
    """With a baseline and SGS layers: accuracy where SGS keeps few bins."""
    from atfr_analysis.analysis import plots

    t, by_bins = d.tradeoff, d.by_bins
    if t is None:
        return Section()
    cls, ov, k = t.iloc[:-1], t.iloc[-1], d.cfg.ranking.k
    n_show = min(len(cls), k)
    ranges = [f"{a:.3g}-{b:.3g}" for a, b in zip(by_bins["bins_kept_min"], by_bins["bins_kept_max"])]
    groups = by_bins.assign(range=ranges)
    L = [
        "## Where SGS keeps few bins: accuracy against the baseline",
        "",
        f"The {int(ov['videos'])} labelled videos ok in both runs, paired by path: bins kept = "
        f"{t.attrs.get('metric', 'bins kept')} in this "
        f"run; lost = videos the baseline gets right and this run wrong, gained = the reverse "
        f"(overall {int(ov['lost'])} lost, {int(ov['gained'])} gained, "
        f"top-1 change {_f(ov['top1_delta'], '+.1f')} points). "
        "Rank correlation over the classes of bins kept and top-1 change: "
        f"{_f(t.attrs.get('spearman', np.nan), '+.2f')} "
        "(positive: classes that keep fewer bins lose more). "
        "All classes: [class_tradeoff.csv](class_tradeoff.csv).",
        "",
        f"The {n_show} classes that keep the fewest bins:",
        "",
        _tradeoff_md(cls.head(n_show), [("class_name", "class", "s")]),
        "",
        "Videos in groups of about equal size by the bins they kept ([accuracy_by_bins.csv](accuracy_by_bins.csv)):",
        "",
        _tradeoff_md(groups, [("group", "group", "d"), ("range", "range", "s")])
        if len(by_bins)
        else "(no paired videos)",
        "",
    ]
    s = Section(
        L,
        {
            "class_tradeoff.csv": lambda p: t.to_csv(p, index=False),
            "accuracy_by_bins.csv": lambda p: by_bins.to_csv(p, index=False),
        },
    )
    if len(by_bins):
        s.figures["accuracy_by_bins.png"] = (
            "Accuracy where SGS keeps few bins (against the baseline run, same videos)",
            lambda p: plots.plot_accuracy_by_bins(
                by_bins, p, run=d.run.name, baseline=run_name(d.base.views, "baseline")
            ),
        )
    return s


def confusion_section(d: ReportData) -> Section:
    """The most confused pairs of classes, the confusion matrix."""
    from atfr_analysis.analysis import plots

    cm, pairs, cfg = d.cm, d.pairs, d.cfg
    s = Section(
        [],
        {
            "confusion_matrix.csv": lambda p: cm.to_csv(p),
            "most_confused_pairs.csv": lambda p: pairs.to_csv(p, index=False),
        },
    )
    if not cm.attrs.get("videos"):
        return s
    shown = pairs.head(10)
    s.markdown = [
        "## Most confused classes",
        "",
        f"Video-level predictions of the {cm.attrs['videos']} labelled ok videos (views combined by "
        f"{cfg.ensemble}). The pairs (true class, predicted class) with the most videos; share = of the true "
        "class's videos. Counts of every pair: [confusion_matrix.csv](confusion_matrix.csv) (rows: true "
        "class, columns: predicted); the pairs: [most_confused_pairs.csv](most_confused_pairs.csv).",
        "",
    ]
    if len(shown):
        disp = pd.DataFrame(
            {
                "true class": shown["true_class"],
                "predicted as": shown["predicted"],
                "videos": shown["videos"],
                "of": shown["true_videos"],
                "share %": [f"{x:.1f}" for x in shown["share_pct"]],
            }
        )
        s.markdown += [markdown_table(disp), ""]
    else:
        s.markdown += ["(no video is predicted as another class)", ""]
    classes = list(cfg.confusion_classes) if cfg.confusion_classes else None
    s.figures["confusion.png"] = (
        "Confusion matrix (row-normalised)",
        lambda p: plots.plot_confusion(
            d.run, p, classes=classes, top=cfg.confusion_top, ensemble=cfg.ensemble, matrix=cm
        ),
    )
    return s


def sweep_section(d: ReportData) -> Section:
    """Accuracy against the number of views used."""
    from atfr_analysis.analysis import plots

    L = [
        "## Accuracy vs views used",
        "",
        "Using only the first n temporal views of each video (all crops), as PySlowFast's multi-clip sweep; "
        "the views combined by the sum of their softmax (`_sum`) or its element-wise maximum (`_max`).",
        "",
        markdown_table(d.sweep_both),
        "",
    ]
    s = Section(L, {"accuracy_vs_views.csv": lambda p: d.sweep_both.to_csv(p, index=False)})
    s.figures["accuracy_vs_views.png"] = (
        "Accuracy vs views used",
        lambda p: plots.plot_accuracy_vs_views(d.run, p, baseline=d.base, sweep=d.sweep, ensemble=d.cfg.ensemble),
    )
    return s


def per_class_section(d: ReportData) -> Section:
    """The per-class table (and against the baseline)."""
    from atfr_analysis.analysis import plots

    L = [
        "## Per class",
        "",
        "Video-level accuracy; GMACs per view averaged over ok views; GFLOPs x views = mean over the class's "
        "videos of the sum over their ok views. All columns (median, std, p10/p90 per layer) are in per_class.csv.",
        "",
        _per_class_md(d.pc, d.run.layers),
        "",
    ]
    s = Section(L, {"per_class.csv": lambda p: d.pc.to_csv(p, index=False)})
    s.figures["gmacs_vs_accuracy.png"] = (
        "Per-class cost vs accuracy",
        lambda p: plots.plot_gmacs_vs_accuracy(d.run, p, table=d.pc),
    )
    if d.base is not None:
        s.figures["delta_vs_reduction.png"] = (
            "Accuracy change vs cost reduction per class (against the baseline run)",
            lambda p: plots.plot_delta_vs_reduction(d.run, d.base, p, table=d.pc),
        )
    return s


#: the report, in order
SECTIONS: tuple[Callable[[ReportData], Section], ...] = (
    header_section,
    summary_section,
    paper_table_section,
    ranking_section,
    tradeoff_section,
    confusion_section,
    sweep_section,
    per_class_section,
)


def _figures_and_files(sections: Sequence[Section], out: Path) -> list[str]:
    """Writes every section's files and figures; returns the Markdown of the figures and the files."""
    files = {k: w for s in sections for k, w in s.files.items()}
    figures = {k: f for s in sections for k, f in s.figures.items()}
    for name, write in files.items():
        write(out / name)
    L = ["## Figures", ""]
    for name in sorted(figures, key=FIGURES.index):
        title, draw = figures[name]
        fname = draw(out / name).name
        L += [f"### {title}", "", f"![{title}]({fname})", ""]
    listed = [f for f in LISTED_FILES if f in files]
    return L + ["Files: " + ", ".join(f"[{p}]({p})" for p in listed), ""]


def make_report(log: pd.DataFrame | RunAnalysis, cfg: ReportConfig, baseline: Any = None) -> Path:
    """Write the report of a run (and its baseline) as ``cfg`` says; returns the path of report.md."""
    d = report_data(log, baseline, cfg)
    sections = [section(d) for section in SECTIONS]
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    tail = _figures_and_files(sections, out)
    path = out / REPORT_NAME
    path.write_text("\n".join([line for s in sections for line in s.markdown] + tail), encoding="utf-8")
    return path


def write_report(
    log: pd.DataFrame | RunAnalysis,
    out_dir: str | Path,
    baseline: pd.DataFrame | RunAnalysis | None = None,
    by: str = "gmacs",
    k: int = 5,
    min_videos: int = 1,
    n_boot: int = 1000,
    seed: int = 0,
    ensemble: str = "sum",
    confusion_classes: list[str] | None = None,
    confusion_top: int = 20,
    allow_incomparable: bool = False,
    allow_incomplete: bool = False,
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
    top); nothing is written then. A run that has not logged every video of its list raises
    :class:`IncompleteRunError` unless ``allow_incomplete`` (the report is then marked
    INCOMPLETE); a run with non-finite scores gets no accuracy, and the report says why."""
    cfg = ReportConfig(
        out_dir,
        RankingSpec(by, k, min_videos, n_boot, seed, ensemble),
        confusion_classes,
        confusion_top,
        allow_incomparable,
        allow_incomplete,
    )
    return make_report(log, cfg, baseline)
