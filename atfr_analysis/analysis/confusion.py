"""Confusion matrix of a run (video-level predictions against labels) and its most confused
pairs of classes.

Rows are the true classes, columns the predicted ones, both by class id in the label map's order
(``run.json``'s ``class_names``); cells count the labelled ok videos. The figure is
row-normalised (each row: where the videos of that class went, in %) and, for many classes,
shows the most confused classes only, or a subset the user names.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from atfr_analysis.analysis.common import AnalysisError
from atfr_analysis.analysis.run_analysis import RunAnalysis, check_ensemble

__all__ = [
    "confusion_matrix",
    "most_confused_pairs",
    "most_confused_classes",
    "select_classes",
    "normalised_subset",
    "OTHER",
]

OTHER = "(other classes)"


def _class_names(meta: dict, videos: pd.DataFrame) -> list[str]:
    """Names of class ids 0..C-1: the label map's, else the log's (label, class_name) pairs."""
    names = [str(n) for n in (meta.get("class_names") or [])]
    try:
        C = int(meta.get("num_classes") or 0)
    except (TypeError, ValueError):
        C = 0
    lab = videos.loc[videos["label"] >= 0, "label"]
    pred = videos["pred"].dropna()
    C = max(C, len(names), int(lab.max()) + 1 if len(lab) else 0, int(pred.max()) + 1 if len(pred) else 0)
    known = dict(zip(videos["label"], videos["class_name"]))
    return [names[i] if i < len(names) else str(known.get(i, f"class {i}")) for i in range(C)]


def confusion_matrix(log: pd.DataFrame | RunAnalysis, ensemble: str = "sum") -> pd.DataFrame:
    """Counts of labelled ok videos: index ``true_class``, columns ``predicted`` (class names, in
    class-id order; all classes of the label map, so the matrix is square). Diagonal = top-1
    right. ``attrs``: ``videos`` (labelled ok videos counted), ``ensemble``, ``class_ids``."""
    check_ensemble(ensemble)
    a = RunAnalysis.of(log)
    v = a.videos(ensemble)
    names = _class_names(a.meta, v)
    C = len(names)
    ok = v[(v["status"] == "ok") & (v["label"] >= 0) & v["pred"].notna()]
    t = ok["label"].to_numpy(dtype="int64")
    p = ok["pred"].to_numpy(dtype="int64")
    counts = np.bincount(t * C + p, minlength=C * C).reshape(C, C) if C else np.zeros((0, 0), "int64")
    out = pd.DataFrame(counts, index=pd.Index(names, name="true_class"), columns=pd.Index(names, name="predicted"))
    out.attrs = {"videos": int(len(ok)), "ensemble": ensemble, "class_ids": list(range(C))}
    return out


def _as_matrix(x: pd.DataFrame, ensemble: str) -> pd.DataFrame:
    """A confusion matrix from a log, or the matrix itself."""
    if isinstance(x, pd.DataFrame) and x.index.name == "true_class" and x.columns.name == "predicted":
        return x
    return confusion_matrix(x, ensemble)


def most_confused_pairs(log_or_matrix: pd.DataFrame, n: int | None = 20, ensemble: str = "sum") -> pd.DataFrame:
    """The ``n`` (true, predicted) pairs of different classes with the most videos (all of them
    with ``n=None``):
    ``true_class, predicted, videos`` (count), ``true_videos`` (labelled videos of the true
    class), ``share_pct`` (videos / true_videos, %). Sorted by videos, then share, then class
    ids; pairs with no video are never listed."""
    cm = _as_matrix(log_or_matrix, ensemble)
    M = cm.to_numpy()
    rows = M.sum(axis=1)
    off = M.copy()
    np.fill_diagonal(off, 0)
    t, p = np.nonzero(off)
    c = off[t, p]
    share = 100 * c / rows[t]
    order = np.lexsort((p, t, -share, -c))
    if n is not None:
        order = order[: max(0, int(n))]
    out = pd.DataFrame(
        {
            "true_class": cm.index.to_numpy()[t[order]],
            "predicted": cm.columns.to_numpy()[p[order]],
            "videos": c[order].astype("int64"),
            "true_videos": rows[t[order]].astype("int64"),
            "share_pct": share[order],
        }
    )
    out.attrs = {"videos": cm.attrs.get("videos"), "ensemble": cm.attrs.get("ensemble", ensemble)}
    return out


def most_confused_classes(cm: pd.DataFrame, n: int) -> list[int]:
    """Positions (class ids) of the ``n`` classes involved in the most errors (videos of the class
    predicted as another, plus videos of other classes predicted as it); ties to the lower id;
    returned in class-id order. Classes with no error are never picked."""
    M = cm.to_numpy()
    off = M.copy()
    np.fill_diagonal(off, 0)
    errors = off.sum(axis=1) + off.sum(axis=0)
    order = np.lexsort((np.arange(len(errors)), -errors))
    pick = [int(i) for i in order[: max(0, int(n))] if errors[i] > 0]
    return sorted(pick)


def select_classes(cm: pd.DataFrame, classes: list[str] | None = None, top: int = 20) -> tuple[list[int], str]:
    """Which classes a confusion figure shows, and a phrase saying why: the user's ``classes``
    (names; AnalysisError for unknown ones), all of them when there are at most ``top``, else the
    ``top`` most confused."""
    names = [str(x) for x in cm.index]
    C = len(names)
    if classes:
        pos = {n: i for i, n in reversed(list(enumerate(names)))}
        unknown = [c for c in classes if c not in pos]
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise AnalysisError(
                f"unknown class name(s) for the confusion matrix: {shown} (the run has {C} classes, "
                f"e.g. {', '.join(repr(n) for n in names[:3])})"
            )
        ids = sorted({pos[c] for c in classes})
        return ids, f"{len(ids)} chosen of {C} classes"
    if int(top) < 1:
        raise AnalysisError(f"top must be >= 1, got {top}")
    if C <= int(top):
        return list(range(C)), f"all {C} classes"
    ids = most_confused_classes(cm, int(top))
    if not ids:  # no error at all: show the first classes
        ids = list(range(int(top)))
    return ids, f"the {len(ids)} most confused of {C} classes"


def normalised_subset(cm: pd.DataFrame, ids: list[int]) -> pd.DataFrame:
    """Row-normalised (%) confusion among the classes ``ids``; when they are not all classes, a
    last column ``(other classes)`` holds the share of each row predicted outside them, so every
    row with videos sums to 100. Rows without videos are NaN."""
    M = cm.to_numpy().astype("float64")
    rows = M.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        P = 100 * M / rows[:, None]
    sub = P[np.ix_(ids, ids)]
    names = [str(cm.index[i]) for i in ids]
    out = pd.DataFrame(sub, index=pd.Index(names, name="true_class"), columns=pd.Index(names, name="predicted"))
    if len(ids) < len(cm):
        out[OTHER] = np.where(rows[ids] > 0, 100 - np.nan_to_num(sub).sum(axis=1), np.nan)
        out[OTHER] = out[OTHER].clip(lower=0)
    out.attrs = {"row_videos": rows[ids].astype("int64").tolist()}
    return out
