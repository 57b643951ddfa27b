"""The log's schema (version 1): every column of the views and videos tables, its dtype, where
its value comes from, the row builders, and the video-level scores.

Every writer (``profile``, ``Profiler.frame``, ``log.write_parts``) and reader (``log.load_run``,
``load_videos``, the summary, the analysis) takes column names, dtypes and the video-level
scores from here. The README's section "The log" documents the same columns.

Adding a column
---------------
Add one :class:`Column` line to ``VIEWS`` (one row per video and view) or ``VIDEOS`` (one row
per video), at the position the column should take in the table. Its ``source`` says where the
row builders find the value, so for the data layer's facts that line is the whole change:

* ``"video"``: a fact of the video: the list entry's attribute of that name (``video_id``,
  ``path``, ``label``, ``class_name``), else the key of that name in the data layer's item
  (``ViewDataset``: e.g. a ``rotation`` the decoder reports), else ``missing``;
* ``"view"``: the data layer's per-view metadata (``item["views"][name][view]``: e.g.
  ``frame_indices``, a crop box), ``missing`` for a failed view (``view``, ``temporal_index``
  and ``spatial_index`` of a failed view are computed from the view number);
* ``"result"``: the model's per-view output (:func:`view_results`; a new model output also needs
  its line there);
* ``"row"``: set by the builder itself (``status``, ``error``, the video row's ``views_ok``,
  ``scores_sum``, ``top1_id``).

``dtype`` is the pandas dtype the writers cast to (``None``: as pandas infers it, for text and
list columns; ``arrow`` then gives list columns their Parquet type). ``missing`` is the value of
a failed view, and what the readers fill in when an older log lacks the column, so logs written
before a column existed still read (schema version 1 throughout). ``bins.<layer>`` (one column
per SGS layer, at the position of ``BINS``) is spelled by :func:`bins_column` only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = [
    "SCHEMA_VERSION",
    "Column",
    "VIEWS",
    "VIDEOS",
    "BINS",
    "TOPK",
    "bins_column",
    "bins_layers",
    "view_columns",
    "video_columns",
    "view_column_names",
    "video_column_names",
    "video_facts",
    "view_results",
    "view_row",
    "failed_view_rows",
    "NONFINITE_SCORES",
    "nonfinite_scores_error",
    "video_row",
    "views_frame",
    "videos_frame",
    "conform",
    "to_arrow",
    "view_topk",
    "sum_view_scores",
    "ranked_classes",
    "topk_hits",
    "mean_class_accuracy",
    "video_accuracy",
]

SCHEMA_VERSION = 1
#: classes kept per view in ``top5_ids`` / ``top5_scores``
TOPK = 5
_BINS_PREFIX = "bins."


@dataclass(frozen=True)
class Column:
    """One column of a log table (see the module docstring)."""

    name: str
    dtype: str | None  # the pandas dtype writers cast to; None: as inferred (text, lists)
    source: str  # "video" | "view" | "result" | "row" | "bins"
    missing: Any = None  # a failed view's value; filled in for logs older than the column
    arrow: str | None = None  # Parquet type of a list column: "list<int64>", "list<float32>"


_NAN = math.nan
#: the error (and failure reason) of a view whose scores hold NaN or inf: a failed row, never a
#: result; its video fails with it (``nonfinite_scores_error``)
NONFINITE_SCORES = "non-finite scores"
_NULLABLE = ("Int64",)  # pandas dtypes that Parquet cannot round-trip when nulls are present
#: the place of the bins.<layer> columns (one per SGS layer) in VIEWS
BINS = Column("bins.<layer>", "Int64", "bins")

VIEWS: tuple[Column, ...] = (
    Column("video_id", "int64", "video"),
    Column("path", None, "video"),
    Column("label", "int64", "video"),
    Column("class_name", None, "video"),
    Column("view", "int64", "view"),
    Column("temporal_index", "int64", "view"),
    Column("spatial_index", "int64", "view"),
    Column("frame_start", "int64", "view", missing=-1),
    Column("frame_end", "int64", "view", missing=-1),
    Column("frame_indices", None, "view", arrow="list<int64>"),
    Column("resized_hw", None, "view", arrow="list<int64>"),
    Column("crop_box", None, "view", arrow="list<int64>"),
    Column("status", None, "row"),
    Column("error", "object", "row"),
    BINS,
    Column("gmacs", "float64", "result", missing=_NAN),
    Column("gmacs_fvcore", "float64", "result", missing=_NAN),
    Column("gmacs_executed", "float64", "result", missing=_NAN),
    Column("top5_ids", None, "result", arrow="list<int64>"),
    Column("top5_scores", None, "result", arrow="list<float32>"),
    Column("scores", None, "result", arrow="list<float32>"),
)

VIDEOS: tuple[Column, ...] = (
    Column("video_id", "int64", "video"),
    Column("path", None, "video"),
    Column("label", "int64", "video"),
    Column("class_name", None, "video"),
    Column("status", None, "row"),
    Column("error", None, "row"),
    Column("rotation", "Int64", "video"),
    Column("partial", "bool", "video", missing=False),
    Column("views_ok", "int64", "row", missing=0),
    Column("scores_sum", None, "row", arrow="list<float32>"),
    Column("top1_id", "int64", "row", missing=-1),
)


# ----------------------------------------------------------------------------- names
def bins_column(layer: str) -> str:
    """The column of an SGS layer's active bins B'."""
    return _BINS_PREFIX + layer


def layer_name(name: str) -> str:
    """The SGS layer a ``bins.<layer>`` column names; any other name as it is (a bare layer)."""
    return name.removeprefix(_BINS_PREFIX)


def bins_layers(columns: Iterable[Any]) -> list[str]:
    """The SGS layer names of the ``bins.<layer>`` columns among ``columns``, in their order."""
    return [c[len(_BINS_PREFIX) :] for c in columns if isinstance(c, str) and c.startswith(_BINS_PREFIX)]


def view_columns(layers: Sequence[str]) -> list[Column]:
    """The views table's columns for a model with these SGS layers."""
    return list(_view_columns(VIEWS, tuple(layers)))


