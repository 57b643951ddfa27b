"""Failures of ``atfr profile``: undecodable videos become failed rows (the run goes on, nothing is
lost); a bad list or a bad checkpoint is one line on stderr and exit status 2, before any video is
read and without writing anything; never a traceback."""

import os
import pickle
from pathlib import Path

import pandas as pd
import pytest
import torch
from profile_helpers import (
    FAILURE_REASONS,
    MODEL,
    assert_one_line_error,
    atfr_cmd,
    broken_files,
    make_checkpoint,
    run_cli,
    run_subprocess,
    write_list,
)

import atfr_analysis
from atfr_analysis.data.samples import sample_videos
from atfr_analysis.profile.log import load_videos

LAYER = "s2.ts_layer"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "atfr.pyth")


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    return broken_files(tmp_path_factory.mktemp("broken"))


@pytest.fixture()
def good_list(tmp_path):
    vids = sample_videos()
    return write_list(tmp_path / "ok.csv", [vids["carphone_pristine"], vids["carphone_distorted"]])


def profile_args(ckpt, data, out, *extra):
    return (
        "profile",
        ckpt,
        "--model",
        MODEL,
        "--data",
        data,
        "--out",
        out,
        "--views",
        1,
        "--crops",
        1,
        "--device",
        "cpu",
        "--quiet",
        *extra,
    )


# ----------------------------------------------------------------------------- failed rows
def test_resume_retry_failed_redoes_only_the_failed_videos(ckpt, tmp_path, capsys):
    import shutil

    vids = sample_videos()
    late = tmp_path / "late.mp4"  # not a video at first (a missing file refuses the list), replaced before the retry
    late.write_text("not a video yet\n")
    lst = write_list(tmp_path / "l.csv", [vids["carphone_pristine"], late], labels=[0, 1])
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, *profile_args(ckpt, lst, out))
    assert code == 3, err  # a partial failure (the default --max-failed-fraction is 0)
    assert "1 ok, 1 failed" in stdout and "--retry-failed" in stdout
    before = atfr_analysis.load_run(out)
    shutil.copy(vids["carphone_distorted"], late)
    # a plain resume counts the failure as logged: nothing to do
    code, stdout, err = run_cli(capsys, *profile_args(ckpt, lst, out, "--resume", "--max-failed-fraction", "0.5"))
    assert code == 0, err
    assert "1 ok, 1 failed" in stdout
    # the retry needs --resume, and redoes the failed video only
    code, _, err = run_cli(capsys, *profile_args(ckpt, lst, out, "--retry-failed"))
    assert code == 2 and "--retry-failed needs --resume" in err and "Traceback" not in err
    code, stdout, err = run_cli(capsys, *profile_args(ckpt, lst, out, "--resume", "--retry-failed"))
    assert code == 0, err
    assert "2 ok, 0 failed" in stdout
    log = atfr_analysis.load_run(out)
    assert len(log) == len(before) and (log["status"] == "ok").all()
    assert log[f"bins.{LAYER}"].notna().all() and (log["gmacs"] > 0).all()
    # the video that was fine keeps its first rows (not recomputed)
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(
        log[log["video_id"] == 0].reset_index(drop=True), before[before["video_id"] == 0].reset_index(drop=True)
    )
    assert load_videos(out)["status"].tolist() == ["ok", "ok"]
    resumed = log.attrs["meta"]["resumed"]
    assert resumed[-1]["failed_retried"] == 1


