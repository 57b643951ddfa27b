"""``atfr profile`` on PySlowFast's test views (``data.views.sample_views``): the protocol options
and their GMACs, every view auditable in the log (frames, crop box, resized size, checked against
``shared/fixtures/pyslowfast_views``), Caffe2 checkpoints, rotation, partial videos, uint8 views
normalised on the device, FFmpeg threads per local rank."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from profile_helpers import MODEL, assert_one_line_error, make_checkpoint, run_cli, torch_threads, write_list

import atfr_analysis
from atfr_analysis.data.views import view_protocol
from atfr_analysis.errors import InputError
from atfr_analysis.profile.config import ProfileConfig
from atfr_analysis.profile.log import load_videos
from atfr_analysis.tuning import ffmpeg_threads


@pytest.fixture(scope="module")
def views_fixture(shared_dir):
    root = shared_dir / "fixtures" / "pyslowfast_views"
    return root, json.loads((root / "views.json").read_text())


def _fixture_views(fx, video: str, setting: str) -> list[dict]:
    got = sorted((v for v in fx["views"] if v["video"] == video and v["setting"] == setting), key=lambda v: v["view"])
    assert got, (video, setting)
    return got


def _assert_log_matches(log: pd.DataFrame, want: list[dict]) -> None:
    """Every view of the log: the fixture's frames (fastest pathway), crop box and resized size."""
    log = log.sort_values("view")
    assert log["view"].tolist() == [v["view"] for v in want]
    assert (log["status"] == "ok").all()
    for (_, row), v in zip(log.iterrows(), want):
        assert list(row["frame_indices"]) == v["frames"], v["view"]
        assert list(row["crop_box"]) == v["crop_box"], v["view"]
        assert list(row["resized_hw"]) == v["resized_hw"], v["view"]
        assert row["frame_start"] == v["frames"][0] and row["frame_end"] == v["frames"][-1]


def _profile(capsys, ckpt, model, video, out, *extra):
    lst = write_list(out.parent / f"{out.name}.csv", [video])
    return run_cli(
        capsys, "profile", ckpt, "--model", model, "--data", lst, "--out", out, "--device", "cpu", "--quiet", *extra
    )


@pytest.fixture(scope="module")
def x3d_ckpt(tmp_path_factory):
    return make_checkpoint(
        tmp_path_factory.mktemp("x3d") / "x3d_s.pyth", name="x3d_s", num_classes=400
    )  # a Kinetics head, as the paper's rows


# ----------------------------------------------------------------------------- protocol and GMACs
@pytest.mark.slow
def test_x3d_s_1_crop_protocol_gmacs_and_fixture_views(x3d_ckpt, views_fixture, tmp_path, capsys):
    """``--crops 1`` on X3D-S: short side 182, centre 160x160 (PySlowFast's 1-crop rule), 1.96
    GMACs per view (the paper's X3D-S 1.9 GFLOPs row), and the fixture's
    ``x3d_s_10x1_2020frames`` frames and boxes."""
    root, fx = views_fixture
    out = tmp_path / "x3d_10x1"
    with torch_threads(2):
        code, stdout, err = _profile(
            capsys, x3d_ckpt, "x3d_s", root / "videos" / "carphone_short40.mp4", out, "--crops", "1"
        )
    assert code == 0, err
    log = atfr_analysis.load_run(out)
    meta = log.attrs["meta"]
    assert meta["protocol"] == {"views": 10, "crops": 1, "short_side": 182, "crop": 160}
    assert meta["short_side"] == 182 and meta["crop"] == 160
    assert round(float(meta["static_gmacs"]), 2) == 1.96
    assert len(log) == 10 and log["gmacs"].round(2).eq(1.96).all()
    assert "views: 10 x 1 per video, short side 182, crop 160" in stdout
    _assert_log_matches(log, _fixture_views(fx, "carphone_short40.mp4", "x3d_s_10x1_2020frames"))


@pytest.mark.slow
def test_x3d_s_default_10x3_gmacs_and_fixture_views(x3d_ckpt, views_fixture, tmp_path, capsys):
    """The default 10x3 on X3D-S: short side = crop = 182, 2.73 GMACs per view, the fixture's
    ``x3d_s_10x3`` frames and boxes on a real clip."""
    root, fx = views_fixture
    out = tmp_path / "x3d_10x3"
    with torch_threads(2):
        code, _, err = _profile(capsys, x3d_ckpt, "x3d_s", root / "videos" / "carphone_short40.mp4", out)
    assert code == 0, err
    log = atfr_analysis.load_run(out)
    meta = log.attrs["meta"]
    assert meta["protocol"] == {"views": 10, "crops": 3, "short_side": 182, "crop": 182}
    assert round(float(meta["static_gmacs"]), 2) == 2.73
    assert len(log) == 30 and log["gmacs"].round(2).eq(2.73).all()
    _assert_log_matches(log, _fixture_views(fx, "carphone_short40.mp4", "x3d_s_10x3"))


