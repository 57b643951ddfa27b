"""Comparisons that refuse apples and oranges (issue 14, case 3): a baseline, or a second run of a
table, must cover the same videos, classes and views, and be another run; otherwise one line
that says what differs (exit 2), unless --allow-incomparable, which labels the output."""

import shutil

import pytest
from analysis_logs import LAYER, build_log, one_hot, write_run
from profile_helpers import run_cli

from atfr_analysis.analysis import AnalysisError, paper_table, per_class, write_report
from atfr_analysis.analysis.comparable import IncomparableRunsError, differences
from atfr_analysis.errors import AtfrError

NAMES = ["run", "sit", "jump"]


def _log(
    names=NAMES,
    n_videos=6,
    views=2,
    atfr=True,
    sha="a" * 64,
    model=None,
    paths=None,
    labels=None,
    gmacs=None,
    meta=None,
):
    """A small run: video i has label i % C (or ``labels[i]``), right on even videos."""
    C = len(names)
    vids = []
    for i in range(n_videos):
        lab = labels[i] if labels is not None else i % C
        right = lab if i % 2 == 0 else (lab + 1) % C
        vv = [
            {
                "bins": 2 + i % 3,
                "gmacs": (gmacs if gmacs is not None else (1.0 if atfr else 2.0)),
                "scores": one_hot(C, right),
            }
            for _ in range(views)
        ]
        vids.append({"label": lab, "views": vv})
    m = {"checkpoint_sha256": sha, "static_gmacs": 2.0}
    if model:
        m["model"] = model
    m.update(meta or {})
    log = build_log(vids, names, layers={LAYER: 8} if atfr else None, meta=m)
    if paths is not None:
        log["path"] = log["video_id"].map(lambda v: paths[v])
    return log


def atfr_log(**kw):
    return _log(atfr=True, **kw)


def base_log(**kw):
    kw.setdefault("sha", "b" * 64)
    return _log(atfr=False, **kw)


# ------------------------------------------------------------------- the library refuses
def test_incomparable_is_an_atfr_error():
    assert issubclass(IncomparableRunsError, AnalysisError)
    assert issubclass(AnalysisError, AtfrError) and issubclass(AnalysisError, ValueError)


def test_comparable_baseline_is_accepted():
    assert differences(atfr_log(), base_log()) == []
    pc = per_class(atfr_log(), baseline=base_log())
    assert "not_comparable" not in pc.attrs and "top1_delta" in pc.columns


@pytest.mark.parametrize(
    "case, base, words",
    [
        (
            "other classes",
            lambda: base_log(names=["run", "sit", "swim"]),
            "different classes: 1 of 3 class names differ",
        ),
        (
            "more classes",
            lambda: base_log(names=NAMES + ["swim"]),
            "different classes: 3 in the run, 4 in the baseline",
        ),
        ("other videos", lambda: base_log(n_videos=5), "different videos: 6 in the run, 5 in the baseline"),
        ("other views", lambda: base_log(views=3), "different views: 2 temporal x 1 spatial in the run, 3 temporal"),
        ("other labels", lambda: base_log(labels=[1, 1, 2, 0, 1, 2]), "different labels for 1 of 6 common videos"),
        ("another backbone", lambda: base_log(gmacs=41.9), "another backbone or input: the baseline x3d_s costs 41.9"),
        ("other input", lambda: base_log(meta={"crop": 224}), "different input: crop 160 in the run, 224"),
        ("same model", lambda: atfr_log(), "same model and checkpoint"),
    ],
)
def test_incomparable_baseline_refused_in_one_line(case, base, words, tmp_path):
    run, b = atfr_log(), base()
    for call in (
        lambda: per_class(run, baseline=b),
        lambda: paper_table([run], baselines=b),
        lambda: write_report(run, tmp_path / "r", baseline=b, n_boot=20),
    ):
        with pytest.raises(IncomparableRunsError, match=words) as e:
            call()
        assert "\n" not in str(e.value) and "--allow-incomparable" in str(e.value)
    assert not (tmp_path / "r").exists()  # nothing written