def test_undecodable_videos_become_failed_rows_and_the_run_goes_on(ckpt, broken, tmp_path, capsys):
    vids = sample_videos()
    # (a missing file refuses the list up front: test_bad_list_is_one_line_before_any_compute)
    import shutil

    broken = dict(broken, text_copy=Path(shutil.copy(broken["text"], tmp_path / "text_copy.mp4")))
    order = [
        "carphone_pristine",
        "text_copy",
        "truncated",
        "text",
        "truncated_indexed",
        "zero_frames",
        "carphone_distorted",
    ]
    paths = [vids[n] if n in vids else broken[n] for n in order]
    lst = write_list(tmp_path / "mixed.csv", paths, labels=[0, 1, 1, 1, 1, 1, 3])
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, *profile_args(ckpt, lst, out, "--views", 2, "--flush-every", 2))
    assert code == 3, err  # partial failure: 4 of 7 failed
    assert (
        "Traceback" not in err and len(err.strip().splitlines()) == 1 and err.startswith("error: 4 of 7 videos failed")
    )
    assert "3 ok, 4 failed" in stdout and "failed:" in stdout and "more failed videos" in stdout
    # the failures counted by reason, in the summary and in the error line
    counted = "4 failed: 3 x cannot open, 1 x no video stream"
    assert counted in stdout, stdout
    # the truncated file whose index survived is partial: its first view decodes, its second not
    assert "1 partial video: 1 views failed" in stdout, stdout
    assert "3 x cannot open, 1 x no video stream" in err

    log = atfr_analysis.load_run(out)
    assert len(log) == len(order) * 2  # failed videos keep their view rows
    by = log.groupby("video_id")
    assert by.size().tolist() == [2] * len(order)
    for vid, name in enumerate(order):
        rows = log[log["video_id"] == vid]
        if name in vids:
            assert (rows["status"] == "ok").all() and rows["error"].isna().all()
            assert rows[f"bins.{LAYER}"].notna().all() and (rows["gmacs"] > 0).all()
            continue
        if name == "truncated_indexed":  # partial: the view inside the decodable part is profiled
            assert rows["status"].tolist() == ["ok", "failed"] and rows["view"].tolist() == [0, 1]
            assert rows["gmacs"].iloc[0] > 0 and pd.isna(rows["error"].iloc[0])
            assert "stream ends after 114 of the 250 frames" in rows["error"].iloc[1]
            assert rows["frame_indices"].iloc[1] is None and rows["frame_start"].iloc[1] == -1
            continue
        assert (rows["status"] == "failed").all(), name
        err_text = rows["error"].iloc[0]
        assert FAILURE_REASONS[name.replace("_copy", "")] in err_text and str(paths[vid]) in err_text, (name, err_text)
        assert "\n" not in err_text
        assert rows[f"bins.{LAYER}"].isna().all() and rows["gmacs"].isna().all()
        assert rows["top5_ids"].isna().all() and (rows["frame_start"] == -1).all()
    vt = load_videos(out)
    assert vt["status"].tolist() == ["ok", "failed", "failed", "failed", "ok", "failed", "ok"]
    assert vt["partial"].tolist() == [False, False, False, False, True, False, False]
    assert vt["views_ok"].tolist() == [2, 0, 0, 0, 1, 0, 2]
    assert "stream ends after 114" in vt["error"].iloc[4]
    meta = log.attrs["meta"]["summary"]
    assert meta["videos_ok"] == 3 and meta["videos_failed"] == 4 and meta["complete"]
    assert meta["videos_partial"] == 1 and meta["views_failed"] == 1
    # top-1 over the ok videos only
    assert meta["top1"] is not None


def test_a_crash_mid_run_keeps_what_was_profiled(ckpt, tmp_path, monkeypatch):
    """An exception in the third video (say, out of memory): the first two are on disk, and a
    resumed run completes the log."""
    from atfr_analysis.profile.instrument import Profiler

    vids = sample_videos()
    lst = write_list(tmp_path / "l.csv", [vids["carphone_pristine"], vids["carphone_distorted"], vids["bikes"]])
    calls = {"n": 0}
    real_run = Profiler.run

    def flaky(self, clips):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated failure in the third video")
        return real_run(self, clips)

    monkeypatch.setattr(Profiler, "run", flaky)
    with pytest.raises(RuntimeError, match="simulated"):
        atfr_analysis.profile(
            ckpt, MODEL, lst, tmp_path / "run", views=1, crops=1, device="cpu", quiet=True, flush_every=100
        )  # only the final flush writes: it must run on the way out
    log = atfr_analysis.load_run(tmp_path / "run")
    assert sorted(log["video_id"].unique()) == [0, 1]
    monkeypatch.setattr(Profiler, "run", real_run)
    s = atfr_analysis.profile(
        ckpt, MODEL, lst, tmp_path / "run", views=1, crops=1, device="cpu", quiet=True, resume=True
    )
    assert s.processed == 1 and s.skipped == 2 and s.videos_ok == 3 and s.complete


