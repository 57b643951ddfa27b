"""A run's video-level predictions in the files other tools' evaluation scripts read.

``pyslowfast``
    What PySlowFast's ``tools/test_net.py`` writes to ``OUTPUT_DIR/TEST.SAVE_RESULTS_PATH``
    (single-label classification; PySlowFast since the option was added in 2020, HEAD included):
    one ``pickle.dump`` of the list ``[video_preds, video_labels]``, ``video_preds`` a float32
    ``torch.Tensor`` of shape (videos, classes) -- the TestMeter's ensemble of the softmax over
    a video's views, their sum (``DATA.ENSEMBLE_METHOD: sum``, the default) or element-wise
    maximum (``max``) -- and ``video_labels`` an int64 tensor of shape (videos,). Row i is video i
    of the test list.
``mmaction2``
    What mmaction2 1.2's ``tools/test.py --dump FILE.pkl`` writes (mmengine's ``DumpResults``):
    a pickled list with one dict per video, in test-list order, ``{"num_classes": C,
    "gt_label": int64 tensor [1], "pred_score": float32 tensor [C], "pred_label": int64 tensor
    [1]}``; ``pred_score`` is the mean of the softmax over the views (``average_clips="prob"``,
    the default of the recognition configs; ``ensemble="max"`` writes the maximum instead).
    (mmaction2 1.0 and 1.1 wrote ``gt_labels`` / ``pred_scores`` / ``pred_labels`` holding
    ``{"item": tensor}``.)
``mmaction2-0.x``
    What mmaction2 0.x's ``tools/test.py --out FILE.pkl`` writes: a pickled list of float32
    ``numpy`` arrays of shape (C,), one per video in test-list order (the same video scores as
    above); labels are not in the file (its evaluation reads them from the annotation list).

Videos whose every view failed have no prediction. ``failed="error"`` (the default) refuses to
export them, ``"zeros"`` writes zero scores (what PySlowFast's TestMeter keeps for a video that
got no view: it counts as wrong, or as class 0), ``"drop"`` leaves them out (rows then no longer
match the test list; refused for ``mmaction2-0.x``, whose file has no labels). A run that has
not logged every video of its list is refused (finish it with ``atfr profile --resume``).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from atfr_analysis.analysis.common import AnalysisError
from atfr_analysis.analysis.run_analysis import RunAnalysis, check_ensemble
from atfr_analysis.errors import environment_failure

__all__ = ["EXPORT_FORMATS", "FAILED_POLICIES", "ExportResult", "export_predictions", "video_scores"]

EXPORT_FORMATS = ("pyslowfast", "mmaction2", "mmaction2-0.x")
FAILED_POLICIES = ("error", "zeros", "drop")
PICKLE_PROTOCOL = 4  # readable by every Python 3 the two tools support


@dataclass
class ExportResult:
    path: Path
    format: str
    videos: int  # rows written
    classes: int
    failed: int  # videos without an ok view (written as zeros, or left out)
    ensemble: str
    failed_policy: str = "error"

    def summary(self) -> str:
        what = {
            "pyslowfast": "PySlowFast SAVE_RESULTS_PATH pickle",
            "mmaction2": "mmaction2 1.2 --dump pickle",
            "mmaction2-0.x": "mmaction2 0.x --out pickle",
        }[self.format]
        how = "left out" if self.failed_policy == "drop" else "written as zero scores"
        note = f"; {self.failed} failed video(s) {how}" if self.failed else ""
        return (
            f"wrote {self.path} ({what}: {self.videos} videos x {self.classes} classes, "
            f"views combined by {self.ensemble}{note})"
        )


def check_exportable(a: RunAnalysis, failed: str) -> None:
    """Refuse a run whose rows would not match its list, or whose scores are not numbers."""
    n_list = a.videos_total
    if n_list is not None and a.videos_logged < n_list:
        raise AnalysisError(
            f"run {a.name} is not finished: it has logged {a.videos_logged} of the {n_list} videos "
            "of its list (a profile still writing, or interrupted): an export would not match the "
            "list (finish the run with `atfr profile --resume`)"
        )
    ids = np.unique(a.views["video_id"].to_numpy())
    if len(ids) and (ids != np.arange(len(ids))).any() and failed != "drop":
        raise AnalysisError(
            "the run's video ids are not 0..N-1 (a sharded run not yet complete?): rows would not match the test list"
        )
    if a.nonfinite_views:
        raise AnalysisError(f"run {a.name}: {a.nonfinite_note()}; an export would write scores that are not numbers")


def video_scores(
    log: pd.DataFrame | RunAnalysis, ensemble: str = "sum", failed: str = "error"
) -> tuple[pd.DataFrame, np.ndarray]:
    """(videos table, scores (videos, classes) float64) of every video of the run in list order,
    checked for export: the run logged every video of its list, its scores are finite; failed
    videos per ``failed``."""
    check_ensemble(ensemble)
    if failed not in FAILED_POLICIES:
        raise AnalysisError(f"unknown failed={failed!r}: choose one of {', '.join(repr(f) for f in FAILED_POLICIES)}")
    a = RunAnalysis.of(log)
    check_exportable(a, failed)
    v = a.videos(ensemble)
    bad = (v["status"] != "ok").to_numpy() | v[f"scores_{ensemble}"].isna().to_numpy()
    if bad.any() and failed == "error":
        ex = v.loc[bad, "path"].astype(str).head(2).map(lambda p: Path(p).name).tolist()
        raise AnalysisError(
            f"{int(bad.sum())} of {len(v)} videos have no ok view (e.g. {', '.join(ex)}): pass "
            "--failed zeros (zero scores, as PySlowFast keeps them) or --failed drop (left out)"
        )
    C = a.num_classes
    col = v[f"scores_{ensemble}"].to_numpy(dtype=object)
    lens = {len(x) for x, b in zip(col, bad) if not b}
    if C is None:
        C = max(lens) if lens else 0
    if lens and lens != {C}:
        raise AnalysisError(f"score vectors have {sorted(lens)} entries but the run has {C} classes")
    S = np.zeros((len(v), C))
    for i, (x, b) in enumerate(zip(col, bad)):
        if not b:
            S[i] = np.asarray(x, dtype="float64")
    v = v.assign(_failed=bad)
    if failed == "drop":
        keep = ~bad
        v, S = v[keep].reset_index(drop=True), S[keep]
        v.attrs["dropped"] = int(bad.sum())
    return v, S


class _Pickler(pickle.Pickler):
    """``pickle.dump`` as the two tools do it, with one change that keeps the loaded objects and
    makes the bytes reproducible: a tensor's storage is pickled (as torch does) as
    ``torch.storage._load_from_bytes(<torch.save bytes>)``, but in torch's zip format, not its
    legacy one, whose bytes hold the storage's memory address."""

    def reducer_override(self, obj):
        import io

        import torch

        if isinstance(obj, torch.storage.TypedStorage):
            buf = io.BytesIO()
            torch.save(obj, buf)
            return (torch.storage._load_from_bytes, (buf.getvalue(),))
        return NotImplemented


