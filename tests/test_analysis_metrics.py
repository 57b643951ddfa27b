"""Issue 16 (items 1-3) on hand-built logs with known answers: mean class accuracy, the confusion
matrix, view ensembling by sum or max, and the exports to PySlowFast's and mmaction2's result
files."""

import pickle
import re

import numpy as np
import pandas as pd
import pytest
from analysis_logs import LAYER, build_log, one_hot, planted_log, write_run
from profile_helpers import run_cli

from atfr_analysis.analysis import (
    AnalysisError,
    accuracy_by_bins,
    accuracy_vs_views,
    class_tradeoff,
    confusion_matrix,
    export_predictions,
    format_paper_table,
    most_confused_pairs,
    paper_table,
    per_class,
    ranking,
    video_table,
    write_report,
)

NAMES = ["A", "B", "C"]


def known_log():
    """A: 4 videos, 3 right, 1 predicted C; B: 1 video, right; C: 2 videos, both predicted A.
    top-1 = 4/7; mean class accuracy = (75 + 100 + 0) / 3; confusion rows A [3,0,1], B [0,1,0], C [2,0,0]."""
    preds = [(0, 0), (0, 0), (0, 0), (0, 2), (1, 1), (2, 0), (2, 0)]  # (label, predicted)
    vids = [
        {"label": l, "views": [{"bins": 2 + i % 3, "gmacs": 1.0, "scores": one_hot(3, p)}] * 2}
        for i, (l, p) in enumerate(preds)
    ]
    return build_log(vids, NAMES, layers={LAYER: 8}, meta={"views": 2, "crops": 1})


# ------------------------------------------------------------------- mean class accuracy
def test_mean_class_accuracy_known_answer(tmp_path):
    log = known_log()
    overall = per_class(log).set_index("class_name").loc["overall"]
    assert overall["top1"] == pytest.approx(100 * 4 / 7)
    assert overall["mean_class_acc"] == pytest.approx((75 + 100 + 0) / 3)
    assert per_class(log)["mean_class_acc"].iloc[:-1].isna().all()  # shown once, on the overall row
    from atfr_analysis.analysis import mean_class_accuracy

    assert mean_class_accuracy([1, 1, 1, 0, 1, 0, 0], [0, 0, 0, 0, 1, 2, 2]) == pytest.approx(175 / 3)
    t = paper_table(log)
    assert t.iloc[0]["mean_class_acc"] == pytest.approx(175 / 3)
    assert format_paper_table(t)["mean class"].tolist() == ["58.3"]
    p = write_report(log, tmp_path, n_boot=20)
    text = p.read_text()
    assert "Top-1 57.14%, top-5 100.00%, mean class accuracy 58.33%" in text
    assert re.search(r"\|\s+mean class \|", (tmp_path / "paper_table.md").read_text())
    assert pd.read_csv(tmp_path / "per_class.csv")["mean_class_acc"].iloc[-1] == pytest.approx(175 / 3)
    assert "58.3" in (tmp_path / "paper_table.tex").read_text()


def test_mean_class_accuracy_equals_mean_of_per_class_recall():
    """The same number from the confusion counts (mmaction2's definition: mean over the true
    classes of diagonal / row sum), on a random log with failed views."""
    log = planted_log(n_classes=9, videos_per_class=5, views=3, failed_views=4, seed=3)
    cm = confusion_matrix(log).to_numpy()
    rows = cm.sum(axis=1)
    recall = np.diag(cm)[rows > 0] / rows[rows > 0]
    assert per_class(log)["mean_class_acc"].iloc[-1] == pytest.approx(100 * recall.mean())


# ----------------------------------------------------------------------- confusion matrix
def test_confusion_counts_and_pairs_known_answer(tmp_path):
    cm = confusion_matrix(known_log())
    assert list(cm.index) == NAMES and list(cm.columns) == NAMES
    assert cm.to_numpy().tolist() == [[3, 0, 1], [0, 1, 0], [2, 0, 0]]
    assert cm.attrs["videos"] == 7
    pairs = most_confused_pairs(cm)
    assert pairs[["true_class", "predicted", "videos", "true_videos"]].values.tolist() == [
        ["C", "A", 2, 2],
        ["A", "C", 1, 4],
    ]
    assert pairs["share_pct"].tolist() == pytest.approx([100.0, 25.0])
    write_report(known_log(), tmp_path, n_boot=20, confusion_classes=["A", "C"])
    back = pd.read_csv(tmp_path / "confusion_matrix.csv", index_col=0)
    assert back.to_numpy().tolist() == [[3, 0, 1], [0, 1, 0], [2, 0, 0]] and back.index.name == "true_class"
    assert pd.read_csv(tmp_path / "most_confused_pairs.csv")["videos"].tolist() == [2, 1]
    assert re.search(r"\| C\s+\| A\s+\|\s+2 \|\s+2 \|\s+100\.0 \|", (tmp_path / "report.md").read_text())


