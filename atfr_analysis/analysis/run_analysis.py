"""The analysis of one run, computed once and then queried (as fvcore's ``JitModelAnalysis``).

``RunAnalysis(log)`` checks a views table (``atfr_analysis.load_run``) and prepares it once:
``views`` (status, class names, view indices filled; float cost and bins columns; the fraction of
bins kept per SGS layer; an ``ok`` flag per view), ``layers`` (the SGS layers), ``num_bins`` (B
per layer), ``meta`` (``run.json``), whether the run is ``complete`` and whether its scores are
finite. ``videos(ensemble)`` is the video table, computed once per ensemble and cached;
``accuracy(ensemble)`` the headline numbers (top-1, top-5, mean class accuracy) every reader
takes: the report, the tables, the exports and the profile's closing summary
(:func:`atfr_analysis.profile.schema.video_accuracy`).

Every analysis function takes a ``RunAnalysis`` or a log (``f(log)`` builds the analysis:
:meth:`RunAnalysis.of`), so a report builds one per run and queries it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from atfr_analysis.analysis.common import AnalysisError, log_meta, run_name
from atfr_analysis.profile.log import IncompleteRunError, incomplete_run_message
from atfr_analysis.profile.schema import bins_column, bins_layers, ranked_classes, video_accuracy

__all__ = [
    "RunAnalysis",
    "Accuracy",
    "IncompleteRunError",
    "ENSEMBLES",
    "UNKNOWN_CLASS",
    "INCOMPLETE",
    "check_ensemble",
    "frac_column",
    "frac_layers",
]

UNKNOWN_CLASS = "(unknown)"
#: how a video's views are combined: sum of softmax (PySlowFast's default) or element-wise max
ENSEMBLES = ("sum", "max")
#: the mark every output of an unfinished run carries
INCOMPLETE = "INCOMPLETE"
FRAC_PREFIX = "frac."
CHUNK_ROWS = 20_000  # rows of score vectors stacked at once
LOG_COLUMNS = ("path", "label", "class_name", "view", "temporal_index", "spatial_index", "status")
COST_COLUMNS = ("gmacs", "gmacs_fvcore", "gmacs_executed")


def check_ensemble(ensemble: str) -> str:
    if ensemble not in ENSEMBLES:
        raise AnalysisError(f"unknown ensemble={ensemble!r}: choose one of {', '.join(repr(e) for e in ENSEMBLES)}")
    return ensemble


def frac_column(layer: str) -> str:
    """The column of an SGS layer's fraction of bins kept (active bins / B), made by the analysis."""
    return FRAC_PREFIX + layer


def frac_layers(columns) -> list[str]:
    """The SGS layers of the ``frac.<layer>`` columns among ``columns``, in their order."""
    return [c[len(FRAC_PREFIX) :] for c in columns if isinstance(c, str) and c.startswith(FRAC_PREFIX)]


@dataclass(frozen=True)
class Accuracy:
    """Video-level top-1, top-5 and mean class accuracy (%) of the labelled ok videos; NaN (with
    ``why``) when they cannot be computed."""

    top1: float
    top5: float
    mean_class_acc: float
    labelled: int
    why: str = ""


class SharedMeta(dict):
    """The run metadata inside the attrs of the prepared frames: pandas deep-copies ``attrs`` on
    every operation, and a 400-name class list made that a fifth of the run time."""

    def __deepcopy__(self, memo):
        return self


def check_log(log: Any, name: str = "log") -> None:
    if not isinstance(log, pd.DataFrame):
        raise AnalysisError(
            f"{name} must be a pandas DataFrame (a views table from load_run), got {type(log).__name__}"
        )
    if len(log) == 0:
        raise AnalysisError(f"{name} is empty: no views were logged")
    missing = [c for c in ("video_id", "gmacs") if c not in log.columns]
    if missing:
        raise AnalysisError(f"{name} is not a views table: missing column(s) {', '.join(missing)}")
    if "scores" not in log.columns and not {"top5_ids", "top5_scores"} <= set(log.columns):
        raise AnalysisError(f"{name} is not a views table: it has neither scores nor top5_ids/top5_scores")
    if "status" in log.columns and not (log["status"] == "ok").any():
        raise AnalysisError(f"{name} has no ok views: all {len(log)} views failed")
    missing = [c for c in LOG_COLUMNS if c not in log.columns]  # what the log's schema guarantees
    if missing:
        raise AnalysisError(f"{name} is not a views table: missing column(s) {', '.join(missing)}")


