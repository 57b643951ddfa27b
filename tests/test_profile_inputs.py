"""What a profiling run is given, checked before any video is decoded, and an exit status that
tells the truth: the label map against the head (``--class-subset``), ``ProfileConfig``'s
validation and its command line, a failed run's exit status and counted reasons, ``--resume``
with the same ``--data-root`` spelled another way, and the log schema's one-line columns."""

import json
import math

import numpy as np
import pytest
import torch
from profile_helpers import (
    MODEL,
    assert_one_line_error,
    assert_same_log,
    make_checkpoint,
    run_cli,
    torch_threads,
    write_list,
)

import atfr_analysis
from atfr_analysis.data.samples import sample_videos
from atfr_analysis.errors import InputError
from atfr_analysis.profile import ProfileConfig, schema
from atfr_analysis.profile.log import load_videos


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "atfr.pyth")  # a 4-class head


@pytest.fixture()
def two_videos(tmp_path):
    v = sample_videos()
    return [v["carphone_pristine"], v["carphone_distorted"]]


def args(ckpt, data, out, *extra):
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
        2,
        "--crops",
        1,
        "--device",
        "cpu",
        "--quiet",
        *extra,
    )


def no_video_decoded(monkeypatch):
    import atfr_analysis.data.datasets as ds

    read = []

    def spy(*a, **k):
        read.append(a)
        raise AssertionError("a video was decoded")

    monkeypatch.setattr(ds, "load_views", spy)
    return read


# ----------------------------------------------------------------------------- label map vs head
def test_a_label_map_smaller_than_the_head_is_refused_before_any_video(ckpt, two_videos, tmp_path, capsys, monkeypatch):
    """3 names for a 4-class head: one line naming both sizes, nothing decoded, nothing written."""
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    lst = write_list(tmp_path / "l.csv", two_videos, labels=["cat", "dog"])
    read = no_video_decoded(monkeypatch)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *args(ckpt, lst, out, "--labels", labels))
    assert_one_line_error(code, err, "3 classes", "4 outputs", "--class-subset")
    assert not out.exists() and read == []
    # a larger map too (and as a Python call: the same one-line InputError)
    labels.write_text("cat\ndog\nbird\nfish\nfrog\n")
    with pytest.raises(InputError, match="5 classes but the checkpoint's head has 4 outputs"):
        atfr_analysis.profile(ckpt, MODEL, lst, out, labels=labels, views=1, crops=1, device="cpu", quiet=True)
    assert not out.exists() and read == []


@pytest.mark.parametrize(
    "subset,needles",
    [
        ("0,1", ["2 head indices", "3 classes"]),
        ("0,1,4", ["head index 4 is out of range", "4 outputs"]),
        ("0,1,1", ["head index 1 is given twice"]),
        ("0,x,2", ["is neither a comma list"]),
        ("", ["no head index"]),
    ],
    ids=["length", "range", "duplicate", "not-ints", "empty"],
)
def test_a_bad_class_subset_is_one_line_before_any_video(
    ckpt, two_videos, tmp_path, capsys, monkeypatch, subset, needles
):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    lst = write_list(tmp_path / "l.csv", two_videos, labels=["cat", "dog"])
    read = no_video_decoded(monkeypatch)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *args(ckpt, lst, out, "--labels", labels, "--class-subset", subset))
    assert_one_line_error(code, err, *needles)
    assert not out.exists() and read == []


def test_class_subset_needs_a_label_map(ckpt, two_videos, tmp_path, capsys):
    lst = write_list(tmp_path / "l.csv", two_videos)
    code, _, err = run_cli(capsys, *args(ckpt, lst, tmp_path / "run", "--class-subset", "0,1"))
    assert_one_line_error(code, err, "--class-subset needs --labels")


