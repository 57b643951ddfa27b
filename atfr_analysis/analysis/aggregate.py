"""Per-video and per-class aggregation of a profiling log (pure pandas / numpy).

A log is the views table of a run (``atfr_analysis.load_run``): one row per (video, view), with
``df.attrs["meta"]`` holding ``run.json``. Conventions used throughout the analysis layer:

* only rows with ``status == "ok"`` enter any statistic; failed rows are counted, never used;
* a video is *ok* when at least one of its views is ok; its prediction is the sum of the softmax
  over its ok views (PySlowFast TestMeter ensembling, ``ensemble="sum"``) or their element-wise
  maximum (PySlowFast's ``ENSEMBLE_METHOD: max``, ``ensemble="max"``); top-1 / top-5 are correct
  when the label is among the k highest video scores (ties broken towards the lower class id);
* accuracy is over labelled ok videos (``label >= 0``), in percent; mean class accuracy is the
  mean over the classes with a labelled ok video of their top-1;
* ``gmacs_x_views`` of a video = sum over its ok views of the per-view ``gmacs`` (conv_fc);
* ``frac.<layer>`` = active bins / B of that SGS layer (B from ``meta["sgs_layers"]``; columns
  are omitted for layers whose B is unknown); ``frac_kept`` = mean of ``frac.<layer>`` over the
  layers with a known B.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from atfr_analysis.analysis.common import AnalysisError, log_meta, run_name
from atfr_analysis.analysis.run_analysis import (
    ENSEMBLES,
    UNKNOWN_CLASS,
    RunAnalysis,
    check_ensemble,
    frac_column,
    layer_bins,
)
from atfr_analysis.profile.schema import bins_column, mean_class_accuracy
from atfr_analysis.profile.schema import bins_layers as schema_bins_layers

__all__ = [
    "AnalysisError",
    "ENSEMBLES",
    "UNKNOWN_CLASS",
    "OVERALL",
    "RunAnalysis",
    "bins_layers",
    "num_bins",
    "run_name",
    "views_per_video",
    "video_table",
    "per_class",
    "mean_class_accuracy",
]

OVERALL = "overall"


def bins_layers(log: pd.DataFrame | RunAnalysis) -> list[str]:
    """SGS layer names, from the ``bins.<layer>`` columns (in column order)."""
    return list(log.layers) if isinstance(log, RunAnalysis) else schema_bins_layers(log.columns)


def num_bins(log: pd.DataFrame | RunAnalysis) -> dict[str, int]:
    """B per SGS layer, for the layers of the log whose ``num_bins`` the metadata gives."""
    if isinstance(log, RunAnalysis):
        return dict(log.num_bins)
    return layer_bins(log_meta(log), schema_bins_layers(log.columns))


def views_per_video(log: pd.DataFrame | RunAnalysis) -> int:
    """Views per video: ``meta["views"] * meta["crops"]``, else the most common count in the log."""
    return RunAnalysis.of(log).views_per_video


def video_table(log: pd.DataFrame | RunAnalysis, ensemble: str = "sum") -> pd.DataFrame:
    """One row per video.

    ``ensemble``: "sum" (softmax summed over the video's ok views, PySlowFast's default) or "max"
    (element-wise maximum over them, PySlowFast's ``ENSEMBLE_METHOD: max``).

    Columns: ``video_id, path, label, class_name, views_ok, views_failed, status`` ("ok" when at
    least one view is ok), ``pred`` (top-1 class id of the video scores), ``top1``, ``top5``
    (nullable bool; NA when unlabelled or failed, and for every video of a run with non-finite
    scores), ``gmacs_x_views`` (sum over the ok views of
    per-view gmacs; likewise ``gmacs_fvcore_x_views``, ``gmacs_executed_x_views``),
    ``gmacs_per_view`` (mean), ``bins.<layer>`` (mean active bins over the ok views),
    ``frac.<layer>`` and ``frac_kept`` when B is known, ``scores_sum`` (summed softmax vector; with
    ``ensemble="max"`` ``scores_max``, the element-wise maximum). ``attrs["ensemble"]``.
    """
    check_ensemble(ensemble)
    return RunAnalysis.of(log).videos(ensemble).copy()


# ------------------------------------------------------------------------------ per class
def _pct(s: pd.Series, g) -> pd.Series:
    """Percentage of True among non-NA of a nullable boolean column, per group."""
    x = s.astype("Float64")
    return 100 * x.groupby(g).mean().astype("float64")


def class_counts(views: pd.DataFrame, videos: pd.DataFrame, vkey: pd.Series, dkey: pd.Series) -> pd.DataFrame:
    """Per group of ``dkey`` (class name, or one group): videos, views, failures, top-1, top-5."""
    okv, okk = views[views["_ok"]], vkey[views["_ok"]]
    okd, okdk = videos[videos["status"] == "ok"], dkey[videos["status"] == "ok"]
    out = pd.DataFrame(index=pd.Index(sorted(set(dkey)), name="class_name"))
    out["videos"] = okd.groupby(okdk).size()
    out["videos_failed"] = videos[videos["status"] != "ok"].groupby(dkey[videos["status"] != "ok"]).size()
    out["views"] = okv.groupby(okk).size()
    out["failures"] = views[~views["_ok"]].groupby(vkey[~views["_ok"]]).size()
    labelled = okd["label"] >= 0
    out["labelled"] = okd[labelled].groupby(okdk[labelled]).size()
    for c in ("videos", "videos_failed", "views", "failures", "labelled"):
        out[c] = out[c].fillna(0).astype("int64")
    out["top1"] = _pct(okd["top1"], okdk)
    out["top5"] = _pct(okd["top5"], okdk)
    out["gmacs_x_views_mean"] = okd.groupby(okdk)["gmacs_x_views"].mean()
    return out


def class_costs(a: RunAnalysis, out: pd.DataFrame, vkey: pd.Series) -> pd.DataFrame:
    """Adds the per-view cost and bins statistics of each group of ``vkey`` to ``out``."""
    views = a.views
    gv = views[views["_ok"]].groupby(vkey[views["_ok"]])
    gx = out.pop("gmacs_x_views_mean")
    out["gmacs_per_view_mean"] = gv["gmacs"].mean()
    out["gmacs_per_view_std"] = gv["gmacs"].std()
    if "gmacs_fvcore" in views.columns:
        out["gmacs_fvcore_per_view_mean"] = gv["gmacs_fvcore"].mean()
    out["gmacs_x_views_mean"] = gx
    static = a.static_gmacs
    if static:
        out["reduction_pct"] = 100 * (1 - out["gmacs_per_view_mean"] / static)
    cols = [bins_column(x) for x in a.layers] + [frac_column(x) for x in a.layers if x in a.num_bins]
    for c in cols:
        s = gv[c]
        out[f"{c}_mean"] = s.mean()
        out[f"{c}_median"] = s.median()
        out[f"{c}_std"] = s.std()
        out[f"{c}_p10"] = s.quantile(0.1)
        out[f"{c}_p90"] = s.quantile(0.9)
    if "frac_kept" in views.columns:
        out["frac_kept_mean"] = gv["frac_kept"].mean()
    return out


def class_stats(a: RunAnalysis, vids: pd.DataFrame, vkey: pd.Series, dkey: pd.Series) -> pd.DataFrame:
    return class_costs(a, class_counts(a.views, vids, vkey, dkey), vkey)


def with_baseline(out: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """The per-class table with its changes against the baseline's per-class table."""
    base = base.set_index("class_name")
    key = out["class_name"]

    def b(c: str) -> np.ndarray:
        return base[c].reindex(key).to_numpy()

    out["top1_delta"] = out["top1"].to_numpy() - b("top1")
    out["top5_delta"] = out["top5"].to_numpy() - b("top5")
    out["mean_class_acc_delta"] = out["mean_class_acc"].to_numpy() - b("mean_class_acc")
    out["gmacs_reduction_vs_baseline_pct"] = 100 * (
        1 - out["gmacs_per_view_mean"].to_numpy() / b("gmacs_per_view_mean")
    )
    return out


def per_class(
    log: pd.DataFrame | RunAnalysis,
    baseline: pd.DataFrame | RunAnalysis | None = None,
    ensemble: str = "sum",
    allow_incomparable: bool = False,
) -> pd.DataFrame:
    """One row per class (sorted by name) plus an ``"overall"`` row.

    Columns: ``class_name, videos`` (ok videos), ``videos_failed, views`` (ok views),
    ``failures`` (failed views), ``labelled, top1, top5`` (video-level, % of labelled ok videos),
    ``mean_class_acc`` (overall row only: the mean of the classes' top-1, mmaction2's
    ``mean_class_accuracy``; NaN on class rows, where it would be their top-1),
    ``gmacs_per_view_mean/_std``, ``gmacs_fvcore_per_view_mean``, ``gmacs_x_views_mean`` (mean over
    ok videos of the sum over their ok views), ``reduction_pct`` (per-view cost vs
    ``meta["static_gmacs"]``; omitted without it), per SGS layer ``bins.<layer>_mean``, ``_median``,
    ``_std``, ``_p10``, ``_p90`` over ok views, the same for ``frac.<layer>`` (bins / B; omitted
    without B) and ``frac_kept_mean``. With a baseline log: ``top1_delta``, ``top5_delta``
    (points), ``mean_class_acc_delta`` (overall row) and ``gmacs_reduction_vs_baseline_pct``
    (per-view cost), joined on class_name.

    ``ensemble``: how a video's views are combined ("sum" or "max", see :func:`video_table`).
    A baseline must be comparable (same videos, classes and views, another model; see
    :mod:`atfr_analysis.analysis.comparable`): else :class:`IncomparableRunsError`, unless
    ``allow_incomparable``; then ``attrs["not_comparable"]`` lists the differences.
    """
    check_ensemble(ensemble)
    a = RunAnalysis.of(log)
    diffs: list[str] = []
    base = None
    if baseline is not None:
        from atfr_analysis.analysis.comparable import check_comparable

        base = a if baseline is log else RunAnalysis.of(baseline, "baseline")
        diffs = check_comparable(a.views, base.views, "baseline", allow=allow_incomparable)
    vids = a.videos(ensemble)
    df = a.views
    by_class = class_stats(a, vids, df["class_name"], vids["class_name"])
    overall = class_stats(a, vids, pd.Series(OVERALL, index=df.index), pd.Series(OVERALL, index=vids.index))
    out = pd.concat([by_class, overall]).reset_index()
    mca = np.full(len(out), np.nan)
    mca[-1] = a.accuracy(ensemble).mean_class_acc
    out.insert(int(out.columns.get_loc("top5")) + 1, "mean_class_acc", mca)
    if base is not None:
        out = with_baseline(out, per_class(base, ensemble=ensemble))
    out.attrs = {"meta": dict(a.meta), "ensemble": ensemble}
    if diffs:
        out.attrs["not_comparable"] = diffs
    return out