def as_float(s: pd.Series) -> np.ndarray:
    """A numeric (possibly nullable) column as float64 with NaN for missing."""
    return pd.to_numeric(s, errors="coerce").astype("Float64").to_numpy(dtype="float64", na_value=np.nan)


def layer_bins(meta: dict, layers: list[str]) -> dict[str, int]:
    """B per SGS layer, for the ``layers`` whose ``num_bins`` the metadata gives."""
    sgs = meta.get("sgs_layers") or {}
    out: dict[str, int] = {}
    for layer in layers:
        info = sgs.get(layer)
        b = info.get("num_bins") if isinstance(info, dict) else info
        try:
            b = int(b)
        except (TypeError, ValueError):
            continue
        if b > 0:
            out[layer] = b
    return out


def class_names_filled(df: pd.DataFrame, names: list) -> pd.Series:
    """The log's class names; empty ones from the label map, else ``class <label>`` / unknown."""
    cn = df["class_name"].astype(object)
    cn = cn.where(cn.notna() & (cn.astype(str).str.strip() != ""), None)
    if cn.isna().any():
        lab = df["label"].to_numpy()
        lookup = np.array([str(x) for x in names] + [None], dtype=object)
        from_meta = lookup[np.where((lab >= 0) & (lab < len(names)), lab, len(names))]
        cn = cn.where(cn.notna(), pd.Series(from_meta, index=df.index))
        cn = cn.where(cn.notna(), df["label"].map(lambda l: f"class {l}" if l >= 0 else UNKNOWN_CLASS))
    return cn.astype(str)


def prepare(log: pd.DataFrame, meta: dict, B: dict[str, int]) -> pd.DataFrame:
    """A normalised copy of a checked log: class names filled, float cost and bins columns,
    ``frac.<layer>`` and ``frac_kept`` where B is known, an ``_ok`` flag; sorted by (video, view)."""
    df = log.copy()
    df["class_name"] = class_names_filled(df, meta.get("class_names") or [])
    for c in COST_COLUMNS:
        if c in df.columns:
            df[c] = as_float(df[c])
    fracs = []
    for layer in bins_layers(df.columns):
        df[bins_column(layer)] = as_float(df[bins_column(layer)])
        if layer in B:
            df[frac_column(layer)] = df[bins_column(layer)] / B[layer]
            fracs.append(frac_column(layer))
    if fracs:
        df["frac_kept"] = df[fracs].mean(axis=1, skipna=True)
    df["_ok"] = df["status"].eq("ok")
    df = df.sort_values(["video_id", "view"], kind="stable").reset_index(drop=True)
    df.attrs = {k: v for k, v in log.attrs.items() if k != "meta"}
    df.attrs["meta"] = SharedMeta(meta)
    return df


