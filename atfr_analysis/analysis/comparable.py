"""Whether two runs can be compared: the same videos, the same classes, the same views, and not
the same run twice.

A baseline (``atfr report --baseline``, ``per_class(log, baseline)``, ``paper_table(...,
baselines=...)``) or a second run in one table must cover

* the same videos: the same set of video paths in the two logs (failed videos count: they are
  logged too), and the same label for every video;
* the same classes: the same class names in the same order (``run.json``'s ``class_names``), else
  the same number of classes;
* the same views: temporal views x spatial crops per video;

and a baseline must be another model: not the same run folder, and not the same checkpoint
(``checkpoint_sha256``) of the same model; but the same backbone at the same input: the same
frames and crop, and, when the run has SGS layers and the baseline none, the baseline's cost per
view must be the run's ``static_gmacs`` (its backbone without SGS, same input; 0.1% apart at most).
Two runs in one table must not be the same run (the same folder, or the same model, checkpoint, data and settings).

:func:`check_comparable` raises :class:`IncomparableRunsError` (one line naming every difference)
unless ``allow=True``; the differences are returned either way, so an output made with the
override can say it is not comparable.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from atfr_analysis.analysis.common import AnalysisError, log_meta, run_name
from atfr_analysis.profile.schema import bins_layers

__all__ = ["IncomparableRunsError", "differences", "check_comparable", "label", "NOT_COMPARABLE", "OVERRIDE_HINT"]

NOT_COMPARABLE = "NOT COMPARABLE"
OVERRIDE_HINT = "--allow-incomparable (allow_incomparable=True) compares them anyway, labelled as not comparable"
#: settings two runs of one model differ by when they are not the same run
_RUN_SETTINGS = ("batching", "precision", "crop", "frames", "sampling_rate", "views", "crops", "data_fingerprint")
_SHOW = 2  # examples named per difference
_STATIC_RTOL = 1e-3  # the baseline's GMACs per view against the run's backbone without SGS


class IncomparableRunsError(AnalysisError):
    """Two runs that cover different videos, classes or views, or the same run twice."""


def _run_dir(log: pd.DataFrame) -> Path | None:
    rd = log.attrs.get("run_dir") if isinstance(log, pd.DataFrame) else None
    if not rd:
        return None
    try:
        return Path(str(rd)).resolve()
    except OSError:  # pragma: no cover - a path that cannot be resolved
        return Path(str(rd))


def _paths(log: pd.DataFrame) -> dict[str, int] | None:
    """{video path: label} of a log, or None when the log carries no paths."""
    if "path" not in log.columns:
        return None
    g = (log[["path", "label"]] if "label" in log.columns else log[["path"]].assign(label=-1)).drop_duplicates("path")
    g = g[g["path"].notna() & (g["path"].astype(str) != "")]
    if not len(g):
        return None
    return dict(zip(g["path"].astype(str), pd.to_numeric(g["label"], errors="coerce").fillna(-1).astype(int)))


def _names(paths) -> str:
    shown = [repr(Path(p).name) for p in sorted(paths)[:_SHOW]]
    return ", ".join(shown) + (", ..." if len(paths) > _SHOW else "")


def _views(log: pd.DataFrame) -> tuple[int | None, int | None, int]:
    m = log_meta(log)

    def num(k):
        try:
            return int(m[k])
        except (KeyError, TypeError, ValueError):
            return None

    t, c = num("views"), num("crops")
    if t is not None and c is not None:
        return t, c, t * c
    counts = log.groupby("video_id").size() if "video_id" in log.columns else pd.Series(dtype=int)
    return None, None, int(counts.max()) if len(counts) else 0


def _views_text(t, c, n) -> str:
    return f"{t} temporal x {c} spatial" if t is not None else f"{n} per video"


def _same_model(a: dict, b: dict) -> bool:
    sa, sb = a.get("checkpoint_sha256"), b.get("checkpoint_sha256")
    return bool(sa) and sa == sb and a.get("model") == b.get("model")


def _same_run(run: pd.DataFrame, other: pd.DataFrame, what: str) -> list[str]:
    ma, mb = log_meta(run), log_meta(other)
    ra, rb = _run_dir(run), _run_dir(other)
    name_a = run_name(run)
    if other is run or (ra is not None and ra == rb):
        where = f"folder {ra}" if ra is not None else name_a
        return [f"the baseline is the run itself ({where})" if what == "baseline" else f"the same run twice ({where})"]
    if _same_model(ma, mb):
        sha = str(ma["checkpoint_sha256"])[:12]
        if what == "baseline":
            return [
                f"the baseline is the same model and checkpoint as the run ({name_a}, checkpoint sha256 {sha}...); "
                "a baseline must be another model"
            ]
        if all(ma.get(k) == mb.get(k) for k in _RUN_SETTINGS):
            return [f"the same run twice ({name_a}, checkpoint sha256 {sha}..., same data and settings)"]
    return []


def _other_videos(run: pd.DataFrame, other: pd.DataFrame, what: str) -> list[str]:
    pa, pb = _paths(run), _paths(other)
    out: list[str] = []
    if pa is None or pb is None:
        fa, fb = log_meta(run).get("data_fingerprint"), log_meta(other).get("data_fingerprint")
        if fa and fb and fa != fb:
            return [f"different videos: data fingerprint {fa} in the run, {fb} in the {what}"]
        if "video_id" in run.columns and "video_id" in other.columns:
            na, nb = run["video_id"].nunique(), other["video_id"].nunique()
            if na != nb:
                return [f"different videos: {na} in the run, {nb} in the {what}"]
        return []
    only_a, only_b = set(pa) - set(pb), set(pb) - set(pa)
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} only in the run ({_names(only_a)})")
        if only_b:
            parts.append(f"{len(only_b)} only in the {what} ({_names(only_b)})")
        out.append(f"different videos: {len(pa)} in the run, {len(pb)} in the {what}; " + ", ".join(parts))
    common = sorted(set(pa) & set(pb))
    relabelled = [p for p in common if pa[p] != pb[p]]
    if relabelled:
        p = relabelled[0]
        out.append(
            f"different labels for {len(relabelled)} of {len(common)} common videos "
            f"(e.g. {Path(p).name!r}: {pa[p]} in the run, {pb[p]} in the {what})"
        )
    return out


def _other_classes(ma: dict, mb: dict, what: str) -> list[str]:
    ca, cb = list(ma.get("class_names") or []), list(mb.get("class_names") or [])
    if ca and cb:
        if len(ca) != len(cb):
            return [f"different classes: {len(ca)} in the run, {len(cb)} in the {what}"]
        if ca != cb:
            i = next(i for i, (x, y) in enumerate(zip(ca, cb)) if x != y)
            n = sum(x != y for x, y in zip(ca, cb))
            return [
                f"different classes: {n} of {len(ca)} class names differ (class {i} is {ca[i]!r} in the run, "
                f"{cb[i]!r} in the {what})"
            ]
        return []
    na, nb = ma.get("num_classes"), mb.get("num_classes")
    if isinstance(na, int) and isinstance(nb, int) and na != nb:
        return [f"different classes: {na} in the run, {nb} in the {what}"]
    return []


def _other_backbone(run: pd.DataFrame, other: pd.DataFrame) -> list[str]:
    """A baseline's input and backbone against the run's (rows of a table may be other models)."""
    ma, mb, out = log_meta(run), log_meta(other), []
    for k, text in (("frames", "frames"), ("crop", "crop")):
        if ma.get(k) is not None and mb.get(k) is not None and ma.get(k) != mb.get(k):
            out.append(f"different input: {text} {ma[k]} in the run, {mb[k]} in the baseline")
    static = ma.get("static_gmacs")
    has_sgs, base_sgs = bool(bins_layers(run.columns)), bool(bins_layers(other.columns))
    if isinstance(static, (int, float)) and static > 0 and has_sgs and not base_sgs and "gmacs" in other.columns:
        ok = other["status"].eq("ok") if "status" in other.columns else pd.Series(True, index=other.index)
        g = pd.to_numeric(other.loc[ok, "gmacs"], errors="coerce").dropna()
        if len(g) and abs(float(g.mean()) - static) > _STATIC_RTOL * static:
            out.append(
                f"another backbone or input: the baseline {run_name(other, 'baseline')} costs "
                f"{float(g.mean()):.4g} GMACs per view, the run's backbone without SGS {static:.4g} "
                "(same input)"
            )
    return out


def differences(run: pd.DataFrame, other: pd.DataFrame, what: str = "baseline") -> list[str]:
    """What makes ``other`` (a baseline, or a second run with ``what="run"``) not comparable with
    ``run``: a list of short phrases, empty when the two are comparable."""
    if not isinstance(run, pd.DataFrame) or not isinstance(other, pd.DataFrame):
        return []
    out = _same_run(run, other, what) + _other_videos(run, other, what)
    out += _other_classes(log_meta(run), log_meta(other), what)
    if what == "baseline":
        out += _other_backbone(run, other)
    va, vb = _views(run), _views(other)
    if va[2] != vb[2] or (va[0] is not None and vb[0] is not None and va[:2] != vb[:2]):
        out.append(f"different views: {_views_text(*va)} in the run, {_views_text(*vb)} in the {what}")
    return out


def check_comparable(run: pd.DataFrame, other: pd.DataFrame, what: str = "baseline", allow: bool = False) -> list[str]:
    """:func:`differences`, raising :class:`IncomparableRunsError` when there are any and ``allow``
    is false. ``what``: "baseline" or "run" (a second run of a table)."""
    diffs = differences(run, other, what)
    if diffs and not allow:
        a, b = run_name(run), run_name(other, what)
        raise IncomparableRunsError(
            f"{what} {b} is not comparable with run {a}: " + "; ".join(diffs) + f". {OVERRIDE_HINT}"
        )
    return diffs


def label(diffs: list[str], what: str = "baseline") -> str:
    """The one-line note an output made with the override carries."""
    return f"{NOT_COMPARABLE} with its {what}: " + "; ".join(diffs) + "." if diffs else ""
