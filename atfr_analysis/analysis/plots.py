"""Figures of a profiling log (matplotlib Agg + seaborn, PNG). Every function returns the path.

Global matplotlib / seaborn state is left alone: styles are applied in a context. The PNGs are
byte-reproducible: no software version in their metadata, and the jitter of strip plots comes
from a seeded generator (seaborn's draws from NumPy's global one)."""

from __future__ import annotations

import textwrap
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from atfr_analysis.analysis.aggregate import OVERALL, AnalysisError, per_class, run_name
from atfr_analysis.analysis.ranking import check_by, per_video_values, ranking
from atfr_analysis.analysis.run_analysis import RunAnalysis
from atfr_analysis.analysis.tables import accuracy_vs_views
from atfr_analysis.profile.schema import bins_column

__all__ = [
    "plot_confusion",
    "plot_accuracy_by_bins",
    "plot_bins_hist",
    "plot_class_distributions",
    "plot_gmacs_vs_accuracy",
    "plot_gmacs_distribution",
    "plot_accuracy_vs_views",
    "plot_delta_vs_reduction",
]

DPI = 120
LOW_COLOR, HIGH_COLOR = "#4C72B0", "#DD8452"
#: one colour per model (run first, then its baseline), from seaborn's colour-blind palette
MODEL_COLORS = ("#0173B2", "#DE8F05", "#029E73", "#CC78BC", "#CA9161", "#949494")
#: PNG metadata: matplotlib writes its version as "Software" unless told not to
PNG_METADATA = {"Software": None}


@contextmanager
def _figure(figsize):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    with sns.axes_style("whitegrid"), plt.rc_context({"axes.titlesize": 12, "axes.labelsize": 10.5, "font.size": 10}):
        fig, ax = plt.subplots(figsize=figsize)
        try:
            yield fig, ax
        finally:
            plt.close(fig)


def _save(fig, path, rect=None) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(**({"rect": rect} if rect else {}))
    fig.savefig(p, dpi=DPI, metadata=PNG_METADATA)
    return p


def _wrap(name: str, width: int = 28) -> str:
    return textwrap.fill(str(name), width=width, break_long_words=True) or str(name)


def _name(log: pd.DataFrame | RunAnalysis, default: str = "run") -> str:
    return run_name(log.views if isinstance(log, RunAnalysis) else log, default)


def _title(log: pd.DataFrame | RunAnalysis, what: str, width: int = 72) -> str:
    return textwrap.fill(f"{_name(log)}: {what}", width=width)