# ----------------------------------------------------------------------------- list errors
@pytest.mark.parametrize(
    "content,needles",
    [
        ("# only a comment\n\n", ["is empty"]),
        ("{a},0\n{b},1\n{a},2\n", ["line 3", "duplicate path"]),
        ("{a} cat\n{b} dog\n{c} unicorn\n", ["line 3", "unknown label 'unicorn'"]),
        ("{a},0\n{b},9\n", ["10 classes", "4 outputs"]),
        (
            "{a},0\n/nonexistent/x.mp4,1\n",
            ["1 of 2 video files of the list do not exist", "line 2: /nonexistent/x.mp4", "--skip-missing"],
        ),
    ],
    ids=["empty", "duplicate", "unknown-label", "too-many-classes", "missing-files"],
)
def test_bad_list_is_one_line_before_any_compute(ckpt, tmp_path, capsys, content, needles):
    vids = sample_videos()
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\nfish\n")  # the head's 4 classes
    lst = tmp_path / "bad.txt"
    lst.write_text(content.format(a=vids["bikes"], b=vids["carphone_pristine"], c=vids["carphone_distorted"]))
    extra = ("--labels", labels) if "cat" in content else ()
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *profile_args(ckpt, lst, out, *extra))
    assert_one_line_error(code, err, *needles)
    assert not out.exists()  # nothing written


def test_missing_data_and_bad_options_are_one_line(ckpt, good_list, tmp_path, capsys):
    out = tmp_path / "run"
    cases = [
        (profile_args(ckpt, tmp_path / "nope.csv", out), "--data not found"),
        (profile_args(ckpt, good_list, out, "--shard", "3/2"), "--shard"),
        (profile_args(ckpt, good_list, out, "--shard", "x"), "--shard"),
        (profile_args(ckpt, good_list, out, "--batching", "loose"), "--batching"),
        (profile_args(ckpt, good_list, out, "--crops", "2"), "--crops"),
        (profile_args(ckpt, good_list, out, "--device", "tpu"), "--device"),
        (profile_args(ckpt, good_list, out, "--allow-missing", "head"), "allow_missing"),
        (("profile", ckpt, "--model", "no_such_model", "--data", good_list, "--out", out), "no_such_model"),
    ]
    for args, needle in cases:
        code, _, err = run_cli(capsys, *args)
        assert_one_line_error(code, err, needle)
        assert not out.exists()
    missing_folder = tmp_path / "videos"
    missing_folder.mkdir()
    code, _, err = run_cli(capsys, *profile_args(ckpt, missing_folder, out))
    assert_one_line_error(code, err, "holds no video")


def test_an_existing_run_or_a_foreign_folder_is_refused(ckpt, good_list, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *profile_args(ckpt, good_list, out))
    assert code == 0, err
    parts = sorted(p.name for p in out.iterdir())
    code, _, err = run_cli(capsys, *profile_args(ckpt, good_list, out))
    assert_one_line_error(code, err, "already holds a run", "--resume")
    code, _, err = run_cli(capsys, *profile_args(ckpt, good_list, out, "--views", 2, "--resume"))
    assert_one_line_error(code, err, "other settings", "views")
    assert sorted(p.name for p in out.iterdir()) == parts  # untouched
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, *profile_args(ckpt, good_list, foreign))
    assert_one_line_error(code, err, "not a run folder")
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