def test_class_subset_restricts_scores_and_predictions_to_those_outputs(ckpt, two_videos, tmp_path, capsys):
    """A 3-name map over head outputs 3, 0, 2: each view's scores are the full-head softmax at
    those outputs, in map order, renormalised; top-5 and the video prediction are map ids."""
    subset = [3, 0, 2]
    full = write_list(tmp_path / "full.csv", two_videos, labels=[3, 0])  # head ids of cat, dog
    with torch_threads(1):
        atfr_analysis.profile(ckpt, MODEL, full, tmp_path / "full", views=2, crops=1, device="cpu", quiet=True)
        labels = tmp_path / "labels.json"
        labels.write_text(json.dumps({"cat": 0, "dog": 1, "bird": 2}))
        sub_file = tmp_path / "subset.txt"
        sub_file.write_text("# head output of cat, dog, bird\n3\n0\n2\n")
        lst = write_list(tmp_path / "l.csv", two_videos, labels=["cat", "dog"])
        code, stdout, err = run_cli(
            capsys, *args(ckpt, lst, tmp_path / "run", "--labels", labels, "--class-subset", sub_file)
        )
    assert code == 0, err
    a, b = atfr_analysis.load_run(tmp_path / "full"), atfr_analysis.load_run(tmp_path / "run")
    sa = torch.tensor(np.stack(a["scores"].map(lambda x: np.asarray(x, np.float32)).tolist()))
    sb = torch.tensor(np.stack(b["scores"].map(lambda x: np.asarray(x, np.float32)).tolist()))
    assert sa.shape == (4, 4) and sb.shape == (4, 3)
    expected = sa[:, subset] / sa[:, subset].sum(dim=1, keepdim=True)
    assert torch.equal(sb, expected)
    assert (b["top5_ids"].map(len) == 3).all() and b["top5_ids"].map(max).max() <= 2
    assert b["gmacs"].tolist() == a["gmacs"].tolist()  # the cost does not depend on the classes
    vb = load_videos(tmp_path / "run")
    for _, v in vb.iterrows():
        assert len(v["scores_sum"]) == 3 and int(v["top1_id"]) == int(np.argmax(v["scores_sum"]))
    meta = b.attrs["meta"]
    assert meta["class_subset"] == subset and meta["head_classes"] == 4 and meta["num_classes"] == 3
    assert meta["class_names"] == ["cat", "dog", "bird"] and "class_subset" in meta["conventions"]["scores"]
    assert "top-1" in stdout


# ----------------------------------------------------------------------------- exit status
def test_a_run_where_every_video_fails_exits_4_and_keeps_its_log(ckpt, tmp_path, capsys):
    # (files that do not exist refuse the list up front: videos that exist but do not decode)
    lst = write_list(tmp_path / "l.csv", [tmp_path / "x1.mp4", tmp_path / "x2.mp4", tmp_path / "x.mp4"])
    for name in ("x1.mp4", "x2.mp4", "x.mp4"):
        (tmp_path / name).write_text("not a video\n" * 10)
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, *args(ckpt, lst, out, "--max-failed-fraction", "1"))
    assert code == 4, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no video could be profiled: all 3 failed"), err
    assert "3 x cannot open" in lines[0] and str(out) in lines[0] and "Traceback" not in err
    assert "0 ok, 3 failed" in stdout and "3 failed: 3 x cannot open" in stdout
    log = atfr_analysis.load_run(out)  # nothing is lost: every video has its failed rows
    assert len(log) == 3 * 2 and (log["status"] == "failed").all()
    summary = log.attrs["meta"]["summary"]
    assert summary["exit_code"] == 4 and summary["failure_reasons"] == {"cannot open": 3}


def test_partial_failure_exits_3_above_the_allowed_fraction(ckpt, two_videos, tmp_path, capsys):
    (tmp_path / "broken.mp4").write_text("not a video\n" * 10)
    lst = write_list(tmp_path / "l.csv", [two_videos[0], tmp_path / "broken.mp4", two_videos[1]])
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, *args(ckpt, lst, out, "--max-failed-fraction", "0.25"))
    assert code == 3, err
    assert err.strip().splitlines() == [err.strip()] and "1 of 3 videos failed (1 x cannot open)" in err
    assert "--max-failed-fraction 0.25" in err and "2 ok, 1 failed" in stdout
    assert len(atfr_analysis.load_run(out)) == 3 * 2
    # the same log judged with a fraction that allows one failure in three: exit 0, no error line
    code, stdout, err = run_cli(capsys, *args(ckpt, lst, out, "--resume", "--max-failed-fraction", "0.34"))
    assert code == 0 and err == "" and "2 ok, 1 failed" in stdout and "1 failed: 1 x cannot open" in stdout
    # the Python API returns the summary, whose exit_code says the same
    s = atfr_analysis.profile(ckpt, MODEL, lst, out, views=2, crops=1, device="cpu", quiet=True, resume=True)
    assert s.exit_code == 3 and s.failure_reasons == {"cannot open": 1} and "1 of 3 videos failed" in s.verdict()


@pytest.mark.parametrize("bad", ["-0.1", "1.5", "nan"])
def test_max_failed_fraction_must_be_a_fraction(ckpt, two_videos, tmp_path, capsys, bad):
    lst = write_list(tmp_path / "l.csv", two_videos)
    code, _, err = run_cli(capsys, *args(ckpt, lst, tmp_path / "run", "--max-failed-fraction", bad))
    assert_one_line_error(code, err, "--max-failed-fraction")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- resume
