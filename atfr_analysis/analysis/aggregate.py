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

from typing import Any

import numpy as np
import pandas as pd

from atfr_analysis.errors import InputError
from atfr_analysis.analysis.common import AnalysisError, _meta, run_name
from atfr_analysis.profile.schema import mean_class_accuracy

__all__ = [
    "AnalysisError",
    "ENSEMBLES",
    "UNKNOWN_CLASS",
    "OVERALL",
    "bins_layers",
    "num_bins",
    "run_name",
    "views_per_video",
    "video_table",
    "per_class",
    "mean_class_accuracy",
]

UNKNOWN_CLASS = "(unknown)"
#: how a video's views are combined: sum of softmax (PySlowFast's default) or element-wise max
ENSEMBLES = ("sum", "max")
OVERALL = "overall"
_CHUNK_ROWS = 20_000  # rows of score vectors stacked at once
_PREPARED = "_atfr_analysis_prepared"  # attrs flag of a frame _prepare made (internal only)
_LOG_COLUMNS = ("path", "label", "class_name", "view", "temporal_index", "spatial_index", "status")


class _SharedMeta(dict):
    """The run metadata inside the attrs of internal frames: pandas deep-copies ``attrs`` on
    every operation, and a 400-name class list made that a fifth of the run time."""

    def __deepcopy__(self, memo):
        return self


def _check_ensemble(ensemble: str) -> str:
    if ensemble not in ENSEMBLES:
        raise AnalysisError(f"unknown ensemble={ensemble!r}: choose one of {', '.join(repr(e) for e in ENSEMBLES)}")
    return ensemble


# ----------------------------------------------------------------------------------- helpers
def bins_layers(log: pd.DataFrame) -> list[str]:
    """SGS layer names, from the ``bins.<layer>`` columns (in column order)."""
    return [c[len("bins."):] for c in log.columns if isinstance(c, str) and c.startswith("bins.")]


def num_bins(log: pd.DataFrame) -> dict[str, int]:
    """B per SGS layer, for the layers of the log whose ``num_bins`` the metadata gives."""
    sgs = _meta(log).get("sgs_layers") or {}
    out: dict[str, int] = {}
    for layer in bins_layers(log):
        info = sgs.get(layer)
        b = info.get("num_bins") if isinstance(info, dict) else info
        try:
            b = int(b)
        except (TypeError, ValueError):
            continue
        if b > 0:
            out[layer] = b
    return out


def _is_atfr(log: pd.DataFrame) -> bool:
    return bool(bins_layers(log)) or bool(_meta(log).get("sgs_layers"))


def _check(log: Any, name: str = "log") -> None:
    if not isinstance(log, pd.DataFrame):
        raise AnalysisError(f"{name} must be a pandas DataFrame (a views table from load_run), got {type(log).__name__}")
    if len(log) == 0:
        raise AnalysisError(f"{name} is empty: no views were logged")
    missing = [c for c in ("video_id", "gmacs") if c not in log.columns]
    if missing:
        raise AnalysisError(f"{name} is not a views table: missing column(s) {', '.join(missing)}")
    if "scores" not in log.columns and not {"top5_ids", "top5_scores"} <= set(log.columns):
        raise AnalysisError(f"{name} is not a views table: it has neither scores nor top5_ids/top5_scores")
    if "status" in log.columns and not (log["status"] == "ok").any():
        raise AnalysisError(f"{name} has no ok views: all {len(log)} views failed")


def _float(s: pd.Series) -> np.ndarray:
    """A numeric (possibly nullable) column as float64 with NaN for missing."""
    return pd.to_numeric(s, errors="coerce").astype("Float64").to_numpy(dtype="float64", na_value=np.nan)