# ----------------------------------------------------------------------------- checkpoints
def _mismatched(tmp_path):
    """Checkpoints that do not fit slow_tiny_atfr, and a word of the expected error."""
    from atfr_analysis import build_model
    from atfr_analysis.checkpoint import save_checkpoint
    from atfr_analysis.train import make_record

    out = {}
    out["baseline-into-atfr"] = (
        make_checkpoint(tmp_path / "base.pyth", name="slow_tiny"),
        ["missing", "--allow-missing sgs"],
    )
    out["other-arch"] = (make_checkpoint(tmp_path / "x3d.pyth", name="x3d_xs_atfr"), ["MODEL.ARCH=x3d"])
    m = build_model(MODEL, num_classes=4)
    rec = make_record(m, MODEL)
    rec["DATA"]["NUM_FRAMES"] = 8
    out["cfg-frames"] = (save_checkpoint(tmp_path / "frames.pyth", m, rec), ["DATA.NUM_FRAMES=8"])
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    k = next(k for k in sd if k.endswith("conv.weight"))
    sd[k] = torch.zeros(sd[k].shape[0] + 1, *sd[k].shape[1:])
    torch.save(sd, tmp_path / "shape.pt")
    out["plain-shape"] = (tmp_path / "shape.pt", ["shape-mismatched"])
    sd = {k: v for k, v in m.state_dict().items()}
    sd["extra.weight"] = torch.zeros(3)
    torch.save({"model_state": sd}, tmp_path / "extra.pyth")
    out["unexpected-key"] = (tmp_path / "extra.pyth", ["unexpected", "extra.weight"])
    (tmp_path / "text.pyth").write_text("not a checkpoint")
    # (checkpoint.py words this one as "needs arbitrary code to unpickle": reported to the lead)
    out["not-a-checkpoint"] = (tmp_path / "text.pyth", [str(tmp_path / "text.pyth")])
    good = make_checkpoint(tmp_path / "good.pyth")
    (tmp_path / "cut.pyth").write_bytes(good.read_bytes()[:5000])
    out["truncated"] = (tmp_path / "cut.pyth", ["cannot read checkpoint"])
    out["missing-file"] = (tmp_path / "nope.pyth", ["checkpoint not found"])
    return out


def test_mismatched_checkpoints_stop_before_any_video(good_list, tmp_path, capsys, monkeypatch):
    import atfr_analysis.data.datasets as ds

    read = []

    def spy(*a, **k):
        read.append(a)
        raise AssertionError("a video was read")

    monkeypatch.setattr(ds, "load_views", spy)
    for name, (ck, needles) in _mismatched(tmp_path).items():
        out = tmp_path / f"run-{name}"
        code, _, err = run_cli(capsys, *profile_args(ck, good_list, out))
        assert_one_line_error(code, err, *needles)
        assert not out.exists(), name
    assert read == []


def test_allow_missing_sgs_loads_a_baseline_into_the_atfr_model(tmp_path, capsys):
    base = make_checkpoint(tmp_path / "base.pyth", name="slow_tiny")
    vids = sample_videos()
    lst = write_list(tmp_path / "l.csv", [vids["carphone_distorted"]])
    code, out, err = run_cli(capsys, *profile_args(base, lst, tmp_path / "run", "--allow-missing", "sgs"))
    assert code == 0, err
    meta = atfr_analysis.load_run(tmp_path / "run").attrs["meta"]
    assert meta["checkpoint_missing_allowed"] and all("ts_layer" in k for k in meta["checkpoint_missing_allowed"])


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused_without_running_it(good_list, tmp_path, capsys):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pyth"
    torch.save({"model_state": {"w": torch.zeros(1)}, "cfg": _Exploit(marker)}, bad)
    with open(tmp_path / "evil.pkl", "wb") as f:  # a plain pickle, not a torch file
        pickle.dump(_Exploit(marker), f)
    for path, needle in ((bad, "weights_only"), (tmp_path / "evil.pkl", "weights_only")):
        out = tmp_path / "run"
        code, _, err = run_cli(capsys, *profile_args(path, good_list, out))
        assert_one_line_error(code, err, needle)
        assert not marker.exists() and not out.exists()


@pytest.mark.slow
def test_errors_in_a_real_process_are_one_line(ckpt, good_list, tmp_path):
    """The same through a real `atfr` process: exit 2, exactly one line on stderr, no traceback."""
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pyth"
    torch.save({"model_state": {"w": torch.zeros(1)}, "cfg": _Exploit(marker)}, bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("\n")
    for ck, lst, needle in ((bad, good_list, "weights_only"), (ckpt, empty, "is empty")):
        p = run_subprocess(atfr_cmd(*profile_args(ck, lst, tmp_path / "run")), timeout=180)
        assert p.returncode == 2, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], p.stderr
        assert p.stdout == "" and not marker.exists() and not (tmp_path / "run").exists()