def test_resume_with_the_data_root_spelled_relative(ckpt, tmp_path, monkeypatch):
    """Begun with an absolute --data-root, resumed with the same folder spelled relative (another
    working directory): the resume is accepted and completes the uninterrupted run's log."""
    v = sample_videos()
    root = tmp_path / "videos"
    root.mkdir()
    for n in ("carphone_pristine", "carphone_distorted", "bikes"):
        (root / f"{n}.mp4").symlink_to(v[n])
    lst = tmp_path / "val.csv"
    lst.write_text("carphone_pristine.mp4,0\ncarphone_distorted.mp4,1\nbikes.mp4,2\n")
    kw = dict(views=1, crops=1, device="cpu", quiet=True)
    with torch_threads(1):
        atfr_analysis.profile(ckpt, MODEL, lst, tmp_path / "ref", data_root=root, **kw)
        atfr_analysis.profile(ckpt, MODEL, lst, tmp_path / "run", data_root=root, flush_every=1, stop_after=1, **kw)
        monkeypatch.chdir(tmp_path)
        s = atfr_analysis.profile(ckpt, MODEL, "val.csv", "run", data_root="videos", resume=True, **kw)
    assert s.skipped == 1 and s.processed == 2 and s.complete and s.exit_code == 0
    ref, log = atfr_analysis.load_run(tmp_path / "ref"), atfr_analysis.load_run(tmp_path / "run")
    assert_same_log(log, ref)
    assert set(log["path"]) == {str(root / f"{n}.mp4") for n in ("carphone_pristine", "carphone_distorted", "bikes")}


# ----------------------------------------------------------------------------- the config
@pytest.mark.parametrize(
    "opts,needle",
    [
        (dict(batch_size=0), "--batch-size"),
        (dict(workers=-1), "--workers"),
        (dict(views=0), "--views"),
        (dict(crops=2), "--crops"),
        (dict(batching="loose"), "--batching"),
        (dict(precision="fp8"), "--precision"),
        (dict(retry_failed=True), "--retry-failed needs --resume"),
        (dict(allow_missing="head"), "allow_missing"),
        (dict(max_failed_fraction=2), "--max-failed-fraction"),
        (dict(device="tpu"), "--device"),
        (dict(shard="3/2"), "--shard"),
        (dict(flush_every=0), "flush_every"),
        (dict(class_subset=[1, 1]), "given twice"),
    ],
)
def test_profile_config_validates_every_value(tmp_path, opts, needle):
    with pytest.raises(InputError, match=needle.replace("-", r"\-")) as e:
        ProfileConfig("ck.pyth", MODEL, "val.csv", tmp_path / "run", **opts)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()


def test_the_recorded_command_line_parses_back_to_the_same_config(tmp_path, capsys, monkeypatch):
    import importlib

    run = importlib.import_module("atfr_analysis.profile.run")  # (atfr_analysis.profile is also a function)

    cfg = ProfileConfig(
        tmp_path / "ck.pyth",
        MODEL,
        tmp_path / "val.csv",
        tmp_path / "run",
        data_root=tmp_path,
        labels=tmp_path / "l.txt",
        class_subset="4,0,2",
        views=3,
        crops=3,
        batching="padded",
        batch_size=2,
        device="cpu",
        resume=True,
        retry_failed=True,
        shard="1/2",
        max_failed_fraction=0.125,
        quiet=True,
        flush_every=4,
    )
    seen = []

    def fake(c):
        seen.append(c)
        raise InputError("stop here")

    monkeypatch.setattr(run, "run_profile", fake)
    cmd = cfg.command_line()
    assert cmd[:2] == ["atfr", "profile"]
    code, _, err = run_cli(capsys, *cmd[1:])
    assert code == 2 and "stop here" in err
    got = seen[0]
    for f in (
        "model",
        "views",
        "crops",
        "batching",
        "batch_size",
        "device",
        "resume",
        "retry_failed",
        "shard",
        "class_subset",
        "max_failed_fraction",
        "quiet",
        "flush_every",
        "precision",
        "allow_missing",
        "workers",
    ):
        assert getattr(got, f) == getattr(cfg, f), f
    for f in ("checkpoint", "data", "out", "data_root", "labels"):
        assert str(getattr(got, f)) == str(getattr(cfg, f)), f
    assert got.command_line() == cmd