def _dump(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            _Pickler(f, protocol=PICKLE_PROTOCOL).dump(obj)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise environment_failure(e, path) from None


def export_predictions(
    log: pd.DataFrame, path: str | Path, format: str = "pyslowfast", ensemble: str = "sum", failed: str = "error"
) -> ExportResult:
    """Write the run's video-level predictions to ``path`` in ``format`` (see the module doc):
    ``"pyslowfast"``, ``"mmaction2"`` (1.2) or ``"mmaction2-0.x"``. ``ensemble``: "sum" / "max"
    (pyslowfast: sum or maximum of the softmax over views; mmaction2: mean or maximum).
    ``failed``: "error" | "zeros" | "drop" for videos without an ok view."""
    if format not in EXPORT_FORMATS:
        raise AnalysisError(f"unknown export format {format!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    if format == "mmaction2-0.x" and failed == "drop":
        raise AnalysisError(
            "--failed drop with mmaction2-0.x: that file has no labels, so its rows must match the test "
            "list; use --failed zeros"
        )
    import torch

    v, S = video_scores(log, ensemble, failed)
    path = Path(path)
    labels = v["label"].to_numpy(dtype="int64")
    nviews = v["views_ok"].to_numpy(dtype="float64")
    if format == "pyslowfast":
        obj = [torch.from_numpy(S.astype("float32")), torch.from_numpy(labels.copy())]
    else:
        if ensemble == "sum":  # mmaction2 averages the clips' softmax (average_clips="prob")
            S = S / np.maximum(nviews, 1)[:, None]
        S32 = S.astype("float32")
        if format == "mmaction2":
            obj = [
                {
                    "num_classes": int(S.shape[1]),
                    "gt_label": torch.tensor([int(l)], dtype=torch.int64),
                    "pred_score": torch.from_numpy(S32[i].copy()),
                    "pred_label": torch.tensor([int(np.argmax(S32[i])) if S.shape[1] else 0], dtype=torch.int64),
                }
                for i, l in enumerate(labels)
            ]
        else:
            obj = [S32[i].copy() for i in range(len(S32))]
    _dump(obj, path)
    n_failed = int(v["_failed"].sum()) if failed != "drop" else int(v.attrs.get("dropped", 0))
    return ExportResult(path, format, int(len(v)), int(S.shape[1]), n_failed, ensemble, failed)