@functools.lru_cache(maxsize=64)
def _view_columns(views: tuple[Column, ...], layers: tuple[str, ...]) -> tuple[Column, ...]:
    out: list[Column] = []
    for c in views:
        if c is BINS:
            out += [Column(bins_column(l), BINS.dtype, "bins", BINS.missing) for l in layers]
        else:
            out.append(c)
    return tuple(out)


def video_columns() -> list[Column]:
    return list(VIDEOS)


def view_column_names(layers: Sequence[str] = ()) -> list[str]:
    return [c.name for c in view_columns(layers)]


def video_column_names() -> list[str]:
    return [c.name for c in VIDEOS]


# ----------------------------------------------------------------------------- row builders
def video_facts(entry: Any, item: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``"video"`` columns of both tables for one list entry (and the data layer's item)."""
    item = item or {}
    out: dict[str, Any] = {}
    for c in _video_sourced():
        if hasattr(entry, c.name):
            v = getattr(entry, c.name)
        else:
            v = item.get(c.name)
            v = c.missing if v is None else v
        out[c.name] = _plain(c, v)
    return out


def _video_sourced() -> list[Column]:
    seen: dict[str, Column] = {}
    for c in VIEWS + VIDEOS:
        if c.source == "video":
            seen.setdefault(c.name, c)
    return list(seen.values())


def _plain(c: Column, v: Any) -> Any:
    if c.name == "path":
        return str(v)
    if c.dtype == "int64" and v is not None:
        return int(v)
    return v


def view_topk(scores: torch.Tensor, k: int = TOPK) -> tuple[list[list[int]], list[list[float]]]:
    """Each view's top-k classes (ids, scores) of a ``[N, K]`` score tensor (k capped at K)."""
    top = scores.topk(min(k, scores.shape[1]), dim=1)
    return top.indices.tolist(), top.values.tolist()


def view_results(
    scores: torch.Tensor,
    bins: torch.Tensor,
    gmacs: Sequence[float],
    gmacs_fvcore: Sequence[float],
    gmacs_executed: Sequence[float],
    layers: Sequence[str],
) -> list[dict[str, Any]]:
    """The ``"result"`` and ``bins`` columns of each view of a forward pass: ``scores`` ``[N, K]``
    float32 softmax on the host, ``bins`` ``[N, L]`` active bins, the GMACs lists."""
    ids, vals = view_topk(scores)
    rows, bin_rows = scores.tolist(), bins.tolist()
    out = []
    for v in range(len(rows)):
        r = {bins_column(l): int(bin_rows[v][j]) for j, l in enumerate(layers)}
        r.update(
            gmacs=float(gmacs[v]),
            gmacs_fvcore=float(gmacs_fvcore[v]),
            gmacs_executed=float(gmacs_executed[v]),
            top5_ids=ids[v],
            top5_scores=vals[v],
            scores=rows[v],
        )
        out.append(r)
    return out


def _view_key(view: int, crops: int) -> dict[str, int]:
    return {"view": view, "temporal_index": view // crops, "spatial_index": view % crops}


def view_row(
    video: Mapping[str, Any],
    view: int,
    crops: int,
    layers: Sequence[str],
    *,
    meta: Mapping[str, Sequence[Any]] | None = None,
    result: Mapping[str, Any] | None = None,
    error: str | None = None,
    meta_row: int | None = None,
) -> dict[str, Any]:
    """One views row: ``ok`` with the data layer's per-view ``meta`` (lists indexed by
    ``meta_row``, default ``view``: a partial video's lists hold only the views that decoded)
    and the model's ``result`` for it; ``failed`` with ``error`` when ``result`` is ``None``."""
    at = view if meta_row is None else meta_row
    ok = result is not None
    key = _view_key(view, crops)
    row: dict[str, Any] = {}
    for c in _view_columns(VIEWS, tuple(layers)):
        if c.source == "video":
            row[c.name] = video.get(c.name, c.missing)
        elif c.source == "view":
            if ok and meta is not None and c.name in meta:
                v = meta[c.name][at]
                row[c.name] = int(v) if c.dtype == "int64" else v
            else:
                row[c.name] = key.get(c.name, c.missing)
        elif c.source in ("result", "bins"):
            row[c.name] = result.get(c.name, c.missing) if ok else c.missing
    row["view"] = view
    row["status"] = "ok" if ok else "failed"
    row["error"] = None if ok else error
    return row


def nonfinite_scores_error(scores: torch.Tensor) -> str | None:
    """The error of a video whose ``[N, K]`` view scores hold NaN or inf (``None`` when all are
    finite): ``non-finite scores: k of N views (NaN or inf)``; such a video fails as a whole."""
    bad = int((~torch.isfinite(scores)).any(dim=1).sum())
    if not bad:
        return None
    return f"{NONFINITE_SCORES}: {bad} of {scores.shape[0]} views (NaN or inf); no result is made from them"


def failed_view_rows(video: Mapping[str, Any], error: str, layers: Sequence[str], views: int, crops: int) -> list[dict]:
    """The rows of a video none of whose ``views`` could be profiled."""
    return [view_row(video, v, crops, layers, error=error) for v in range(views)]


def video_row(video: Mapping[str, Any], view_scores: torch.Tensor | None, error: str | None = None) -> dict[str, Any]:
    """The videos row: ``ok`` with the ``[n, K]`` softmax of its profiled views (summed as
    PySlowFast's TestMeter does; ``error``: why some views failed, a partial video), ``failed``
    with ``error`` when ``view_scores`` is ``None``."""
    row = {c.name: video.get(c.name, c.missing) for c in VIDEOS if c.source == "video"}
    if view_scores is None or len(view_scores) == 0:
        return row | {"status": "failed", "error": error, "views_ok": 0, "scores_sum": None, "top1_id": -1}
    acc = sum_view_scores(view_scores)
    return row | {
        "status": "ok",
        "error": error,
        "views_ok": int(view_scores.shape[0]),
        "scores_sum": acc.tolist(),
        "top1_id": int(ranked_classes(acc.numpy()[None], 1)[0, 0]),
    }


# ----------------------------------------------------------------------------- video-level scores
def sum_view_scores(scores: torch.Tensor) -> torch.Tensor:
    """The video's scores: its views' softmax ``[n, K]`` summed view by view in float32 (PySlowFast
    TestMeter: ``video_preds[video] += preds``), so the sum is bit-equal to theirs."""
    acc = torch.zeros(scores.shape[1], dtype=torch.float32)
    for v in range(scores.shape[0]):
        acc += scores[v]
    return acc


def ranked_classes(scores: np.ndarray, k: int) -> np.ndarray:
    """``[N, k]`` class ids by descending score, ties towards the lower id (k capped at K)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, : min(k, scores.shape[1])]


def topk_hits(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per row: is ``labels`` among the ``k`` highest ``scores`` (video-level top-k)."""
    return (ranked_classes(scores, k) == np.asarray(labels)[:, None]).any(axis=1)


def mean_class_accuracy(correct, labels) -> float:
    """Mean over the distinct labels of the share of right top-1 among that label's videos, in %
    (mmaction2's ``mean_class_accuracy`` over the classes present); NaN for no video.
    ``correct``: top-1 right per video (bools); ``labels``: the class id (or name) per video."""
    c = pd.Series(np.asarray(correct, dtype="float64"))
    if not len(c):
        return math.nan
    return float(100 * c.groupby(np.asarray(labels)).mean().mean())


def video_accuracy(hit1, hit5, classes) -> tuple[float, float, float]:
    """The headline numbers of labelled videos, in %: top-1, top-5 and mean class accuracy (NaN
    for no video). ``hit1`` / ``hit5``: top-1 / top-5 right per video; ``classes``: the class
    (id or name) per video. The profile's summary and the analysis both take them from here."""
    h1 = np.asarray(hit1, dtype="float64")
    if not len(h1):
        return math.nan, math.nan, math.nan
    h5 = np.asarray(hit5, dtype="float64")
    return float(100 * h1.mean()), float(100 * h5.mean()), mean_class_accuracy(h1, classes)


# ----------------------------------------------------------------------------- frames and Parquet
def _cast(df: pd.DataFrame, cols: Sequence[Column]) -> pd.DataFrame:
    for c in cols:
        if c.arrow and df[c.name].dtype != object:  # a list column the rows did not give: nulls, not NaN
            df[c.name] = pd.Series([None] * len(df), index=df.index, dtype=object)
        if c.dtype is not None:
            df[c.name] = df[c.name].astype(c.dtype)
    return df


def views_frame(rows: list[dict], layers: Sequence[str]) -> pd.DataFrame:
    """Views rows as a frame of the schema's columns and dtypes."""
    cols = view_columns(layers)
    return _cast(pd.DataFrame(rows, columns=[c.name for c in cols]), cols)


def videos_frame(rows: list[dict]) -> pd.DataFrame:
    return _cast(pd.DataFrame(rows, columns=video_column_names()), VIDEOS)


def conform(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """A table read from Parquet in the schema's dtypes: nullable integers (``bins.<layer>``) as
    ``Int64`` (Parquet gives floats when they hold nulls), columns an older log lacks filled with
    their ``missing`` value at their place."""
    cols = view_columns(bins_layers(df.columns)) if table == "views" else video_columns()
    absent = [c for c in cols if c.name not in df.columns]
    if absent:
        df = df.copy()
        for c in absent:
            df[c.name] = [c.missing] * len(df)
        names = [c.name for c in cols]
        df = df[names + [c for c in df.columns if c not in names]]
    for c in cols:
        if c.dtype is not None and (c.dtype in _NULLABLE or c in absent):
            df[c.name] = df[c.name].astype(c.dtype)
    return df


def to_arrow(df: pd.DataFrame, table: str):
    """A frame as an Arrow table: list columns typed by the schema, all-null columns as text."""
    import pyarrow as pa

    types = {"list<int64>": pa.list_(pa.int64()), "list<float32>": pa.list_(pa.float32())}
    cols = view_columns(bins_layers(df.columns)) if table == "views" else video_columns()
    arrow = {c.name: types[c.arrow] for c in cols if c.arrow}
    fields = []
    for name in df.columns:
        t = arrow.get(name) or (pa.Array.from_pandas(df[name]).type if len(df) else pa.null())
        fields.append(pa.field(name, pa.string() if t == pa.null() else t))
    return pa.Table.from_pandas(df, schema=pa.schema(fields), preserve_index=False)