def test_profile_takes_a_config_or_keywords(ckpt, two_videos, tmp_path):
    lst = write_list(tmp_path / "l.csv", two_videos[:1])
    cfg = ProfileConfig(ckpt, MODEL, lst, tmp_path / "a", views=1, crops=1, device="cpu", quiet=True)
    with torch_threads(1):
        s1 = atfr_analysis.profile(cfg)
        s2 = atfr_analysis.profile(ckpt, MODEL, lst, tmp_path / "b", views=1, crops=1, device="cpu", quiet=True)
    assert s1.videos_ok == s2.videos_ok == 1
    assert_same_log(atfr_analysis.load_run(tmp_path / "a"), atfr_analysis.load_run(tmp_path / "b"))
    with pytest.raises(TypeError):
        atfr_analysis.profile(cfg, MODEL)


# ----------------------------------------------------------------------------- the schema
def test_a_data_layer_column_is_one_schema_line(ckpt, two_videos, tmp_path, monkeypatch):
    """One more ``Column`` line (a per-view fact of the data layer, ``clip_start``) puts it in the
    log with the data layer's values, and a log written without it reads with its missing value."""
    from atfr_analysis.data.datasets import load_views
    from atfr_analysis.data.views import view_protocol
    from atfr_analysis.loading import load_model_from_checkpoint

    (tmp_path / "broken.mp4").write_text("not a video\n" * 10)
    lst = write_list(tmp_path / "l.csv", [two_videos[0], tmp_path / "broken.mp4"])
    kw = dict(views=2, crops=1, device="cpu", quiet=True, max_failed_fraction=1.0)
    with torch_threads(1):
        atfr_analysis.profile(ckpt, MODEL, lst, tmp_path / "old", **kw)
        extra = schema.Column("clip_start", "float64", "view", missing=math.nan)
        monkeypatch.setattr(schema, "VIEWS", schema.VIEWS + (extra,))
        atfr_analysis.profile(ckpt, MODEL, lst, tmp_path / "new", **kw)
    log = atfr_analysis.load_run(tmp_path / "new")
    assert list(log.columns)[-1] == "clip_start" and log["clip_start"].dtype == "float64"
    model, _, _ = load_model_from_checkpoint(ckpt, MODEL)
    _, vmeta, _ = load_views(two_videos[0], model.spec, view_protocol(model, 2, 1))
    assert log.loc[log["video_id"] == 0, "clip_start"].tolist() == [float(x) for x in vmeta["clip_start"]]
    assert log.loc[log["video_id"] == 1, "clip_start"].isna().all()  # the failed video
    old = atfr_analysis.load_run(tmp_path / "old")  # written before the column existed
    assert list(old.columns) == list(log.columns) and old["clip_start"].isna().all()
    assert_same_log(old.drop(columns="clip_start"), log.drop(columns="clip_start"))


def test_bins_columns_are_named_in_one_place():
    assert schema.bins_column("s2.ts_layer") == "bins.s2.ts_layer"
    cols = schema.view_column_names(["a", "b.c"])
    assert schema.bins_layers(cols) == ["a", "b.c"]
    assert cols.index("bins.a") == cols.index("error") + 1 and cols.index("bins.b.c") + 1 == cols.index("gmacs")


def test_the_analysis_refuses_a_table_without_the_logs_columns():
    """The analysis takes the columns the log guarantees as given (no re-derived view indices)."""
    from analysis_logs import build_log

    from atfr_analysis.analysis import AnalysisError, per_class

    log = build_log([{"label": 0, "views": [{"gmacs": 1.0, "scores": [1.0, 0.0]}]}], ["a", "b"])
    assert per_class(log)["videos"].iloc[-1] == 1
    with pytest.raises(AnalysisError, match="missing column.*temporal_index"):
        per_class(log.drop(columns=["temporal_index"]))


def test_profile_config_is_a_frozen_value():
    """ProfileConfig is checked when built and frozen: its checked values (a class subset as ints,
    the failed fraction as a float) are what it holds, and a change is a checked copy (issue 31)."""
    import dataclasses

    from atfr_analysis.errors import InputError
    from atfr_analysis.profile import ProfileConfig

    cfg = ProfileConfig("c.pyth", "slow_tiny", "val.csv", "runs/x", class_subset="0,2", max_failed_fraction=1)
    assert cfg.class_subset == (0, 2) and cfg.max_failed_fraction == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.views = 3
    assert cfg.replace(views=3).views == 3 and cfg.views is None
    with pytest.raises(InputError, match="--views"):
        cfg.replace(views=0)