def test_protocol_options_are_checked_and_recorded(tmp_path, capsys):
    with pytest.raises(InputError, match="--crop 200 is larger than --short-side 180"):
        ProfileConfig("c.pyth", MODEL, "l.csv", tmp_path / "r", short_side=180, crop=200)
    with pytest.raises(InputError, match="--short-side must be an integer >= 1"):
        ProfileConfig("c.pyth", MODEL, "l.csv", tmp_path / "r", short_side=0)
    cfg = ProfileConfig("c.pyth", MODEL, "l.csv", tmp_path / "r", short_side=80, crop=64, apply_rotation=True)
    line = cfg.command_line()
    assert line[line.index("--short-side") + 1] == "80" and line[line.index("--crop") + 1] == "64"
    assert "--apply-rotation" in line
    code, _, err = run_cli(
        capsys,
        "profile",
        "c.pyth",
        "--model",
        MODEL,
        "--data",
        "l.csv",
        "--out",
        tmp_path / "r",
        "--short-side",
        "60",
        "--crop",
        "64",
    )
    assert_one_line_error(code, err, "--crop 64 is larger than --short-side 60")


def test_short_side_and_crop_change_the_views_and_the_costs(tmp_path, capsys):
    """``--short-side`` / ``--crop`` on a tiny model: the log's boxes and sizes follow them, the
    GMACs follow the crop, and a resumption with another crop is refused."""
    from atfr_analysis.data.samples import sample_videos

    ckpt = make_checkpoint(tmp_path / "c.pyth")
    video = sample_videos()["carphone_distorted"]  # 176x144
    with torch_threads(1):
        code, _, err = _profile(capsys, ckpt, MODEL, video, tmp_path / "a", "--views", "1", "--crops", "1")
        assert code == 0, err
        code, _, err = _profile(
            capsys,
            ckpt,
            MODEL,
            video,
            tmp_path / "b",
            "--views",
            "1",
            "--crops",
            "1",
            "--short-side",
            "72",
            "--crop",
            "48",
        )
        assert code == 0, err
    a, b = atfr_analysis.load_run(tmp_path / "a"), atfr_analysis.load_run(tmp_path / "b")
    assert a.attrs["meta"]["protocol"] == {"views": 1, "crops": 1, "short_side": 64, "crop": 64}
    assert b.attrs["meta"]["protocol"] == {"views": 1, "crops": 1, "short_side": 72, "crop": 48}
    assert list(a["resized_hw"].iloc[0]) == [64, 78] and list(a["crop_box"].iloc[0]) == [0, 7, 64, 71]
    assert list(b["resized_hw"].iloc[0]) == [72, 88] and list(b["crop_box"].iloc[0]) == [12, 20, 60, 68]
    ratio = b.attrs["meta"]["static_gmacs"] / a.attrs["meta"]["static_gmacs"]
    assert 0.4 < ratio < 0.7  # (48/64)^2 = 0.56 of the spatial work
    code, _, err = run_cli(
        capsys,
        "profile",
        ckpt,
        "--model",
        MODEL,
        "--data",
        tmp_path / "a.csv",
        "--out",
        tmp_path / "a",
        "--views",
        "1",
        "--crops",
        "1",
        "--crop",
        "48",
        "--short-side",
        "72",
        "--resume",
        "--quiet",
    )
    assert_one_line_error(code, err, "other settings", "short_side")


# ----------------------------------------------------------------------------- Caffe2
def test_the_partial_caffe2_sample_is_refused_naming_the_missing_keys(shared_dir, tmp_path, capsys):
    """The sample holds only s1/s2/head blobs: as for ``.pyth``, a blob set that does not cover the
    model is refused (one line naming missing keys), before any video is read."""
    sample = shared_dir / "fixtures" / "caffe2" / "slowfast_4x16_r50_sample.pkl"
    video = shared_dir / "fixtures" / "pyslowfast_views" / "videos" / "carphone_short40.mp4"
    out = tmp_path / "run"
    code, _, err = _profile(capsys, sample, "slowfast_4x16_r50", video, out)
    assert_one_line_error(code, err, "missing", "s3.")
    assert not out.exists()


