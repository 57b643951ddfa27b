"""``atfr profile`` end to end on the real sample clips with a small ATFR model (slow_tiny_atfr,
16x64x64, SGS at res2 with B = 16): the log's shape, exact GMACs against a direct fvcore trace,
video-level top-1 from summed softmax, and a frozen clip against the same footage in motion."""

import json

import numpy as np
import pytest
import torch
from profile_helpers import MODEL, SAMPLES, frozen_and_moving, make_checkpoint, run_cli, sample_list

import atfr_analysis
from atfr_analysis.data.samples import sample_videos
from atfr_analysis.profile.log import load_videos
from atfr_analysis.profile.schema import view_column_names

VIEWS, CROPS = 2, 1
LAYER = "s2.ts_layer"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "slow_tiny_atfr.pyth")


@pytest.fixture(scope="module")
def csv_run(ckpt, tmp_path_factory):
    """The four sample clips from a CSV list, through the Python API."""
    d = tmp_path_factory.mktemp("csv")
    lst = sample_list(d / "val.csv")
    summary = atfr_analysis.profile(
        ckpt, MODEL, lst, d / "run", views=VIEWS, crops=CROPS, batch_size=3, device="cpu", quiet=True
    )
    return d / "run", summary


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return frozen_and_moving(tmp_path_factory.mktemp("clips"))