def test_confusion_figure_subset_and_other_column(tmp_path):
    from atfr_analysis.analysis.confusion import OTHER, normalised_subset, select_classes

    cm = confusion_matrix(known_log())
    ids, why = select_classes(cm, ["C", "A"])
    assert ids == [0, 2] and "2 chosen of 3" in why
    P = normalised_subset(cm, ids)
    assert list(P.columns) == ["A", "C", OTHER]
    assert P.loc["A"].tolist() == pytest.approx([75.0, 25.0, 0.0]) and P.loc["C"].tolist() == pytest.approx(
        [100.0, 0.0, 0.0]
    )
    ids, why = select_classes(cm, top=2)  # A and C are in the most errors (3 each); B in none
    assert ids == [0, 2] and "2 most confused of 3" in why
    with pytest.raises(AnalysisError, match="unknown class name.*'D'"):
        select_classes(cm, ["A", "D"])
    with pytest.raises(AnalysisError, match="'D'"):
        write_report(known_log(), tmp_path / "x", confusion_classes=["D"])
    assert not (tmp_path / "x").exists()
    from atfr_analysis.analysis.plots import plot_confusion

    p = plot_confusion(planted_log(n_classes=30, videos_per_class=2, views=1), tmp_path / "c.png", top=12)
    import matplotlib.image as mpimg

    img = mpimg.imread(p)
    assert img.shape[0] > 400 and img.shape[1] > 400 and img.shape[0] < 2500 and img.shape[1] < 2500


# ---------------------------------------------------------------------------- ensembling
def max_flips_log():
    """One video of class C (id 2), three views: [.6 .4 0], [.6 .4 0], [0 .3 .7]. Sum: A 1.2,
    B 1.1, C 0.7 -> A (wrong). Max: A .6, B .4, C .7 -> C (right). A second video (class A,
    one-hot) is right either way."""
    v0 = [
        {"bins": 2, "gmacs": 1.0, "scores": [0.6, 0.4, 0.0]},
        {"bins": 2, "gmacs": 1.0, "scores": [0.6, 0.4, 0.0]},
        {"bins": 3, "gmacs": 1.0, "scores": [0.0, 0.3, 0.7]},
    ]
    v1 = [{"bins": 1, "gmacs": 1.0, "scores": [0.8, 0.1, 0.1]}] * 3
    return build_log(
        [{"label": 2, "views": v0}, {"label": 0, "views": v1}], NAMES, layers={LAYER: 8}, meta={"views": 3, "crops": 1}
    )


def test_max_ensembling_changes_a_known_prediction(tmp_path):
    log = max_flips_log()
    s, m = video_table(log), video_table(log, ensemble="max")
    assert list(s["pred"]) == [0, 0] and list(m["pred"]) == [2, 0]
    assert list(s["top1"]) == [False, True] and list(m["top1"]) == [True, True]
    assert s["scores_sum"][0].tolist() == pytest.approx([1.2, 1.1, 0.7])
    assert m["scores_max"][0].tolist() == pytest.approx([0.6, 0.4, 0.7])
    assert per_class(log, ensemble="max")["top1"].iloc[-1] == 100.0
    assert per_class(log)["top1"].iloc[-1] == 50.0
    assert paper_table(log, ensemble="max").iloc[0]["top1"] == 100.0
    # accuracy against the number of views, for either
    sw_s, sw_m = accuracy_vs_views(log), accuracy_vs_views(log, ensemble="max")
    assert sw_s["top1"].tolist() == [50.0, 50.0, 50.0] and sw_m["top1"].tolist() == [50.0, 50.0, 100.0]
    with pytest.raises(AnalysisError, match="'sum', 'max'"):
        video_table(log, ensemble="mean")
    p = write_report(log, tmp_path, n_boot=20, ensemble="max")
    text = p.read_text()
    assert "views combined by max" in text and "Top-1 100.00%" in text
    sweep = pd.read_csv(tmp_path / "accuracy_vs_views.csv")
    assert sweep["top1_sum"].tolist() == [50.0, 50.0, 50.0] and sweep["top1_max"].tolist() == [50.0, 50.0, 100.0]