def _prepare(log: pd.DataFrame, name: str = "log") -> pd.DataFrame:
    """A checked, normalised copy: status, class_name, label, view indices filled; float bins and
    fraction columns; ``_ok`` flag. Keeps ``attrs``."""
    if isinstance(log, pd.DataFrame) and log.attrs.get(_PREPARED) and "_ok" in log.columns:
        return log  # already prepared by this module
    _check(log, name)
    meta = _meta(log)
    missing = [c for c in _LOG_COLUMNS if c not in log.columns]  # what the log's schema guarantees
    if missing:
        raise AnalysisError(f"{name} is not a views table: missing column(s) {', '.join(missing)}")
    df = log.copy()
    names = meta.get("class_names") or []
    if "class_name" in df.columns:
        cn = df["class_name"].astype(object)
        cn = cn.where(cn.notna() & (cn.astype(str).str.strip() != ""), None)
    else:
        cn = pd.Series([None] * len(df), index=df.index, dtype=object)
    if cn.isna().any():
        lab = df["label"].to_numpy()
        lookup = np.array([str(x) for x in names] + [None], dtype=object)
        from_meta = lookup[np.where((lab >= 0) & (lab < len(names)), lab, len(names))]
        cn = cn.where(cn.notna(), pd.Series(from_meta, index=df.index))
        cn = cn.where(cn.notna(), df["label"].map(lambda l: f"class {l}" if l >= 0 else UNKNOWN_CLASS))
    df["class_name"] = cn.astype(str)
    for c in ("gmacs", "gmacs_fvcore", "gmacs_executed"):
        if c in df.columns:
            df[c] = _float(df[c])
    B = num_bins(df)
    fracs = []
    for layer in bins_layers(df):
        df[f"bins.{layer}"] = _float(df[f"bins.{layer}"])
        if layer in B:
            df[f"frac.{layer}"] = df[f"bins.{layer}"] / B[layer]
            fracs.append(f"frac.{layer}")
    if fracs:
        df["frac_kept"] = df[fracs].mean(axis=1, skipna=True)
    df["_ok"] = df["status"].eq("ok")
    df = df.sort_values(["video_id", "view"], kind="stable").reset_index(drop=True)
    df.attrs = {k: v for k, v in log.attrs.items() if k != "meta"}
    df.attrs["meta"] = _SharedMeta(meta)
    df.attrs[_PREPARED] = True
    return df


def _public_attrs(df: pd.DataFrame) -> dict[str, Any]:
    """attrs for a frame handed to the user: plain dicts, no internal flag."""
    out = {k: v for k, v in df.attrs.items() if k != _PREPARED}
    if "meta" in out:
        out["meta"] = dict(out["meta"])
    return out


def views_per_video(log: pd.DataFrame) -> int:
    """Views per video: ``meta["views"] * meta["crops"]``, else the most common count in the log."""
    m = _meta(log)
    try:
        return int(m["views"]) * int(m["crops"])
    except (KeyError, TypeError, ValueError):
        counts = log.groupby("video_id").size()
        return int(counts.mode().max()) if len(counts) else 0


# ------------------------------------------------------------------------- video-level scores
def _num_classes(df: pd.DataFrame) -> int | None:
    n = _meta(df).get("num_classes")
    try:
        return int(n)
    except (TypeError, ValueError):
        names = _meta(df).get("class_names")
        return len(names) if names else None


def _video_scores(ok: pd.DataFrame, ensemble: str = "sum") -> tuple[np.ndarray, np.ndarray]:
    """(video ids, video-level scores) over the given ok rows (sorted by video_id): the sum of the
    softmax over a video's views (``ensemble="sum"``) or its element-wise maximum (``"max"``).

    Rows without a score vector are skipped; a video none of whose rows has one gets NaN.
    Without a ``scores`` column the top-5 (ids, scores) pairs are combined instead (sparse: the
    classes outside a view's top 5 count as 0 there)."""
    _check_ensemble(ensemble)
    reduce = np.add if ensemble == "sum" else np.maximum
    vids_all = ok["video_id"].to_numpy()
    uniq = np.unique(vids_all)
    if "scores" in ok.columns:
        has = ok["scores"].notna().to_numpy()
        col, vids = ok["scores"].to_numpy(dtype=object)[has], vids_all[has]
        if len(col) == 0:
            return uniq, np.full((len(uniq), 1), np.nan)
        lens = np.fromiter((len(x) for x in col), dtype=np.int64, count=len(col))
        C = int(lens[0])
        if (lens != C).any():
            raise AnalysisError("score vectors of different lengths in one log; is it a mix of runs?")
        starts = np.flatnonzero(np.r_[True, vids[1:] != vids[:-1]])
        have = vids[starts]
        out = np.zeros((len(have), C))
        bounds = np.r_[starts, len(vids)]
        i = 0
        while i < len(have):
            j = max(i + 1, int(np.searchsorted(bounds, bounds[i] + _CHUNK_ROWS, side="right")) - 1)
            j = min(j, len(have))
            mat = np.stack(col[bounds[i]:bounds[j]]).astype("float64")
            out[i:j] = reduce.reduceat(mat, starts[i:j] - bounds[i], axis=0)
            i = j
    else:
        ids = ok["top5_ids"].to_numpy(dtype=object)
        sc = ok["top5_scores"].to_numpy(dtype=object)
        C = _num_classes(ok) or (1 + max((int(np.max(x)) for x in ids if x is not None and len(x)), default=0))
        have = uniq
        pos = {v: i for i, v in enumerate(uniq)}
        out = np.zeros((len(uniq), C))
        for v, a, b in zip(vids_all, ids, sc):
            if a is not None and b is not None:
                reduce.at(out[pos[v]], np.asarray(a, dtype="int64"), np.asarray(b, dtype="float64"))
    if len(have) == len(uniq):
        return uniq, out
    full = np.full((len(uniq), out.shape[1]), np.nan)
    full[np.searchsorted(uniq, have)] = out
    return uniq, full