# ----------------------------------------------------------------------------------- bins
def plot_bins_hist(log: pd.DataFrame | RunAnalysis, path: str | Path) -> Path:
    """Histogram of active bins B' per SGS layer (ok views), one panel per layer, B marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    a = RunAnalysis.of(log)
    layers = a.layers
    if not layers:
        raise AnalysisError("no bins.<layer> columns in this log (a run without SGS layers): nothing to histogram")
    B = a.num_bins
    ok = a.views[a.ok]
    n = len(layers)
    with sns.axes_style("whitegrid"), plt.rc_context({"axes.titlesize": 11, "font.size": 10}):
        fig, axes = plt.subplots(1, n, figsize=(max(5.5, 4.6 * n), 3.9), squeeze=False)
        try:
            for ax, layer in zip(axes[0], layers):
                x = ok[bins_column(layer)].dropna().astype(int)
                hi = B.get(layer, int(x.max()) if len(x) else 1)
                edges = np.arange(0.5, hi + 1.5, 1.0)
                ax.hist(x, bins=edges, color=LOW_COLOR, edgecolor="white")
                if layer in B:
                    ax.axvline(B[layer], color="k", ls="--", lw=1, label=f"B = {B[layer]} (all bins kept)")
                if len(x):
                    ax.axvline(x.mean(), color=HIGH_COLOR, lw=1.5, label=f"mean {x.mean():.2f}")
                if ax.get_legend_handles_labels()[0]:
                    ax.legend(loc="upper right", fontsize=9)
                ax.set_xlim(0.5, hi + 0.5)
                ax.set_ylim(0, ax.get_ylim()[1] * 1.22)  # room for the legend
                if hi <= 32:
                    ax.set_xticks(range(1, hi + 1, 1 if hi <= 16 else 2))
                ax.set_xlabel(f"active bins B' in {layer}")
                ax.set_ylabel("views")
                ax.set_title(_wrap(layer, 40))
            fig.suptitle(_title(a, f"active bins per SGS layer ({len(ok)} ok views)"), fontsize=12)
            return _save(fig, path)
        finally:
            plt.close(fig)


# ------------------------------------------------------------------- per-class distributions
def _end_patches(n_low: int, n_high: int) -> list:
    """Legend patches of the two ends of a ranking."""
    from matplotlib.patches import Patch

    return [
        Patch(color=c, alpha=0.6, label=f"{end} {n}")
        for c, end, n in ((LOW_COLOR, "lowest", n_low), (HIGH_COLOR, "highest", n_high))
        if n
    ]


def plot_class_distributions(
    log: pd.DataFrame | RunAnalysis,
    path: str | Path,
    by: str = "gmacs",
    k: int = 5,
    min_videos: int = 1,
    n_boot: int = 1000,
    seed: int = 0,
    *,
    rank: pd.DataFrame | None = None,
) -> Path:
    """Per-video values (box + points) of the k lowest and k highest classes, with each class's
    mean and bootstrap 95% CI; classes whose CI overlaps the other end are marked with †.
    ``rank``: a ranking already computed with these arguments (saves recomputing it)."""
    check_by(by)
    df = RunAnalysis.of(log)
    if rank is None:
        rank = ranking(df, by=by, k=k, min_videos=min_videos, n_boot=n_boot, seed=seed)
    data, order, ylabels, what = _class_value_points(df, rank, by)
    low, high = (order["end"] == "lowest").sum(), (order["end"] == "highest").sum()
    lines = sum(l.count("\n") + 1 for l in ylabels)
    with _figure((8.6, max(3.0, 0.24 * lines + 0.2 * len(order) + 1.6))) as (fig, ax):
        _draw_class_values(ax, data, order, ylabels, seed)
        if low and high:
            ax.axhline(low - 0.5, color="0.4", lw=0.8, ls=":")
        handles = _end_patches(low, high)
        h, _ = ax.get_legend_handles_labels()
        # below the axes, in a strip of its own (inside, it hides points wherever it goes)
        fig.legend(handles=handles + h, loc="lower center", ncol=3, fontsize=8.5, frameon=False)
        strip = 0.4 / fig.get_figheight()
        unit = "per-video mean GMACs per view" if by == "gmacs" else f"per-video {what}"
        ax.set_xlabel(unit)
        ax.set_ylabel("")
        ax.tick_params(axis="y", labelsize=9)
        note = " († CI overlaps the other end)" if order["overlaps_other_end"].any() else ""
        ax.set_title(
            _title(df, f"classes with the lowest / highest {what}")
            + "\n"
            + f"points = videos; classes with at least {min_videos} ok video(s){note}",
            fontsize=11,
        )
        return _save(fig, path, rect=(0, strip, 1, 1))


# -------------------------------------------------------------------- class cost vs accuracy
#: where a point's label may go, tried in order: (dx, dy) in points, horizontal and vertical alignment
_LABEL_OFFSETS = (
    (5, 4, "left", "bottom"),
    (5, -4, "left", "top"),
    (-5, 4, "right", "bottom"),
    (-5, -4, "right", "top"),
    (0, 8, "center", "bottom"),
    (0, -8, "center", "top"),
    (5, 16, "left", "bottom"),
    (5, -16, "left", "top"),
    (-5, 16, "right", "bottom"),
    (-5, -16, "right", "top"),
)


def _class_value_points(df: RunAnalysis, rank: pd.DataFrame, by: str):
    """The per-video values of the ranked classes (``data``: value, label, end), the classes in
    plot order (lowest, then highest reversed), their y labels and what the values are."""
    pv, what = per_video_values(df, by, rank.attrs.get("ensemble", "sum"))
    pv["value"] = pv["sum"] / pv["n"]
    low = rank[rank["end"] == "lowest"]
    high = rank[rank["end"] == "highest"].iloc[::-1]
    order = pd.concat([low, high], ignore_index=True)
    labels = {r.class_name: _wrap(r.class_name) + (" †" if r.overlaps_other_end else "") for r in order.itertuples()}
    data = pv[pv["class_name"].isin(labels)].copy()
    data["label"] = data["class_name"].map(labels)
    data["end"] = data["class_name"].map(dict(zip(order["class_name"], order["end"])))
    return data, order, [labels[c] for c in order["class_name"]], what


def _draw_class_values(ax, data: pd.DataFrame, order: pd.DataFrame, ylabels: list[str], seed: int) -> None:
    """Boxes and seeded-jitter points of the per-video values, each class's mean with its CI."""
    import seaborn as sns

    pal = {"lowest": LOW_COLOR, "highest": HIGH_COLOR}
    with warnings.catch_warnings():  # seaborn 0.13 passes vert= to matplotlib >= 3.11 (deprecated there)
        warnings.filterwarnings("ignore", message=r".*vert: bool.*")
        sns.boxplot(
            data=data, x="value", y="label", order=ylabels, hue="end", palette=pal, ax=ax, showfliers=False,
            width=0.6, boxprops={"alpha": 0.45}, legend=False, dodge=False,
        )  # fmt: skip
    # the points, jittered by a seeded generator (seaborn's stripplot jitters with np.random)
    rng = np.random.default_rng(seed)
    ypos = {l: i for i, l in enumerate(ylabels)}
    yy = data["label"].map(ypos).to_numpy(dtype="float64") + rng.uniform(-0.15, 0.15, len(data))
    ax.scatter(data["value"], yy, s=12, alpha=0.8, c=data["end"].map(pal).tolist(), linewidths=0, zorder=3)
    # the interval as it is, from ci_low to ci_high: a percentile interval of few resamples need
    # not contain the mean, so it is drawn about its own middle, the mean marked apart
    y = np.arange(len(order))
    mid, half = (order["ci_low"] + order["ci_high"]) / 2, (order["ci_high"] - order["ci_low"]) / 2
    ax.errorbar(
        mid, y, xerr=half, fmt="none", ecolor="k", capsize=4, lw=1.4, label="95% bootstrap CI (videos resampled)"
    )
    ax.plot(order["value"], y, "D", color="k", ms=5, linestyle="none", label="class mean")


