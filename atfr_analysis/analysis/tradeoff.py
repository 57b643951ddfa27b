"""The accuracy trade-off of SGS (compared with :mod:`~atfr_analysis.analysis.comparable`, which
says whether two runs can be compared at all). Where does SGS cost accuracy? An ATFR run against its
baseline on the same videos, joined with the bins SGS kept: per class, and per group of videos by how
few bins they kept.

Both runs must be comparable (same videos, classes and views; see
:mod:`atfr_analysis.analysis.comparable`). Videos are paired by path. "Bins kept" is the
fraction of bins kept (active bins / B, averaged over the SGS layers and the video's ok views);
when B is unknown, the mean active bins.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from atfr_analysis.analysis.aggregate import OVERALL, AnalysisError
from atfr_analysis.analysis.comparable import check_comparable
from atfr_analysis.analysis.run_analysis import RunAnalysis, check_ensemble
from atfr_analysis.profile.schema import bins_column

__all__ = ["paired_videos", "class_tradeoff", "accuracy_by_bins"]


def paired_videos(
    log: pd.DataFrame | RunAnalysis,
    baseline: pd.DataFrame | RunAnalysis,
    ensemble: str = "sum",
    allow_incomparable: bool = False,
) -> pd.DataFrame:
    """The labelled videos ok in both runs: ``path, class_name, label, bins_kept, gmacs_per_view,
    top1`` (the ATFR run) and ``top1_baseline``. ``attrs["metric"]`` says what bins_kept is,
    ``attrs["not_comparable"]`` the differences accepted with ``allow_incomparable``."""
    check_ensemble(ensemble)
    run = RunAnalysis.of(log)
    layers = run.layers
    if not layers:
        raise AnalysisError(
            "the run has no bins.<layer> columns (a run without SGS layers): "
            "accuracy against bins kept needs the ATFR run first, then its baseline"
        )
    base = run if baseline is log else RunAnalysis.of(baseline, "baseline")
    diffs = check_comparable(run.views, base.views, "baseline", allow=allow_incomparable)
    a, b = run.videos(ensemble), base.videos(ensemble)
    if "frac_kept" in a.columns:
        kept, metric = a["frac_kept"], "fraction of bins kept"
    else:
        kept, metric = a[[bins_column(x) for x in layers]].mean(axis=1), "mean active bins (B unknown)"

    def key(v: pd.DataFrame) -> pd.Series:
        p = v["path"].astype(str)
        return p.where(p != "", "#" + v["video_id"].astype(str))

    left = pd.DataFrame(
        {
            "key": key(a),
            "path": a["path"],
            "class_name": a["class_name"],
            "label": a["label"],
            "bins_kept": kept.astype("float64"),
            "gmacs_per_view": a["gmacs_per_view"].astype("float64"),
            "top1": a["top1"],
            "ok": a["status"] == "ok",
        }
    )
    right = pd.DataFrame({"key": key(b), "top1_baseline": b["top1"], "ok_b": b["status"] == "ok"})
    m = left.merge(right, on="key", how="inner")
    m = m[m["ok"] & m["ok_b"] & m["top1"].notna() & m["top1_baseline"].notna()]
    out = m[["path", "class_name", "label", "bins_kept", "gmacs_per_view", "top1", "top1_baseline"]].reset_index(
        drop=True
    )
    out["top1"] = out["top1"].astype(bool)
    out["top1_baseline"] = out["top1_baseline"].astype(bool)
    out.attrs = {"metric": metric, "ensemble": ensemble}
    if diffs:
        out.attrs["not_comparable"] = diffs
    return out


def _stats(g: pd.DataFrame) -> dict:
    return {
        "videos": int(len(g)),
        "bins_kept": float(g["bins_kept"].mean()) if len(g) else np.nan,
        "gmacs_per_view": float(g["gmacs_per_view"].mean()) if len(g) else np.nan,
        "top1": float(100 * g["top1"].mean()) if len(g) else np.nan,
        "top1_baseline": float(100 * g["top1_baseline"].mean()) if len(g) else np.nan,
        "lost": int((g["top1_baseline"] & ~g["top1"]).sum()),
        "gained": int((g["top1"] & ~g["top1_baseline"]).sum()),
    }


def _finish(rows: list[dict], lead: list[str], pairs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        rows, columns=lead + ["videos", "bins_kept", "gmacs_per_view", "top1", "top1_baseline", "lost", "gained"]
    )
    out.insert(out.columns.get_loc("top1_baseline") + 1, "top1_delta", out["top1"] - out["top1_baseline"])
    out.attrs = dict(pairs.attrs)
    return out


def class_tradeoff(
    log: pd.DataFrame | RunAnalysis,
    baseline: pd.DataFrame | RunAnalysis,
    ensemble: str = "sum",
    allow_incomparable: bool = False,
) -> pd.DataFrame:
    """Per class, sorted by bins kept (fewest first), then an ``overall`` row: ``class_name,
    videos`` (labelled, ok in both runs), ``bins_kept`` (mean over the class's videos),
    ``gmacs_per_view``, ``top1`` (ATFR, %), ``top1_baseline``, ``top1_delta`` (points), ``lost``
    (videos the baseline gets right and the ATFR run wrong) and ``gained`` (the reverse).
    ``attrs["spearman"]``: rank correlation over the classes of bins kept and top-1 change (NaN
    with fewer than 3 classes); positive = classes that keep fewer bins lose more accuracy."""
    pairs = paired_videos(log, baseline, ensemble, allow_incomparable)
    rows = [dict(class_name=c, **_stats(g)) for c, g in pairs.groupby("class_name", sort=True)]
    rows.sort(key=lambda r: (r["bins_kept"], r["class_name"]))
    rows.append(dict(class_name=OVERALL, **_stats(pairs)))
    out = _finish(rows, ["class_name"], pairs)
    cls = out.iloc[:-1]
    rho = np.nan
    if len(cls) >= 3:
        x, y = cls["bins_kept"].rank(), cls["top1_delta"].rank()
        if x.std() > 0 and y.std() > 0:
            rho = float(np.corrcoef(x, y)[0, 1])
    out.attrs["spearman"] = rho
    return out


def accuracy_by_bins(
    log: pd.DataFrame | RunAnalysis,
    baseline: pd.DataFrame | RunAnalysis,
    groups: int = 5,
    ensemble: str = "sum",
    allow_incomparable: bool = False,
) -> pd.DataFrame:
    """The paired videos in ``groups`` groups of (about) equal size by their bins kept, fewest
    first: ``group`` (1 = fewest), ``bins_kept_min``, ``bins_kept_max``, then the columns of
    :func:`class_tradeoff` for the videos of the group. Videos with equal bins kept stay in one
    group, so there may be fewer groups."""
    if int(groups) < 1:
        raise AnalysisError(f"groups must be >= 1, got {groups}")
    pairs = paired_videos(log, baseline, ensemble, allow_incomparable)
    if not len(pairs):
        return _finish([], ["group", "bins_kept_min", "bins_kept_max"], pairs)
    # rank first so that equal values never straddle two groups, then cut the distinct values
    vals = np.sort(pairs["bins_kept"].unique())
    counts = pairs["bins_kept"].value_counts().reindex(vals).to_numpy()
    cum = np.cumsum(counts) / counts.sum()
    gid = np.minimum((np.ceil(cum * int(groups) - 1e-9)).astype(int), int(groups))
    gid = np.maximum(gid, 1)
    _, gid = np.unique(gid, return_inverse=True)
    which = dict(zip(vals, gid + 1))
    pairs = pairs.assign(group=pairs["bins_kept"].map(which))
    rows = []
    for g, sub in pairs.groupby("group", sort=True):
        rows.append(
            dict(
                group=int(g),
                bins_kept_min=float(sub["bins_kept"].min()),
                bins_kept_max=float(sub["bins_kept"].max()),
                **_stats(sub),
            )
        )
    return _finish(rows, ["group", "bins_kept_min", "bins_kept_max"], pairs)