def test_same_run_twice_refused():
    run = atfr_log()
    with pytest.raises(IncomparableRunsError, match="the run itself"):
        per_class(run, baseline=run)
    with pytest.raises(IncomparableRunsError, match="listed twice"):
        paper_table([run, run])
    # a copy of a run: same model, checkpoint, data and settings
    with pytest.raises(IncomparableRunsError, match="the same run twice"):
        paper_table([run, atfr_log()])
    # two runs of a table must also cover the same videos and classes
    with pytest.raises(IncomparableRunsError, match="different classes"):
        paper_table([base_log(), atfr_log(names=["a", "b", "c"])])


def test_override_labels_the_outputs(tmp_path):
    run, b = atfr_log(), base_log(names=["run", "sit", "swim"])
    pc = per_class(run, baseline=b, allow_incomparable=True)
    assert any("different classes" in d for d in pc.attrs["not_comparable"])
    t = paper_table([run], baselines=b, allow_incomparable=True)
    assert list(t["comparable"]) == [True, False]
    assert "NOT COMPARABLE" in t.attrs["footer"] and "(not comparable)" in t.iloc[1]["reduction_ref"]
    p = write_report(run, tmp_path / "r", baseline=b, n_boot=20, allow_incomparable=True)
    text = p.read_text()
    assert text.splitlines()[2].startswith("> **NOT COMPARABLE:**") and "different classes" in text
    assert "(NOT COMPARABLE)" in text
    assert "(not comparable)" in (tmp_path / "r" / "paper_table.md").read_text()


# ------------------------------------------------------------------------------- the CLI
def _runs(tmp_path):
    a = write_run(tmp_path / "atfr", atfr_log(model="x3d_s_atfr"))
    b = write_run(tmp_path / "base", base_log(model="x3d_s"))
    other = write_run(tmp_path / "other_classes", base_log(model="x3d_s", names=["run", "sit", "swim"]))
    fewer = write_run(tmp_path / "other_videos", base_log(model="x3d_s", n_videos=4))
    return a, b, other, fewer


def test_cli_report_refuses_incomparable_baselines(capsys, tmp_path):
    a, b, other, fewer = _runs(tmp_path)
    code, _, err = run_cli(capsys, "report", a, "--baseline", b, "--out", tmp_path / "ok", "--boot", "20")
    assert code == 0, err
    for base, words in (
        (other, "different classes"),
        (fewer, "different videos: 6 in the run, 4 in the baseline"),
        (a, "the run itself"),
    ):
        code, out, err = run_cli(capsys, "report", a, "--baseline", base, "--out", tmp_path / "no", "--boot", "20")
        assert code == 2 and err.startswith("error: ") and words in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "no").exists()
    # a copy of the run folder is still the same run (same model and checkpoint)
    copy = tmp_path / "copy"
    shutil.copytree(a, copy)
    code, _, err = run_cli(capsys, "report", a, "--baseline", copy, "--out", tmp_path / "no", "--boot", "20")
    assert code == 2 and "same model and checkpoint" in err
    code, out, err = run_cli(
        capsys, "report", a, "--baseline", other, "--out", tmp_path / "forced", "--boot", "20", "--allow-incomparable"
    )
    assert code == 0 and "NOT COMPARABLE" in err
    assert "NOT COMPARABLE" in (tmp_path / "forced" / "report.md").read_text()


def test_cli_table_refuses_incomparable_runs(capsys, tmp_path):
    a, b, other, fewer = _runs(tmp_path)
    code, out, err = run_cli(capsys, "table", a, "--baseline", b)
    assert code == 0, err
    for args, words in (
        ((a, "--baseline", other), "different classes"),
        ((a, "--baseline", fewer), "different videos"),
        ((a, a), "the same run twice"),
        ((b, other), "different classes"),
    ):
        code, out, err = run_cli(capsys, "table", *args)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (args, err)
    code, out, err = run_cli(capsys, "table", a, "--baseline", other, "--allow-incomparable")
    assert code == 0 and "(not comparable)" in out and "NOT COMPARABLE" in err