def _points_to_label(x, y, max_labels: int, extremes: int) -> list[int]:
    """Every point when few, else the ``extremes`` lowest / highest on each axis."""
    if len(x) <= max_labels:
        return list(range(len(x)))
    pick = []
    for v in (x, y):
        o = np.argsort(np.where(np.isnan(v), np.inf, v), kind="stable")
        o = [i for i in o if not np.isnan(v[i])]
        for i in o[:extremes] + o[::-1][:extremes]:
            if i not in pick:
                pick.append(i)
    return pick


def _place_label(ax, renderer, axbox, placed: list, text: str, xy) -> bool:
    """Put ``text`` at the first free position around ``xy`` inside the axes; False when none is."""
    for dx, dy, ha, va in _LABEL_OFFSETS:
        a = ax.annotate(text, xy, xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=7.5, color="0.15")
        bb = a.get_window_extent(renderer)
        inside = bb.x0 >= axbox.x0 and bb.x1 <= axbox.x1 and bb.y0 >= axbox.y0 and bb.y1 <= axbox.y1
        if inside and not any(bb.overlaps(p) for p in placed):
            placed.append(bb.expanded(1.04, 1.1))
            return True
        a.remove()
    return False


def _annotate(ax, x, y, names, max_labels: int = 25, extremes: int = 5) -> int:
    """Label points without overlaps: every point when few, else the ``extremes`` lowest / highest
    on each axis. Each label tries a few positions around its point and is left out when none is
    free inside the axes. Returns how many labels were left out (noted in the plot)."""
    x, y, names = np.asarray(x, float), np.asarray(y, float), list(names)
    pick = _points_to_label(x, y, max_labels, extremes)
    fig = ax.figure
    ax.margins(x=0.06, y=0.1)
    fig.tight_layout()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axbox = ax.get_window_extent(renderer)
    placed, labelled = [], []
    dropped = 0
    for i in pick:
        if np.isnan(x[i]) or np.isnan(y[i]):
            continue
        if _place_label(ax, renderer, axbox, placed, _wrap(names[i], 24), (x[i], y[i])):
            labelled.append(i)
        else:
            dropped += 1
    if labelled:  # ring the labelled points, so each label's point is plain to see
        ax.scatter(x[labelled], y[labelled], s=46, facecolors="none", edgecolors="k", linewidths=0.9, zorder=3)
    if dropped:
        note = f"{dropped} crowded label(s) left out"
        ax.text(0.995, 0.005, note, transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.4")
    return dropped


def plot_gmacs_vs_accuracy(
    log: pd.DataFrame | RunAnalysis, path: str | Path, *, table: pd.DataFrame | None = None
) -> Path:
    """Per class: mean GMACs per view vs video-level top-1 (labelled points, size = videos).
    ``table``: ``per_class(log)`` already computed."""
    df = RunAnalysis.of(log)
    pc = per_class(df) if table is None else table
    overall = pc[pc["class_name"] == OVERALL].iloc[0]
    pc = pc[pc["class_name"] != OVERALL]
    with _figure((8.2, 5.8)) as (fig, ax):
        sizes = 20 + 60 * pc["videos"] / max(1, pc["videos"].max())
        ax.scatter(pc["gmacs_per_view_mean"], pc["top1"], s=sizes, color=LOW_COLOR, alpha=0.75, edgecolor="white")
        if not pd.isna(overall["top1"]):
            ax.axhline(overall["top1"], color="0.4", ls=":", lw=1, label=f"overall top-1 {overall['top1']:.1f}%")
        ax.axvline(
            overall["gmacs_per_view_mean"],
            color=HIGH_COLOR,
            ls=":",
            lw=1,
            label=f"overall mean {overall['gmacs_per_view_mean']:.3g} GMACs/view",
        )
        static = df.static_gmacs
        if static:
            ax.axvline(static, color="k", ls="--", lw=1, label=f"static backbone {static:.3g} GMACs/view")
        ax.set_xlabel("mean GMACs per view (conv_fc)")
        ax.set_ylabel("top-1 (%), video-level")
        ax.set_title(_title(df, f"per-class cost vs accuracy ({len(pc)} classes)"))
        _annotate(ax, pc["gmacs_per_view_mean"], pc["top1"], pc["class_name"])
        ax.legend(loc="best", fontsize=8.5)
        return _save(fig, path)


# ------------------------------------------------------------------- per-view GMACs spread
def plot_gmacs_distribution(log: pd.DataFrame | RunAnalysis, path: str | Path) -> Path:
    """Histogram of per-view GMACs (ok views) with the static (no SGS) cost and the mean marked."""
    df = RunAnalysis.of(log)
    g = df.views.loc[df.ok, "gmacs"].dropna()
    static = df.meta.get("static_gmacs")
    with _figure((7.6, 4.4)) as (fig, ax):
        lo, hi = float(g.min()), float(g.max())
        if isinstance(static, (int, float)) and static > 0:
            lo, hi = min(lo, static), max(hi, static)
        span = hi - lo or max(abs(hi), 1e-9) * 0.2  # all views alike (a static run): +-10% around it
        edges = (
            np.linspace(float(g.min()) - 1e-9, float(g.max()) + 1e-9, 41)
            if g.max() > g.min()
            else np.array([g.min() - span / 40, g.min() + span / 40])
        )
        ax.hist(g, bins=edges, color=LOW_COLOR, edgecolor="white")
        ax.axvline(g.mean(), color=HIGH_COLOR, lw=1.8, label=f"mean {g.mean():.3g} GMACs")
        if isinstance(static, (int, float)) and static > 0:
            ax.axvline(static, color="k", ls="--", lw=1.4, label=f"static backbone (no SGS) {static:.3g} GMACs")
        ax.set_xlim(lo - 0.05 * span, hi + 0.05 * span)
        ax.set_xlabel("GMACs per view (conv_fc)")
        ax.set_ylabel("views")
        ax.set_title(_title(df, f"cost per view ({len(g)} ok views)"))
        ax.legend(loc="best", fontsize=9)
        return _save(fig, path)


# ----------------------------------------------------------------- accuracy vs number of views
def plot_accuracy_vs_views(
    log: pd.DataFrame,
    path: str | Path,
    baseline: pd.DataFrame | None = None,
    *,
    sweep: pd.DataFrame | None = None,
    ensemble: str = "sum",
) -> Path:
    """Top-1 (solid) / top-5 (dashed) vs mean GFLOPs x views when using the first 1..V temporal
    views per video, one colour per model (the run, and a baseline run when given), the views
    combined by ``ensemble``. ``sweep``: ``accuracy_vs_views(log, ensemble)`` already computed."""
    if sweep is None:
        sweep = accuracy_vs_views(log, ensemble)
    runs = [(_name(log), sweep)]
    if baseline is not None:
        runs.append((_name(baseline, "baseline") + " (baseline)", accuracy_vs_views(baseline, ensemble)))
    with _figure((7.8, 5.0)) as (fig, ax):
        for (name, s), color in zip(runs, MODEL_COLORS):
            for col, ls, marker, lab in (("top1", "-", "o", "top-1"), ("top5", "--", "s", "top-5")):
                if s[col].notna().any():
                    ax.plot(s["gmacs_x_views"], s[col], ls=ls, marker=marker, color=color, ms=5, label=f"{name} {lab}")
            if s["top1"].notna().any():
                for r in s.itertuples():
                    ax.annotate(
                        f"{r.views}",
                        (r.gmacs_x_views, r.top1),
                        xytext=(0, -13),
                        textcoords="offset points",
                        fontsize=8,
                        ha="center",
                        color=color,
                    )
        ax.set_xlabel("mean GFLOPs x views per video (sum over the views used)")
        ax.set_ylabel("accuracy (%), video-level")
        how = "softmax summed" if ensemble == "sum" else "max of softmax"
        ax.set_title(_title(log, f"accuracy vs views used ({how} over views; numbers: views)"))
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo - 0.04 * (hi - lo), hi)  # room for the view counts under the lowest points
        # below the axes: inside, the legend hides points wherever it goes
        ncol = 2
        fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=ncol, fontsize=8.5, frameon=False)
        rows = -(-len(ax.get_legend_handles_labels()[0]) // ncol)
        return _save(fig, path, rect=(0, (0.1 + 0.22 * rows) / fig.get_figheight(), 1, 1))


# -------------------------------------------------------------------------- confusion matrix
def plot_confusion(
    log: pd.DataFrame,
    path: str | Path,
    classes: list[str] | None = None,
    top: int = 20,
    ensemble: str = "sum",
    *,
    matrix: pd.DataFrame | None = None,
) -> Path:
    """Row-normalised confusion matrix (% of each true class's labelled videos), as a heatmap.

    Up to ``top`` classes are shown: all when there are that few, else the ``top`` classes
    involved in the most errors, or the ``classes`` named by the user; a last column then holds
    the share predicted as any class not shown, so each row sums to 100%. ``matrix``:
    ``confusion_matrix(log, ensemble)`` already computed."""
    from atfr_analysis.analysis.confusion import OTHER, confusion_matrix, normalised_subset, select_classes

    cm = confusion_matrix(log, ensemble) if matrix is None else matrix
    if not len(cm):
        raise AnalysisError("no classes: nothing to draw a confusion matrix of")
    ids, why = select_classes(cm, classes, top)
    P = normalised_subset(cm, ids)
    n = len(ids)
    width = max(len(_short(c)) for c in P.columns)
    fs = 9 if n <= 15 else 8 if n <= 25 else 6.5
    cell = 0.42 if n <= 25 else 0.3
    side = 0.7 + 0.0078 * fs * width  # inches of room for the class names (+ the video counts)
    cols = P.shape[1]
    with _figure((side + 0.3 + cell * cols + 1.5, side + cell * n + 1.0)) as (fig, ax):
        # cells with no video stay blank; others show their share, "<1" when it rounds to 0
        _draw_confusion_cells(ax, P, n, fs)
        ax.set_xlabel("predicted class" + (f"  (last column: {OTHER})" if P.shape[1] > n else ""))
        ax.set_ylabel("true class (labelled videos)")
        how = "sum" if ensemble == "sum" else "max"
        ax.set_title(
            _title(
                log,
                f"confusion matrix, row-normalised: {why}; {cm.attrs.get('videos', '?')} "
                f"labelled videos, views combined by {how}",
                width=max(40, int(11 * (cell * cols + 1.5))),
            ),
            fontsize=10.5,
        )
        return _save(fig, path)


def _draw_confusion_cells(ax, P: pd.DataFrame, n: int, fs: float) -> None:
    """The heatmap of the row-normalised shares ``P`` (``n`` true classes) and its tick labels;
    cells with no video stay blank, others show their share, "<1" when it rounds to 0."""
    import seaborn as sns

    annot = P.map(lambda v: "" if pd.isna(v) or v == 0 else "<1" if v < 0.5 else f"{v:.0f}") if n <= 30 else False
    sns.heatmap(
        P, ax=ax, cmap="Blues", vmin=0, vmax=100, annot=annot, fmt="", mask=P.isna(),
        annot_kws={"fontsize": fs - 0.5}, linewidths=0.5, linecolor="white", square=True,
        cbar_kws={"label": "% of the true class's videos", "shrink": 0.7},
    )  # fmt: skip
    ax.set_xticks(np.arange(P.shape[1]) + 0.5)
    ax.set_xticklabels([_short(c) for c in P.columns], rotation=60, ha="right", rotation_mode="anchor", fontsize=fs)
    ax.set_yticks(np.arange(n) + 0.5)
    counts = P.attrs.get("row_videos", [])
    ax.set_yticklabels([f"{_short(c)} ({k})" for c, k in zip(P.index, counts)], rotation=0, fontsize=fs)
    if P.shape[1] > n:
        ax.axvline(n, color="0.3", lw=1.2)


def _short(name: str, width: int = 30) -> str:
    """A class name cut to ``width`` characters in the middle (names that share a long start
    differ at their end)."""
    name = str(name)
    if len(name) <= width:
        return name
    tail = (width - 1) // 2
    return name[: width - 1 - tail] + "…" + name[-tail:]


# ------------------------------------------------------------ accuracy where SGS keeps few bins
def plot_accuracy_by_bins(table: pd.DataFrame, path: str | Path, run: str = "ATFR", baseline: str = "baseline") -> Path:
    """Top-1 of the ATFR run and of its baseline on the same videos, per group of videos by the
    bins SGS kept (``accuracy_by_bins`` table), with the number of videos per group."""
    if not len(table):
        raise AnalysisError("no videos ok and labelled in both runs: nothing to plot")
    metric = table.attrs.get("metric", "bins kept")
    with _figure((8.2, 4.8)) as (fig, ax):
        x = np.arange(len(table))
        w = 0.38
        ax.bar(x - w / 2, table["top1_baseline"], w, color=MODEL_COLORS[1], label=f"{baseline} (baseline)")
        ax.bar(x + w / 2, table["top1"], w, color=MODEL_COLORS[0], label=f"{run}")
        spec = ".2f" if "fraction" in metric else ".1f"
        ax.set_xticks(x)
        ax.set_xticklabels(
            [f"{r.bins_kept_min:{spec}}-{r.bins_kept_max:{spec}}\n{r.videos} videos" for r in table.itertuples()],
            fontsize=8.5,
        )
        for xi, r in zip(x, table.itertuples()):
            ax.annotate(
                f"{r.top1_delta:+.0f}",
                (xi + w / 2, r.top1),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                color="0.2",
            )
        ax.set_ylim(0, 112)
        ax.set_xlabel(f"groups of videos by {metric} in the ATFR run (fewest first)")
        ax.set_ylabel("top-1 (%), same videos")
        ax.set_title(
            textwrap.fill(f"{run} vs {baseline}: accuracy where SGS keeps few bins (numbers: top-1 change, points)", 72)
        )
        ax.legend(loc="upper left", fontsize=8.5, ncol=2)
        return _save(fig, path)


# --------------------------------------------------------------- vs a baseline run, per class
def plot_delta_vs_reduction(
    log: pd.DataFrame, baseline: pd.DataFrame, path: str | Path, *, table: pd.DataFrame | None = None
) -> Path:
    """Per class: top-1 change (points) vs GMACs reduction (%) against a baseline run.
    ``table``: ``per_class(log, baseline)`` already computed."""
    pc = per_class(log, baseline=baseline) if table is None else table
    if "gmacs_reduction_vs_baseline_pct" not in pc.columns:
        raise AnalysisError("plot_delta_vs_reduction needs per_class(log, baseline=...) columns")
    overall = pc[pc["class_name"] == OVERALL].iloc[0]
    pc = pc[(pc["class_name"] != OVERALL) & pc["gmacs_reduction_vs_baseline_pct"].notna()]
    with _figure((8.2, 5.8)) as (fig, ax):
        ax.axhline(0, color="0.3", lw=0.8)
        ax.scatter(
            pc["gmacs_reduction_vs_baseline_pct"],
            pc["top1_delta"],
            s=30,
            color=LOW_COLOR,
            alpha=0.75,
            edgecolor="white",
        )
        if not pd.isna(overall["gmacs_reduction_vs_baseline_pct"]):
            ax.scatter(
                [overall["gmacs_reduction_vs_baseline_pct"]],
                [overall["top1_delta"]],
                marker="*",
                s=160,
                color=HIGH_COLOR,
                edgecolor="k",
                zorder=3,
                label=f"overall: {overall['gmacs_reduction_vs_baseline_pct']:.1f}% fewer GMACs, "
                f"top-1 {overall['top1_delta']:+.1f} pts",
            )
        ax.set_xlabel(f"GMACs per view reduction vs {_name(baseline, 'baseline')} (%)")
        ax.set_ylabel("top-1 change (percentage points)")
        ax.set_title(_title(log, f"accuracy change vs cost reduction per class ({len(pc)} classes)"))
        _annotate(ax, pc["gmacs_reduction_vs_baseline_pct"], pc["top1_delta"], pc["class_name"])
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8.5)
        return _save(fig, path)