def test_cli_report_and_table_ensemble(capsys, tmp_path):
    run = write_run(tmp_path / "run", max_flips_log())
    code, out, err = run_cli(capsys, "table", run, "--ensemble", "max")
    assert code == 0, err
    assert re.search(r"\|\s+100\.0 \|", out)  # top-1 100 with max
    code, out, err = run_cli(capsys, "table", run)
    assert code == 0 and re.search(r"\|\s+50\.0 \|", out)
    code, out, err = run_cli(capsys, "report", run, "--out", tmp_path / "r", "--ensemble", "max", "--boot", "20")
    assert code == 0 and "Top-1 100.00%" in (tmp_path / "r" / "report.md").read_text()
    code, out, err = run_cli(capsys, "report", run, "--out", tmp_path / "r2", "--ensemble", "mean")
    assert code == 2 and "unknown ensemble='mean': choose one of 'sum', 'max'" in err


# ------------------------------------------------------------------- ranking by accuracy
def test_ranking_by_top1_and_the_join_with_bins():
    log = known_log()
    r = ranking(log, by="top1", k=1, n_boot=50)
    assert list(r["class_name"]) == ["C", "B"] and r["value"].tolist() == pytest.approx([0.0, 100.0])
    assert "top-1" in r.attrs["metric"]
    # ATFR vs a baseline that gets every video right: the classes keeping fewest bins lose most
    atfr = planted_log(n_classes=6, videos_per_class=4, views=2, seed=0)
    vt = video_table(atfr)
    fewest = vt.groupby("class_name")["frac_kept"].mean().idxmin()
    base = planted_log(n_classes=6, videos_per_class=4, views=2, seed=0, baseline=True)
    base["scores"] = [np.asarray(one_hot(6, l, 0.9), dtype="float32") for l in base["label"]]
    t = class_tradeoff(atfr, base)
    assert t["class_name"].iloc[0] == fewest and t["class_name"].iloc[-1] == "overall"
    assert t["bins_kept"].iloc[:-1].is_monotonic_increasing
    assert (t["top1_baseline"] == 100.0).all()
    right = vt.groupby("class_name")["top1"].mean()
    for row in t.iloc[:-1].itertuples():
        assert row.top1 == pytest.approx(100 * right[row.class_name])
        assert row.lost == round((100 - row.top1) / 100 * row.videos) and row.gained == 0
    assert t.iloc[-1]["lost"] == int((~vt["top1"].astype(bool)).sum())
    g = accuracy_by_bins(atfr, base, groups=3)
    assert g["videos"].sum() == len(vt) and list(g["group"]) == [1, 2, 3]
    assert (g["bins_kept_max"].iloc[:-1].to_numpy() < g["bins_kept_min"].iloc[1:].to_numpy()).all()