def _summed_scores(ok: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(video ids, summed softmax per video): :func:`_video_scores` with ``ensemble="sum"``."""
    return _video_scores(ok, "sum")


def _topk(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, pd.array, pd.array]:
    """(top-1 id, top-1 correct, top-5 correct) per row; NA where unlabelled or without scores."""
    n = len(labels)
    valid = ~np.isnan(scores).any(axis=1) if scores.size else np.zeros(n, bool)
    pred = np.full(n, -1, dtype="int64")
    t1 = np.zeros(n, bool)
    t5 = np.zeros(n, bool)
    if valid.any():
        s = scores[valid]
        k = min(5, s.shape[1])
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        lab = labels[valid]
        pred[valid] = order[:, 0]
        t1[valid] = order[:, 0] == lab
        t5[valid] = (order == lab[:, None]).any(axis=1)
    known = valid & (labels >= 0)
    pred_a = pd.array(np.where(valid, pred, 0), dtype="Int64")
    pred_a[~valid] = pd.NA
    t1a = pd.array(t1, dtype="boolean")
    t5a = pd.array(t5, dtype="boolean")
    t1a[~known] = pd.NA
    t5a[~known] = pd.NA
    return pred_a, t1a, t5a


def _video_level(df: pd.DataFrame, ensemble: str = "sum") -> pd.DataFrame:
    """Per-video table of a prepared frame (ok rows used, failed rows counted)."""
    g = df.groupby("video_id", sort=True)
    first = g[["path", "label", "class_name"]].first()
    out = pd.DataFrame(index=first.index)
    out["path"] = first["path"]
    out["label"] = first["label"].astype("int64")
    out["class_name"] = first["class_name"]
    out["views_ok"] = g["_ok"].sum().astype("int64")
    out["views_failed"] = (g.size() - out["views_ok"]).astype("int64")
    out["status"] = np.where(out["views_ok"] > 0, "ok", "failed")
    ok = df[df["_ok"]]
    gok = ok.groupby("video_id", sort=True)
    vids, sc = _video_scores(ok, ensemble)
    pred, t1, t5 = _topk(sc, out.loc[vids, "label"].to_numpy())
    out["pred"] = pd.Series(pred, index=vids, dtype="Int64").reindex(out.index)
    out["top1"] = pd.Series(t1, index=vids, dtype="boolean").reindex(out.index)
    out["top5"] = pd.Series(t5, index=vids, dtype="boolean").reindex(out.index)
    for c in ("gmacs", "gmacs_fvcore", "gmacs_executed"):
        if c in df.columns:
            out[f"{c}_x_views"] = gok[c].sum(min_count=1).reindex(out.index)
    out["gmacs_per_view"] = gok["gmacs"].mean().reindex(out.index)
    for c in [c for c in df.columns if c.startswith(("bins.", "frac.")) or c == "frac_kept"]:
        out[c] = gok[c].mean().reindex(out.index)
    out[f"scores_{ensemble}"] = pd.Series(list(sc), index=vids, dtype=object).reindex(out.index)
    out = out.reset_index()
    out.attrs = _public_attrs(df)
    out.attrs["ensemble"] = ensemble
    return out


def video_table(log: pd.DataFrame, ensemble: str = "sum") -> pd.DataFrame:
    """One row per video.

    ``ensemble``: "sum" (softmax summed over the video's ok views, PySlowFast's default) or "max"
    (element-wise maximum over them, PySlowFast's ``ENSEMBLE_METHOD: max``).

    Columns: ``video_id, path, label, class_name, views_ok, views_failed, status`` ("ok" when at
    least one view is ok), ``pred`` (top-1 class id of the video scores), ``top1``, ``top5``
    (nullable bool; NA when unlabelled or failed), ``gmacs_x_views`` (sum over the ok views of
    per-view gmacs; likewise ``gmacs_fvcore_x_views``, ``gmacs_executed_x_views``),
    ``gmacs_per_view`` (mean), ``bins.<layer>`` (mean active bins over the ok views),
    ``frac.<layer>`` and ``frac_kept`` when B is known, ``scores_sum`` (summed softmax vector; with
    ``ensemble="max"`` ``scores_max``, the element-wise maximum). ``attrs["ensemble"]``.
    """
    return _video_level(_prepare(log), _check_ensemble(ensemble))


# ------------------------------------------------------------------------------ per class
def _pct(s: pd.Series, g) -> pd.Series:
    """Percentage of True among non-NA of a nullable boolean column, per group."""
    x = s.astype("Float64")
    return 100 * x.groupby(g).mean().astype("float64")


def _class_stats(views: pd.DataFrame, videos: pd.DataFrame, vkey: pd.Series, dkey: pd.Series, static: float | None) -> pd.DataFrame:
    okv = views[views["_ok"]]
    okk = vkey[views["_ok"]]
    okd = videos[videos["status"] == "ok"]
    okdk = dkey[videos["status"] == "ok"]
    idx = pd.Index(sorted(set(dkey)), name="class_name")
    out = pd.DataFrame(index=idx)
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
    gv = okv.groupby(okk)
    out["gmacs_per_view_mean"] = gv["gmacs"].mean()
    out["gmacs_per_view_std"] = gv["gmacs"].std()
    if "gmacs_fvcore" in okv.columns:
        out["gmacs_fvcore_per_view_mean"] = gv["gmacs_fvcore"].mean()
    out["gmacs_x_views_mean"] = okd.groupby(okdk)["gmacs_x_views"].mean()
    out["reduction_pct"] = 100 * (1 - out["gmacs_per_view_mean"] / static) if static else np.nan
    if not static:
        out = out.drop(columns="reduction_pct")
    cols = [c for c in views.columns if c.startswith(("bins.", "frac."))]
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


def _mean_class_acc(videos: pd.DataFrame) -> float:
    """Mean over the classes with a labelled ok video of their top-1 (%), NaN without any."""
    ok = videos[(videos["status"] == "ok") & videos["top1"].notna()]
    if not len(ok):
        return np.nan
    return mean_class_accuracy(ok["top1"].astype("float64").to_numpy(), ok["class_name"].to_numpy())


def per_class(
    log: pd.DataFrame,
    baseline: pd.DataFrame | None = None,
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
    _check_ensemble(ensemble)
    df = _prepare(log)
    diffs: list[str] = []
    base_df = None
    if baseline is not None:
        from atfr_analysis.analysis.comparable import check_comparable

        base_df = df if baseline is log else _prepare(baseline, "baseline")
        diffs = check_comparable(df, base_df, "baseline", allow=allow_incomparable)
    vids = _video_level(df, ensemble)
    static = _meta(df).get("static_gmacs")
    static = float(static) if isinstance(static, (int, float)) and static > 0 else None
    by_class = _class_stats(df, vids, df["class_name"], vids["class_name"], static)
    overall = _class_stats(
        df, vids, pd.Series(OVERALL, index=df.index), pd.Series(OVERALL, index=vids.index), static
    )
    out = pd.concat([by_class, overall]).reset_index()
    mca = np.full(len(out), np.nan)
    mca[-1] = _mean_class_acc(vids)
    out.insert(int(out.columns.get_loc("top5")) + 1, "mean_class_acc", mca)
    if base_df is not None:
        base = per_class(base_df, ensemble=ensemble).set_index("class_name")
        key = out["class_name"]
        out["top1_delta"] = out["top1"].to_numpy() - base["top1"].reindex(key).to_numpy()
        out["top5_delta"] = out["top5"].to_numpy() - base["top5"].reindex(key).to_numpy()
        out["mean_class_acc_delta"] = out["mean_class_acc"].to_numpy() - base["mean_class_acc"].reindex(key).to_numpy()
        out["gmacs_reduction_vs_baseline_pct"] = 100 * (
            1 - out["gmacs_per_view_mean"].to_numpy() / base["gmacs_per_view_mean"].reindex(key).to_numpy()
        )
    out.attrs = {"meta": dict(_meta(df)), "ensemble": ensemble}
    if diffs:
        out.attrs["not_comparable"] = diffs
    return out