class RunAnalysis:
    """One run's log, checked and prepared once (see the module doc). ``name`` names the log in
    the errors ("log", "baseline", "runs[1]")."""

    def __init__(self, log: pd.DataFrame, name: str = "log"):
        check_log(log, name)
        self.meta: dict[str, Any] = log_meta(log)
        self.layers: list[str] = bins_layers(log.columns)
        self.num_bins: dict[str, int] = layer_bins(self.meta, self.layers)
        self.views: pd.DataFrame = prepare(log, self.meta, self.num_bins)
        self.log = log
        self.name = run_name(log)
        self.run_dir = log.attrs.get("run_dir")
        self._videos: dict[str, pd.DataFrame] = {}
        self._nonfinite: int | None = None

    @classmethod
    def of(cls, log: RunAnalysis | pd.DataFrame, name: str = "log") -> RunAnalysis:
        """``log`` itself when it is an analysis already, else its analysis."""
        return log if isinstance(log, RunAnalysis) else cls(log, name)

    # ------------------------------------------------------------------- facts of the run
    @property
    def ok(self) -> pd.Series:
        """Per view of ``views``: logged as ok."""
        return self.views["_ok"]

    @property
    def is_atfr(self) -> bool:
        return bool(self.layers) or bool(self.meta.get("sgs_layers"))

    @property
    def views_per_video(self) -> int:
        """``meta["views"] * meta["crops"]``, else the most common count in the log."""
        try:
            return int(self.meta["views"]) * int(self.meta["crops"])
        except (KeyError, TypeError, ValueError):
            counts = self.views.groupby("video_id").size()
            return int(counts.mode().max()) if len(counts) else 0

    @property
    def num_classes(self) -> int | None:
        try:
            return int(self.meta.get("num_classes"))
        except (TypeError, ValueError):
            names = self.meta.get("class_names")
            return len(names) if names else None

    @property
    def static_gmacs(self) -> float | None:
        s = self.meta.get("static_gmacs")
        return float(s) if isinstance(s, (int, float)) and s > 0 else None

    @property
    def videos_logged(self) -> int:
        return int(self.views["video_id"].nunique())

    @property
    def videos_total(self) -> int | None:
        """Videos in the run's list (``run.json``'s ``num_videos``), None when not recorded."""
        n = self.meta.get("num_videos")
        return int(n) if isinstance(n, (int, np.integer)) and not isinstance(n, bool) else None

    @property
    def complete(self) -> bool:
        """Every video of the run's list is logged (True when the list size is not recorded)."""
        return self.videos_total is None or self.videos_logged >= self.videos_total

    def incomplete_note(self) -> str:
        """``INCOMPLETE: 40 of 84 videos logged ...`` for an unfinished run, else ``""``."""
        if self.complete:
            return ""
        return (
            f"{INCOMPLETE}: {self.videos_logged} of {self.videos_total} videos of the list logged "
            "(a profile still writing, or interrupted); every number covers those videos only"
        )

    def require_complete(self, allow_incomplete: bool = False) -> None:
        """Raise :class:`IncompleteRunError` (one line) for an unfinished run unless allowed."""
        if self.complete or allow_incomplete:
            return
        raise IncompleteRunError(incomplete_run_message(self.name, self.videos_logged, self.videos_total))

    @property
    def nonfinite_views(self) -> int:
        """Ok views whose score vector holds NaN or inf (the model's output was not a number)."""
        if self._nonfinite is None:
            self._nonfinite = count_nonfinite(self.views.loc[self.ok])
        return self._nonfinite

    def nonfinite_note(self) -> str:
        n = self.nonfinite_views
        if not n:
            return ""
        return (
            f"{n} of {int(self.ok.sum())} ok views have non-finite scores (NaN or inf: the model's output is not "
            "a number, e.g. non-finite weights), so no accuracy is computed"
        )

    # ------------------------------------------------------------------- derived tables
    def videos(self, ensemble: str = "sum") -> pd.DataFrame:
        """The video table (see :func:`atfr_analysis.analysis.aggregate.video_table`), cached per
        ensemble; treat it as read-only."""
        check_ensemble(ensemble)
        if ensemble not in self._videos:
            self._videos[ensemble] = video_level(self, ensemble)
        return self._videos[ensemble]

    def accuracy(self, ensemble: str = "sum") -> Accuracy:
        """The headline numbers: video-level top-1, top-5 and mean class accuracy (%)."""
        v = self.videos(ensemble)
        ok = v[(v["status"] == "ok") & v["top1"].notna()]
        why = self.nonfinite_note() or ("" if len(ok) else "no labelled videos")
        if not len(ok):
            return Accuracy(np.nan, np.nan, np.nan, 0, why)
        t1, t5, mca = video_accuracy(
            ok["top1"].astype(bool).to_numpy(), ok["top5"].astype(bool).to_numpy(), ok["class_name"].to_numpy()
        )
        return Accuracy(t1, t5, mca, int(len(ok)))


def count_nonfinite(ok: pd.DataFrame) -> int:
    """Rows of ``ok`` whose ``scores`` vector holds a NaN or an inf (top-5 scores without it)."""
    col = "scores" if "scores" in ok.columns else "top5_scores"
    if col not in ok.columns:
        return 0
    vals = [x for x in ok[col].to_numpy(dtype=object) if x is not None and len(x)]
    bad = 0
    for i in range(0, len(vals), CHUNK_ROWS):
        chunk = vals[i : i + CHUNK_ROWS]
        try:
            bad += int((~np.isfinite(np.stack(chunk).astype("float64"))).any(axis=1).sum())
        except ValueError:  # vectors of different lengths: counted one by one
            bad += sum(int(not np.isfinite(np.asarray(x, dtype="float64")).all()) for x in chunk)
    return bad


def topk(scores: np.ndarray, labels: np.ndarray) -> tuple[pd.array, pd.array, pd.array]:
    """(top-1 id, top-1 correct, top-5 correct) per row; NA where unlabelled or without finite scores."""
    n = len(labels)
    valid = np.isfinite(scores).all(axis=1) if scores.size else np.zeros(n, bool)
    pred = np.full(n, -1, dtype="int64")
    t1 = np.zeros(n, bool)
    t5 = np.zeros(n, bool)
    if valid.any():
        order = ranked_classes(scores[valid], 5)
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