# ------------------------------------------------------------------------------- exports
class _Restricted(pickle.Unpickler):
    """Loads only what the documented structures need: no other code can run."""

    ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch.storage", "_load_from_bytes"),
        ("collections", "OrderedDict"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed")
        return super().find_class(module, name)


def _load(path):
    with open(path, "rb") as f:
        plain = pickle.load(f)
    with open(path, "rb") as f:
        _Restricted(f).load()
    return plain


def test_export_pyslowfast_reads_back(tmp_path):
    import torch

    log = max_flips_log()
    r = export_predictions(log, tmp_path / "sf.pkl", "pyslowfast")
    preds, labels = _load(tmp_path / "sf.pkl")
    assert isinstance(preds, torch.Tensor) and preds.dtype == torch.float32 and tuple(preds.shape) == (2, 3)
    assert isinstance(labels, torch.Tensor) and labels.dtype == torch.int64 and labels.tolist() == [2, 0]
    assert preds[0].tolist() == pytest.approx([1.2, 1.1, 0.7])  # the TestMeter's sum over views
    # PySlowFast's top-1 from the file: the argmax against the labels
    assert (preds.argmax(dim=1) == labels).float().mean().item() == 0.5
    export_predictions(log, tmp_path / "sfmax.pkl", "pyslowfast", ensemble="max")
    pm, _ = _load(tmp_path / "sfmax.pkl")
    assert pm[0].tolist() == pytest.approx([0.6, 0.4, 0.7]) and (pm.argmax(dim=1) == labels).all()
    assert r.videos == 2 and r.classes == 3 and "PySlowFast" in r.summary()
    # byte-reproducible
    export_predictions(log, tmp_path / "sf2.pkl", "pyslowfast")
    assert (tmp_path / "sf.pkl").read_bytes() == (tmp_path / "sf2.pkl").read_bytes()


def test_export_mmaction2_reads_back(tmp_path):
    import torch

    log = max_flips_log()
    export_predictions(log, tmp_path / "mm.pkl", "mmaction2")
    res = _load(tmp_path / "mm.pkl")
    assert isinstance(res, list) and len(res) == 2
    for d in res:
        assert set(d) == {"num_classes", "gt_label", "pred_score", "pred_label"} and d["num_classes"] == 3
        assert d["gt_label"].dtype == torch.int64 and tuple(d["gt_label"].shape) == (1,)
        assert d["pred_label"].dtype == torch.int64 and tuple(d["pred_label"].shape) == (1,)
        assert d["pred_score"].dtype == torch.float32 and tuple(d["pred_score"].shape) == (3,)
    assert res[0]["pred_score"].tolist() == pytest.approx([0.4, 1.1 / 3, 0.7 / 3])  # mean over views ("prob")
    assert [d["gt_label"].item() for d in res] == [2, 0] and [d["pred_label"].item() for d in res] == [0, 0]
    export_predictions(log, tmp_path / "mm0.pkl", "mmaction2-0.x")
    old = _load(tmp_path / "mm0.pkl")
    assert isinstance(old, list) and all(
        isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == (3,) for a in old
    )
    assert old[0].tolist() == pytest.approx(res[0]["pred_score"].tolist())


def test_export_refuses_failed_and_missing_videos(tmp_path, capsys):
    log = build_log(
        [
            {"label": 0, "views": [{"bins": 1, "gmacs": 1.0, "scores": one_hot(3, 0)}]},
            {"label": 1, "views": [{"status": "failed"}]},
            {"label": 2, "views": [{"bins": 1, "gmacs": 1.0, "scores": one_hot(3, 2)}]},
        ],
        NAMES,
        layers={LAYER: 8},
        meta={"num_videos": 3},
    )
    with pytest.raises(AnalysisError, match="1 of 3 videos have no ok view"):
        export_predictions(log, tmp_path / "x.pkl")
    assert not (tmp_path / "x.pkl").exists()
    export_predictions(log, tmp_path / "z.pkl", failed="zeros")
    preds, labels = _load(tmp_path / "z.pkl")
    assert preds[1].tolist() == [0.0, 0.0, 0.0] and labels.tolist() == [0, 1, 2]
    r = export_predictions(log, tmp_path / "d.pkl", "mmaction2", failed="drop")
    assert [d["gt_label"].item() for d in _load(tmp_path / "d.pkl")] == [
        0,
        2,
    ] and "1 failed video(s) left out" in r.summary()
    with pytest.raises(AnalysisError, match="no labels"):
        export_predictions(log, tmp_path / "y.pkl", "mmaction2-0.x", failed="drop")
    log.attrs["meta"]["num_videos"] = 5  # an unfinished run
    with pytest.raises(AnalysisError, match="logged 3 of the 5 videos"):
        export_predictions(log, tmp_path / "y.pkl", failed="zeros")
    # the command
    run = write_run(tmp_path / "run", max_flips_log())
    code, out, err = run_cli(capsys, "export", run, "--format", "pyslowfast", "--out", tmp_path / "cli.pkl")
    assert code == 0 and "wrote" in out and "2 videos x 3 classes" in out, err
    assert _load(tmp_path / "cli.pkl")[1].tolist() == [2, 0]
    code, out, err = run_cli(capsys, "export", run, "--format", "detectron", "--out", tmp_path / "cli2.pkl")
    assert code == 2 and "--format must be one of pyslowfast, mmaction2, mmaction2-0.x" in err