def test_rows_columns_and_run_json(csv_run, ckpt):
    run, summary = csv_run
    log = atfr_analysis.load_run(run)
    assert len(log) == len(SAMPLES) * VIEWS * CROPS
    assert list(log.columns) == view_column_names([LAYER])
    assert (log["status"] == "ok").all() and log["error"].isna().all()
    per_video = log.groupby("video_id").size()
    assert per_video.tolist() == [VIEWS * CROPS] * len(SAMPLES)
    assert log.groupby("video_id")["view"].apply(list).tolist() == [list(range(VIEWS * CROPS))] * len(SAMPLES)
    assert (log["temporal_index"] == log["view"] // CROPS).all() and (log["spatial_index"] == 0).all()
    assert (log["frame_end"] > log["frame_start"]).all()
    assert log["label"].tolist() == sorted(list(range(len(SAMPLES))) * VIEWS)
    assert set(log["path"]) == {str(p) for p in sample_videos().values()}
    assert log[f"bins.{LAYER}"].between(1, 16).all()
    assert (log["top5_ids"].map(len) == 4).all()  # 4 classes: top-5 holds all of them
    assert (log["gmacs_executed"] == log["gmacs"]).all()  # exact batching
    assert (log["gmacs_fvcore"] > log["gmacs"]).all()

    meta = json.loads((run / "run.json").read_text())
    assert meta == log.attrs["meta"]
    for k in (
        "model",
        "checkpoint",
        "checkpoint_sha256",
        "frames",
        "sampling_rate",
        "crop",
        "views",
        "crops",
        "batching",
        "conventions",
        "versions",
        "device",
        "start_time",
        "end_time",
        "command",
        "static_gmacs",
    ):
        assert meta.get(k) is not None, k
    assert meta["model"] == MODEL and meta["frames"] == [16] and meta["crop"] == 64
    assert meta["views"] == VIEWS and meta["crops"] == CROPS and meta["batching"] == "exact"
    import hashlib

    assert meta["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert meta["command"][:2] == ["atfr", "profile"] and "--views" in meta["command"]
    assert meta["summary"]["videos_ok"] == len(SAMPLES) and meta["summary"]["complete"]
    assert meta["sgs_layers"] == {LAYER: {"num_bins": 16}}

    assert summary.videos_ok == len(SAMPLES) and summary.videos_failed == 0
    assert summary.views == len(log) and summary.complete
    assert summary.gmacs_x_views == pytest.approx(log.groupby("video_id")["gmacs"].sum().mean())
    assert summary.static_gmacs_x_views == pytest.approx(meta["static_gmacs"] * VIEWS * CROPS)
    assert summary.reduction_pct == pytest.approx(100 * (1 - summary.gmacs_x_views / summary.static_gmacs_x_views))
    text = "\n".join(summary.lines())
    assert "top-1" in text and "reduction" in text and "4 ok, 0 failed" in text


def test_gmacs_equal_a_direct_fvcore_trace(csv_run, ckpt):
    """The log's per-view GMACs (cost cache) equal one fvcore trace of the model on that view alone."""
    from atfr_analysis.data.datasets import load_views
    from atfr_analysis.data.views import view_protocol
    from atfr_analysis.flops import direct_trace
    from atfr_analysis.loading import load_model_from_checkpoint

    run, _ = csv_run
    log = atfr_analysis.load_run(run)
    model, _, _ = load_model_from_checkpoint(ckpt, MODEL)
    model.eval()
    checked = 0
    for vid, view in ((0, 1), (2, 0), (3, 1)):  # bikes, carphone_pristine, carphone_distorted
        row = log[(log["video_id"] == vid) & (log["view"] == view)].iloc[0]
        pathways, vmeta, _ = load_views(row["path"], model.spec, view_protocol(model, VIEWS, CROPS))
        assert vmeta["frame_start"][view] == row["frame_start"] and vmeta["frame_end"][view] == row["frame_end"]
        clip = [p[view : view + 1] for p in pathways]
        fc = direct_trace(model, clip)
        assert row["gmacs"] == pytest.approx(fc.gmacs, rel=1e-9), (vid, view)
        assert row["gmacs_fvcore"] == pytest.approx(fc.gmacs_fvcore, rel=1e-9), (vid, view)
        with torch.no_grad():
            _, bins = model.forward_sgs(clip)
        assert int(bins[0][0]) == row[f"bins.{LAYER}"]
        checked += 1
    assert checked == 3


def test_video_top1_is_the_sum_of_view_softmax(csv_run):
    run, summary = csv_run
    log = atfr_analysis.load_run(run)
    vids = load_videos(run)
    assert len(vids) == len(SAMPLES) and (vids["views_ok"] == VIEWS * CROPS).all()
    top1 = []
    for _, v in vids.iterrows():
        s = np.stack(log.loc[log["video_id"] == v["video_id"], "scores"].map(np.asarray).tolist())
        assert s.shape == (VIEWS * CROPS, 4)
        np.testing.assert_allclose(s.sum(1), 1.0, rtol=1e-5)  # softmax rows
        acc = np.zeros(4, np.float32)
        for row in s.astype(np.float32):  # as PySlowFast's TestMeter: view by view, float32
            acc += row
        np.testing.assert_array_equal(np.asarray(v["scores_sum"], np.float32), acc)
        assert int(v["top1_id"]) == int(np.argmax(acc))
        top1.append(int(np.argmax(acc)) == v["label"])
        # a view's top-5 is its scores sorted
        first = log[log["video_id"] == v["video_id"]].iloc[0]
        assert list(first["top5_ids"]) == list(np.argsort(-np.asarray(first["scores"]), kind="stable"))
    assert summary.top1 == pytest.approx(100 * np.mean(top1))
    assert summary.top5 == 100.0  # 4 classes


def test_frozen_clip_keeps_fewer_bins_than_the_same_footage_in_motion(ckpt, clips, tmp_path):
    frozen, moving = clips
    lst = tmp_path / "clips.txt"
    lst.write_text(f"{moving} moving\n{frozen} frozen\n")  # space-separated, class names
    s = atfr_analysis.profile(ckpt, MODEL, lst, tmp_path / "run", views=2, crops=3, device="cpu", quiet=True)
    assert s.videos_ok == 2
    log = atfr_analysis.load_run(tmp_path / "run")
    b = log.groupby("class_name")[f"bins.{LAYER}"].agg(["min", "max", "mean"])
    assert b.loc["frozen", "max"] == 1  # nothing mixes frames before SGS: one distinct feature map
    assert b.loc["moving", "min"] > 1
    g = log.groupby("class_name")["gmacs"].mean()
    assert g["frozen"] < g["moving"]
    assert log.attrs["meta"]["class_names"] == ["frozen", "moving"]


@pytest.mark.slow
def test_folder_layout_cli_with_workers_and_three_crops(ckpt, clips, csv_run, tmp_path, capsys):
    """The folder layout through the CLI (2 decoding workers, 3 crops): 6 rows per video, and the
    centre crop of each temporal view equals the single-crop run of the CSV list."""
    vids = sample_videos()
    root = tmp_path / "videos"
    for name in ("bikes", "carphone_pristine"):
        (root / name).mkdir(parents=True)
        (root / name / f"{name}.mp4").symlink_to(vids[name])
    frozen, moving = clips
    (root / "zz_frozen").mkdir()
    (root / "zz_frozen" / "frozen.mp4").symlink_to(frozen)
    code, out, err = run_cli(
        capsys,
        "profile",
        ckpt,
        "--model",
        MODEL,
        "--data",
        root,
        "--out",
        tmp_path / "run",
        "--views",
        VIEWS,
        "--crops",
        3,
        "--workers",
        2,
        "--batch-size",
        4,
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert "3 ok, 0 failed" in out and "top-1" in out and "reduction" in out
    assert "Traceback" not in err
    log = atfr_analysis.load_run(tmp_path / "run")
    assert log.groupby("video_id").size().tolist() == [VIEWS * 3] * 3
    assert log["class_name"].unique().tolist() == ["bikes", "carphone_pristine", "zz_frozen"]
    assert log.groupby("video_id")["spatial_index"].apply(list).iloc[0] == [0, 1, 2] * VIEWS
    assert (log.loc[log["class_name"] == "zz_frozen", f"bins.{LAYER}"] == 1).all()

    ref = atfr_analysis.load_run(csv_run[0])
    for name in ("bikes", "carphone_pristine"):
        a = log[(log["class_name"] == name) & (log["spatial_index"] == 1)].reset_index(drop=True)
        b = ref[ref["path"] == str(vids[name])].reset_index(drop=True)
        assert len(a) == len(b) == VIEWS
        assert a[f"bins.{LAYER}"].tolist() == b[f"bins.{LAYER}"].tolist()
        assert a["gmacs"].tolist() == b["gmacs"].tolist()
        assert (a["frame_start"] == b["frame_start"]).all()
        np.testing.assert_allclose(np.stack(a["scores"].tolist()), np.stack(b["scores"].tolist()), rtol=1e-4, atol=1e-6)
    meta = log.attrs["meta"]
    assert meta["workers"] == 2 and meta["crops"] == 3 and meta["command"][:2] == ["atfr", "profile"]


def test_padded_batching_logs_executed_cost(ckpt, tmp_path):
    vids = sample_videos()
    lst = tmp_path / "l.csv"
    lst.write_text(f"{vids['carphone_pristine']},0\n")
    atfr_analysis.profile(
        ckpt, MODEL, lst, tmp_path / "run", views=4, crops=1, batching="padded", batch_size=4, device="cpu", quiet=True
    )
    log = atfr_analysis.load_run(tmp_path / "run")
    assert log.attrs["meta"]["batching"] == "padded"
    assert (log["gmacs_executed"] >= log["gmacs"]).all()
    assert log["gmacs_executed"].nunique() == 1  # one batch: every view ran at the batch's largest B'
    assert log["gmacs_executed"].iloc[0] == pytest.approx(log["gmacs"].max())


def test_baseline_model_without_sgs(tmp_path):
    """A static model: no bins columns, every view costs the static count, no reduction claimed."""
    ck = make_checkpoint(tmp_path / "slow_tiny.pyth", name="slow_tiny")
    vids = sample_videos()
    lst = tmp_path / "l.csv"
    lst.write_text(f"{vids['carphone_distorted']},2\n")
    s = atfr_analysis.profile(ck, "slow_tiny", lst, tmp_path / "run", views=1, crops=1, device="cpu", quiet=True)
    log = atfr_analysis.load_run(tmp_path / "run")
    assert not [c for c in log.columns if c.startswith("bins.")]
    assert log["gmacs"].iloc[0] == pytest.approx(log.attrs["meta"]["static_gmacs"])
    assert s.reduction_pct == pytest.approx(0.0, abs=1e-9)
    assert "reduction" not in "\n".join(s.lines())


def test_progress_lines_off_a_terminal():
    """Off a terminal (a log file): plain lines with videos/s, views/s, ETA, B', GMACs, failures."""
    import io

    from rich.console import Console

    from atfr_analysis.profile.progress import ProfileProgress

    buf = io.StringIO()
    con = Console(file=buf, force_terminal=False, width=200)
    with ProfileProgress(3, layers=[LAYER], console=con, log_every_s=0.0, done_before=2) as p:
        for i in range(3):
            st = "failed" if i == 1 else "ok"
            p.update({"status": st}, [{"status": st, "gmacs": 0.5, f"bins.{LAYER}": 4}] * 2)
    text = buf.getvalue()
    assert "2 videos already logged, 3 to go" in text
    last = text.strip().splitlines()[-1]
    for needle in ("3/3 videos", "videos/s", "views/s", "B' 4.00", "0.5 GMACs/view", "failed 1"):
        assert needle in last, (needle, last)
    assert "ETA" in text
    buf2 = io.StringIO()
    with ProfileProgress(2, quiet=True, console=Console(file=buf2)) as p:
        p.update({"status": "ok"}, [])
    assert buf2.getvalue() == ""


def test_bar_on_a_terminal_shows_the_running_numbers():
    import io

    from rich.console import Console

    from atfr_analysis.profile.progress import ProfileProgress

    buf = io.StringIO()
    con = Console(file=buf, force_terminal=True, width=200)
    with ProfileProgress(2, layers=[LAYER], console=con) as p:
        p.update({"status": "ok"}, [{"status": "ok", "gmacs": 0.25, f"bins.{LAYER}": 3}])
        p.update({"status": "failed"}, [{"status": "failed", "gmacs": float("nan"), f"bins.{LAYER}": None}])
    text = buf.getvalue()
    for needle in ("2/2", "videos/s", "views/s", "ETA", "B' 3.00", "0.25 GMACs/view", "failed 1"):
        assert needle in text, needle