@pytest.mark.slow
def test_a_caffe2_checkpoint_profiles_with_the_fixture_views(shared_dir, views_fixture, tmp_path, capsys):
    """A full Caffe2 blob set (the real format: a protocol-2 pickle of ``{"blobs": ...}``, every blob
    of the fixture's table, the non-weight blobs too) profiles SlowFast 4x16 at its default 10x3:
    ``run.json`` and the summary name the format, the log holds the fixture's frames and boxes."""
    root, fx = views_fixture
    table = json.loads((shared_dir / "fixtures" / "caffe2" / "slowfast_4x16_r50.json").read_text())
    rng = np.random.default_rng(0)
    blobs = {b: rng.standard_normal(v["shape"], dtype=np.float32) * 0.01 for b, v in table["blobs"].items()}
    for b in table["blobs"]:
        if b.endswith("_bn_riv"):
            blobs[b] = np.abs(blobs[b]) + 1.0
    blobs.update(
        conv1_w_momentum=np.zeros([64, 3, 1, 7, 7], np.float32),
        lr=np.array([0.1], np.float32),
        model_iter=np.array([196000], np.int64),
    )
    ckpt = tmp_path / "SLOWFAST_4x16_R50.pkl"
    with open(ckpt, "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    del blobs
    out = tmp_path / "run"
    with torch_threads(2):
        code, stdout, err = _profile(
            capsys,
            ckpt,
            "slowfast_4x16_r50",
            root / "videos" / "carphone_short40.mp4",
            out,
            "--labels",
            _labels(tmp_path, 400),
            "--batch-size",
            "10",
        )
    assert code == 0, err
    log = atfr_analysis.load_run(out)
    meta = log.attrs["meta"]
    assert meta["checkpoint_format"].startswith("caffe2") and meta["summary"]["checkpoint_format"].startswith("caffe2")
    assert "checkpoint: caffe2" in stdout
    assert meta["protocol"] == {"views": 10, "crops": 3, "short_side": 256, "crop": 256}
    _assert_log_matches(log, _fixture_views(fx, "carphone_short40.mp4", "slowfast_4x16_r50_10x3"))


def _labels(tmp_path, n):
    p = tmp_path / "labels.txt"
    p.write_text("".join(f"class {k}\n" for k in range(n)))
    return p


# ----------------------------------------------------------------------------- rotation
def test_rotation_is_logged_warned_once_and_applied_on_request(tmp_path, capsys):
    from test_data_video import _rotated_clip

    from atfr_analysis.data.samples import sample_videos

    ckpt = make_checkpoint(tmp_path / "c.pyth")
    rot = [_rotated_clip(tmp_path / f"rot{k}.mp4", rotation=90) for k in range(2)]
    lst = write_list(tmp_path / "l.csv", [rot[0], sample_videos()["carphone_distorted"], rot[1]], labels=[0, 1, 2])
    base = (
        "profile",
        ckpt,
        "--model",
        MODEL,
        "--data",
        lst,
        "--views",
        "1",
        "--crops",
        "3",
        "--device",
        "cpu",
        "--quiet",
    )
    with torch_threads(1):
        code, stdout, err = run_cli(capsys, *base, "--out", tmp_path / "asis")
        assert code == 0, err
        warn = "2 videos carry rotation metadata (column 'rotation'); their frames were used as decoded"
        assert err.count("warning:") == 1 and warn in err and "--apply-rotation turns them" in err
        assert warn in stdout
        code, stdout, err = run_cli(capsys, *base, "--out", tmp_path / "turned", "--apply-rotation")
        assert code == 0, err
        assert err.count("warning:") == 1 and "turned upright (--apply-rotation)" in err
    asis, turned = atfr_analysis.load_run(tmp_path / "asis"), atfr_analysis.load_run(tmp_path / "turned")
    assert load_videos(tmp_path / "asis")["rotation"].tolist() == [90, 0, 90]
    assert asis.attrs["meta"]["apply_rotation"] is False and turned.attrs["meta"]["apply_rotation"] is True
    # 64x48 as decoded (landscape), 48x64 turned (portrait): the crops run along the other side
    first = lambda log, col: [list(x) for x in log.loc[log["video_id"] == 0, col]]  # noqa: E731
    assert first(asis, "resized_hw") == [[64, 85]] * 3 and first(turned, "resized_hw") == [[85, 64]] * 3
    assert first(asis, "crop_box")[2] == [0, 21, 64, 85] and first(turned, "crop_box")[2] == [21, 0, 85, 64]
    # the unrotated video's views do not change
    a1, t1 = asis[asis["video_id"] == 1], turned[turned["video_id"] == 1]
    assert np.array_equal(np.stack(a1["scores"].map(np.asarray)), np.stack(t1["scores"].map(np.asarray)))


# ----------------------------------------------------------------------------- partial videos
def test_a_partial_video_profiles_the_views_that_decode(tmp_path, capsys):
    from test_views import _truncated

    from atfr_analysis.data.samples import sample_videos
    from atfr_analysis.data.views import sample_views

    bikes = sample_videos()["bikes"]
    cut = _truncated(bikes, tmp_path, 140)
    ckpt = make_checkpoint(tmp_path / "c.pyth")
    lst = write_list(tmp_path / "l.csv", [cut])
    out = tmp_path / "run"
    with torch_threads(1):
        code, stdout, err = run_cli(
            capsys,
            "profile",
            ckpt,
            "--model",
            MODEL,
            "--data",
            lst,
            "--out",
            out,
            "--views",
            "4",
            "--crops",
            "1",
            "--device",
            "cpu",
            "--quiet",
        )
    assert code == 0, err
    log = atfr_analysis.load_run(out).sort_values("view")
    whole = sample_views(bikes, MODEL, view_protocol(MODEL, 4, 1), checksums=False)
    ok, failed = log[log["status"] == "ok"], log[log["status"] == "failed"]
    assert len(log) == 4 and len(ok) >= 1 and len(failed) >= 1
    assert ok["view"].max() < failed["view"].min()  # the views past the cut fail
    for _, row in ok.iterrows():  # the same frames as in the whole file
        assert list(row["frame_indices"]) == whole.views[row["view"]].frames and row["gmacs"] > 0
    for e in failed["error"]:
        assert "stream ends after" in e and "\n" not in e
    assert failed["gmacs"].isna().all() and failed["frame_indices"].isna().all()
    vt = load_videos(out)
    assert vt["status"].tolist() == ["ok"] and vt["partial"].tolist() == [True]
    assert vt["views_ok"].tolist() == [len(ok)] and "stream ends after" in vt["error"].iloc[0]
    assert f"1 partial video: {len(failed)} views failed" in stdout
    # an intact video is not partial
    assert log.attrs["meta"]["summary"]["videos_partial"] == 1


# ----------------------------------------------------------------------------- uint8 views
def test_uint8_views_normalised_on_the_device_match_the_float_path(tmp_path):
    """The profiler's uint8 views (normalised on the device) against the float32 views of the
    same frames: the inputs agree within the fixture's checksum tolerance and the scores within
    float rounding (measured: 1.2e-5 absolute on SlowFast 4x16 at 256)."""
    from atfr_analysis.data.datasets import load_views
    from atfr_analysis.data.samples import sample_videos
    from atfr_analysis.data.transforms import checksum, normalize_views
    from atfr_analysis.loading import load_model_from_checkpoint

    ckpt = make_checkpoint(tmp_path / "c.pyth")
    video = sample_videos()["carphone_distorted"]  # 176x144: resized to 64, rounded in uint8
    lst = write_list(tmp_path / "l.csv", [video])
    with torch_threads(1):
        atfr_analysis.profile(ckpt, MODEL, lst, tmp_path / "run", views=2, crops=3, device="cpu", quiet=True)
        log = atfr_analysis.load_run(tmp_path / "run").sort_values("view")
        net, _, _ = load_model_from_checkpoint(ckpt, MODEL)
        net.eval()
        f32, meta, _ = load_views(video, net, view_protocol(net, 2, 3))
        u8, meta8, _ = load_views(video, net, view_protocol(net, 2, 3), dtype=torch.uint8)
        assert u8[0].dtype == torch.uint8 and meta == meta8
        x8 = normalize_views(u8, device="cpu")
        for a, b in zip(x8, f32):
            for v in range(a.shape[0]):
                ca, cb = checksum(a[v]), checksum(b[v])
                assert abs(ca["mean"] - cb["mean"]) <= 1e-3 and abs(ca["std"] - cb["std"]) <= 1e-3
        with torch.no_grad():  # view by view: the log's exact batching is each view alone
            one = lambda xs, v: net([x[v : v + 1] for x in xs])  # noqa: E731 - the eval head gives the softmax
            ref = torch.cat([one(f32, v) for v in range(6)])
            via8 = torch.cat([one(x8, v) for v in range(6)])
    logged = torch.tensor(np.stack(log["scores"].map(np.asarray)))
    assert torch.allclose(logged, via8, atol=1e-6, rtol=0)  # the log is the uint8 path
    assert (logged - ref).abs().max() <= 1e-3
    assert torch.equal(logged.argmax(1), ref.argmax(1))


# ----------------------------------------------------------------------------- FFmpeg threads
def test_ffmpeg_threads_are_a_share_of_the_local_ranks_cores():
    assert ffmpeg_threads(0, {}, cores=16) == 0  # one process: FFmpeg's own choice
    assert ffmpeg_threads(2, {}, cores=16) == 8
    assert ffmpeg_threads(0, {"LOCAL_WORLD_SIZE": "4"}, cores=16) == 4
    assert ffmpeg_threads(3, {"LOCAL_WORLD_SIZE": "4"}, cores=16) == 1
    assert ffmpeg_threads(2, {"LOCAL_WORLD_SIZE": "8"}, cores=4) == 1
    assert ffmpeg_threads(0, {"LOCAL_WORLD_SIZE": "junk"}, cores=4) == 0