def video_scores(
    ok: pd.DataFrame, ensemble: str = "sum", num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(video ids, video-level scores) over the given ok rows (sorted by video_id): the sum of the
    softmax over a video's views (``ensemble="sum"``) or its element-wise maximum (``"max"``).

    Rows without a score vector are skipped; a video none of whose rows has one gets NaN.
    Without a ``scores`` column the top-5 (ids, scores) pairs are combined instead (sparse: the
    classes outside a view's top 5 count as 0 there)."""
    check_ensemble(ensemble)
    reduce = np.add if ensemble == "sum" else np.maximum
    vids_all = ok["video_id"].to_numpy()
    uniq = np.unique(vids_all)
    if "scores" in ok.columns:
        has = ok["scores"].notna().to_numpy()
        col, vids = ok["scores"].to_numpy(dtype=object)[has], vids_all[has]
        if len(col) == 0:
            return uniq, np.full((len(uniq), 1), np.nan)
        have, out = reduce_dense(col, vids, reduce)
    else:
        have, out = uniq, reduce_top5(ok, uniq, reduce, num_classes)
    if len(have) == len(uniq):
        return uniq, out
    full = np.full((len(uniq), out.shape[1]), np.nan)
    full[np.searchsorted(uniq, have)] = out
    return uniq, full


def reduce_dense(col: np.ndarray, vids: np.ndarray, reduce) -> tuple[np.ndarray, np.ndarray]:
    """(videos, reduced score vectors) of full score vectors, stacked ``CHUNK_ROWS`` rows at a time."""
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
        j = max(i + 1, int(np.searchsorted(bounds, bounds[i] + CHUNK_ROWS, side="right")) - 1)
        j = min(j, len(have))
        mat = np.stack(col[bounds[i] : bounds[j]]).astype("float64")
        out[i:j] = reduce.reduceat(mat, starts[i:j] - bounds[i], axis=0)
        i = j
    return have, out


def reduce_top5(ok: pd.DataFrame, uniq: np.ndarray, reduce, num_classes: int | None) -> np.ndarray:
    """Reduced sparse score vectors from the views' top-5 (ids, scores) pairs."""
    ids = ok["top5_ids"].to_numpy(dtype=object)
    sc = ok["top5_scores"].to_numpy(dtype=object)
    C = num_classes or (1 + max((int(np.max(x)) for x in ids if x is not None and len(x)), default=0))
    pos = {v: i for i, v in enumerate(uniq)}
    out = np.zeros((len(uniq), C))
    for v, a, b in zip(ok["video_id"].to_numpy(), ids, sc):
        if a is not None and b is not None:
            reduce.at(out[pos[v]], np.asarray(a, dtype="int64"), np.asarray(b, dtype="float64"))
    return out


def public_attrs(df: pd.DataFrame) -> dict[str, Any]:
    """attrs for a frame handed to the user: plain dicts."""
    out = dict(df.attrs)
    if "meta" in out:
        out["meta"] = dict(out["meta"])
    return out


def video_level(a: RunAnalysis, ensemble: str = "sum") -> pd.DataFrame:
    """Per-video table of an analysis (ok rows used, failed rows counted); with non-finite
    scores in the run no video has a prediction (no accuracy is made from them)."""
    df = a.views
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
    vids, sc = video_scores(ok, ensemble, a.num_classes)
    pred, t1, t5 = topk(sc, out.loc[vids, "label"].to_numpy())
    if a.nonfinite_views:
        pred[:], t1[:], t5[:] = pd.NA, pd.NA, pd.NA
    out["pred"] = pd.Series(pred, index=vids, dtype="Int64").reindex(out.index)
    out["top1"] = pd.Series(t1, index=vids, dtype="boolean").reindex(out.index)
    out["top5"] = pd.Series(t5, index=vids, dtype="boolean").reindex(out.index)
    for c in COST_COLUMNS:
        if c in df.columns:
            out[f"{c}_x_views"] = gok[c].sum(min_count=1).reindex(out.index)
    out["gmacs_per_view"] = gok["gmacs"].mean().reindex(out.index)
    for c in [bins_column(x) for x in a.layers] + [frac_column(x) for x in frac_layers(df.columns)]:
        out[c] = gok[c].mean().reindex(out.index)
    if "frac_kept" in df.columns:
        out["frac_kept"] = gok["frac_kept"].mean().reindex(out.index)
    out[f"scores_{ensemble}"] = pd.Series(list(sc), index=vids, dtype=object).reindex(out.index)
    out = out.reset_index()
    out.attrs = public_attrs(df)
    out.attrs["ensemble"] = ensemble
    return out
