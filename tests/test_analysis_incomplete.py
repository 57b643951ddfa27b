"""Readers of a run know whether it is finished, and never make a number from non-finite scores
(issue 21, items 1 and 2, analysis side): ``atfr report``, ``atfr table`` and ``atfr export`` refuse
an unfinished run in one line, report it marked INCOMPLETE with ``--allow-incomplete``; a log
whose scores are NaN gets no accuracy (report and table say why) and no export."""

from __future__ import annotations

import re

import numpy as np
import pytest
from analysis_logs import planted_log, write_run
from profile_helpers import assert_one_line_error, run_cli

from atfr_analysis.analysis import RunAnalysis, paper_table, per_class, write_report
from atfr_analysis.analysis.common import AnalysisError
from atfr_analysis.profile.log import IncompleteRunError, load_run

VIDEOS = 3 * 4  # planted_log(n_classes=3, videos_per_class=4)


def small_log(**kw):
    return planted_log(n_classes=3, videos_per_class=4, views=2, **kw)


@pytest.fixture
def interrupted(tmp_path):
    """A run folder killed after 12 of the 20 videos of its list: run.json says 20."""
    return write_run(tmp_path / "killed", small_log(), meta={"num_videos": VIDEOS + 8})


@pytest.fixture
def nan_run(tmp_path):
    """A finished run whose every score is NaN (a checkpoint with a NaN weight), logged as ok."""
    log = small_log()
    log["scores"] = [np.full(3, np.nan, dtype="float32") for _ in range(len(log))]
    log["top5_scores"] = [np.full(3, np.nan, dtype="float32") for _ in range(len(log))]
    return write_run(tmp_path / "nan", log, meta={"num_videos": VIDEOS})


def test_the_analysis_knows_whether_the_run_is_finished(interrupted, tmp_path):
    a = RunAnalysis(load_run(interrupted))
    assert not a.complete and (a.videos_logged, a.videos_total) == (VIDEOS, VIDEOS + 8)
    assert "INCOMPLETE: 12 of 20 videos" in a.incomplete_note()
    done = RunAnalysis(load_run(write_run(tmp_path / "done", small_log(), meta={"num_videos": VIDEOS})))
    assert done.complete and done.incomplete_note() == ""
    with pytest.raises(IncompleteRunError, match="12 of 20 videos logged"):
        load_run(interrupted, require_complete=True)


@pytest.mark.parametrize("cmd", ["report", "table", "export"])
def test_an_interrupted_run_is_refused_in_one_line(capsys, tmp_path, interrupted, cmd):
    out = tmp_path / "out"
    args = {
        "report": ["--out", out],
        "table": ["--out", out],
        "export": ["--format", "pyslowfast", "--out", out / "r.pkl"],
    }
    code, stdout, err = run_cli(capsys, cmd, interrupted, *args[cmd])
    assert_one_line_error(code, err, "12 of", "20 videos")
    assert not out.exists(), "nothing is written for a refused run"


def test_an_interrupted_run_is_reported_marked_incomplete(capsys, tmp_path, interrupted):
    out = tmp_path / "report"
    code, _, err = run_cli(capsys, "report", interrupted, "--out", out, "--boot", "20", "--allow-incomplete")
    assert code == 0, err
    md = (out / "report.md").read_text()
    assert "> **INCOMPLETE:** this run" in md and "12 of the 20 videos" in md
    for f in ("paper_table.md", "paper_table.csv", "paper_table.tex"):
        assert "INCOMPLETE" in (out / f).read_text(), f
    assert "INCOMPLETE" in err

    code, stdout, err = run_cli(capsys, "table", interrupted, "--out", tmp_path / "t", "--allow-incomplete")
    assert code == 0, err
    assert "INCOMPLETE" in stdout and "12 of 20 videos" in stdout
    for f in ("paper_table.md", "paper_table.csv", "paper_table.tex"):
        assert "INCOMPLETE" in (tmp_path / "t" / f).read_text(), f
    (sweep,) = (tmp_path / "t").glob("accuracy_vs_views_*.csv")
    assert "INCOMPLETE" in sweep.read_text()


def test_the_library_refuses_an_unfinished_run_unless_asked(interrupted, tmp_path):
    log = load_run(interrupted)
    with pytest.raises(IncompleteRunError, match="12 of 20"):
        write_report(log, tmp_path / "r", n_boot=10)
    with pytest.raises(IncompleteRunError):
        paper_table([log])
    assert "INCOMPLETE" in paper_table([log], allow_incomplete=True)["model"].iloc[0]
    assert per_class(log)["videos"].iloc[-1] == VIDEOS  # the per-class table reads what is logged


def test_nan_scores_give_no_accuracy_and_say_why(capsys, tmp_path, nan_run):
    a = RunAnalysis(load_run(nan_run))
    assert a.nonfinite_views == 2 * VIDEOS
    acc = a.accuracy()
    assert np.isnan(acc.top1) and np.isnan(acc.top5) and np.isnan(acc.mean_class_acc)
    assert "non-finite" in acc.why
    assert per_class(a)["top1"].isna().all()

    out = tmp_path / "report"
    code, _, err = run_cli(capsys, "report", nan_run, "--out", out, "--boot", "20")
    assert code == 0, err
    md = (out / "report.md").read_text()
    assert not re.search(r"Top-1 [\d.]+%", md) and "Top-1 n/a%" not in md
    assert "Top-1 / top-5 / mean class accuracy: n/a: 24 of 24 ok views have non-finite scores" in md
    assert "non-finite" in err

    code, stdout, err = run_cli(capsys, "table", nan_run)
    assert code == 0, err
    row = next(l for l in stdout.splitlines() if l.startswith("| x3d_s_atfr"))
    assert row.count("n/a") == 3 and "non-finite scores" in stdout


def test_some_nan_scores_poison_every_accuracy(tmp_path):
    """One video with NaN scores: no accuracy is made from the others either (it would be over a
    silently smaller set)."""
    log = small_log()
    log.at[0, "scores"] = np.full(3, np.nan, dtype="float32")
    a = RunAnalysis(log)
    assert a.nonfinite_views == 1
    assert np.isnan(a.accuracy().top1)
    assert paper_table([log])["top1"].isna().all()
    assert np.isnan(per_class(log)["top1"]).all()


def test_nan_scores_are_not_exported(capsys, tmp_path, nan_run):
    code, _, err = run_cli(capsys, "export", nan_run, "--format", "pyslowfast", "--out", tmp_path / "r.pkl")
    assert_one_line_error(code, err, "non-finite")
    assert not (tmp_path / "r.pkl").exists()
    with pytest.raises(AnalysisError, match="non-finite"):
        from atfr_analysis.analysis import export_predictions

        export_predictions(load_run(nan_run), tmp_path / "r.pkl")
