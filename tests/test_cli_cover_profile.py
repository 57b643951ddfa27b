"""The options of ``atfr profile``, ``views``, ``explain``, ``report`` and ``export`` that no other
test passes, each with its effect (tests/test_cli_options.py lists them). One small profile run
(the shipped ``slow_tiny_atfr`` on 8 synthetic clips of its 4 classes, 2 views) feeds the report and
export tests."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from profile_helpers import assert_same_log, run_cli

from atfr_analysis import load_run

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / "atfr_analysis" / "checkpoints" / "slow_tiny_atfr.pyth"
MODEL = "slow_tiny_atfr"
pytestmark = pytest.mark.slow  # the profile run the module shares: ~15 s on 2 busy cores


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """The shipped model's 4 classes, 2 test clips each (16 frames, 64 px); a list of them in another
    folder, with a text file posing as a video and a row whose file does not exist."""
    from atfr_analysis.data.synthetic import SyntheticConfig, make_dataset

    root = tmp_path_factory.mktemp("cover_profile")
    data = root / "data"
    classes = ("still", "slow_4x", "slow_2x", "normal")
    make_dataset(
        data,
        SyntheticConfig(seed=3, frames=16, size=64, classes=classes, clips_per_class_train=0, clips_per_class_test=2),
    )
    (data / "test" / "broken.mp4").write_text("not a video\n" * 10)
    lists = root / "lists"
    lists.mkdir()
    rows = (data / "test.csv").read_text() + "test/broken.mp4 0\ntest/nowhere/missing.mp4 1\n"
    (lists / "val.csv").write_text(rows)
    (lists / "labels.json").write_text((data / "labels.json").read_text())
    return root


def _profile(capsys, clips: Path, out: Path, *extra) -> tuple[int, str, str]:
    return run_cli(
        capsys,
        "profile",
        CKPT,
        "--model",
        MODEL,
        "--data",
        clips / "lists" / "val.csv",
        "--data-root",
        clips / "data",
        "--labels",
        clips / "lists" / "labels.json",
        "--out",
        out,
        "--views",
        "2",
        "--crops",
        "1",
        "--device",
        "cpu",
        "--quiet",
        *extra,
    )


@pytest.fixture(scope="module")
def run(clips, tmp_path_factory) -> Path:
    """``--skip-missing --cross-check 2 --no-cuda-graphs --no-cudnn-benchmark --precision fp32
    --max-failed-fraction 0.5``: 9 videos logged (the broken one failed), the missing row skipped."""
    out = tmp_path_factory.mktemp("cover_run") / "run"
    code, _, err = _profile(
        _NoCapture(),
        clips,
        out,
        "--skip-missing",
        "--cross-check",
        "2",
        "--no-cuda-graphs",
        "--no-cudnn-benchmark",
        "--precision",
        "fp32",
        "--max-failed-fraction",
        "0.5",
    )
    assert code == 0, err
    return out


class _NoCapture:
    """``run_cli`` outside a test function (a module fixture): nothing to read back."""

    def readouterr(self):
        class _Out:
            out = err = ""

        return _Out()


def test_profile_skip_missing_cross_check_and_the_cuda_settings_on_the_cpu(run, clips, capsys):
    meta = json.loads((run / "run.json").read_text())
    assert meta["list_skipped"] == [[10, "test/nowhere/missing.mp4"]]  # --skip-missing: recorded, skipped
    assert meta["num_videos"] == 9 and meta["summary"]["exit_code"] == 0
    assert meta["data_root"] == str(clips / "data") and meta["precision"] == "fp32"
    (costs,) = meta["costs"].values()
    cc = costs["cross_check"]  # --cross-check 2: fvcore recounted the first two signatures met
    assert cc["reference"] == "fvcore" and cc["checked"] == 2 and cc["equal"] is True and len(cc["rows"]) == 2
    assert meta["cuda_graphs"] is None and meta["cudnn_benchmark"] is None  # CUDA settings: not used on a CPU
    # without --skip-missing the list is refused before any video is opened
    code, _, err = _profile(capsys, clips, run.parent / "refused")
    assert code == 2 and "do not exist" in err and not (run.parent / "refused").exists()


def test_profile_cuda_graphs_and_cudnn_benchmark_change_nothing_on_the_cpu(run, clips, tmp_path, capsys):
    code, _, err = _profile(
        capsys,
        clips,
        tmp_path / "on",
        "--skip-missing",
        "--max-failed-fraction",
        "0.5",
        "--cuda-graphs",
        "--cudnn-benchmark",
    )
    assert code == 0, err
    assert_same_log(load_run(tmp_path / "on"), load_run(run))


def test_profile_precision_and_device_cuda_are_refused_on_a_cpu(clips, tmp_path, capsys):
    import torch

    code, _, err = _profile(capsys, clips, tmp_path / "bf16", "--skip-missing", "--precision", "bf16")
    assert code == 2 and "CUDA only" in err and len(err.strip().splitlines()) == 1
    if not torch.cuda.is_available():
        code, _, err = run_cli(
            capsys, "profile", CKPT, "--model", MODEL, "--data", clips / "lists" / "val.csv", "--out", tmp_path / "c",
            "--device", "cuda", "--skip-missing",
        )  # fmt: skip
        assert code == 2 and "cuda" in err.lower() and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- export
def test_export_ensemble_sum_and_max(run, tmp_path, capsys):
    """PySlowFast's video_preds: the softmax summed over the 2 views (rows sum to 2) or their
    element-wise maximum (rows sum to between 1 and 2, never above a sum's entries)."""
    preds = {}
    for ens in ("sum", "max"):
        f = tmp_path / f"{ens}.pkl"
        code, _, err = run_cli(
            capsys, "export", run, "--format", "pyslowfast", "--out", f, "--ensemble", ens, "--failed", "drop"
        )
        assert code == 0, err
        with open(f, "rb") as fh:
            preds[ens] = pickle.load(fh)[0].numpy()
    assert np.allclose(preds["sum"].sum(1), 2.0, atol=1e-5)
    assert (preds["max"].sum(1) > 1 - 1e-5).all() and (preds["max"].sum(1) < 2).all()
    assert (preds["max"] <= preds["sum"] + 1e-6).all() and (preds["max"] >= preds["sum"] / 2 - 1e-6).all()


def test_export_failed_error_zeros_drop(run, tmp_path, capsys):
    """The broken video: refused by default (--failed error), a zero row (zeros), left out (drop)."""
    code, _, err = run_cli(capsys, "export", run, "--format", "mmaction2", "--out", tmp_path / "e.pkl")
    assert code == 2 and "--failed" in err and not (tmp_path / "e.pkl").exists()
    rows = {}
    for policy in ("error", "zeros", "drop"):
        f = tmp_path / f"{policy}.pkl"
        code, _, err = run_cli(capsys, "export", run, "--format", "mmaction2", "--out", f, "--failed", policy)
        if policy == "error":
            assert code == 2 and not f.exists()
            continue
        assert code == 0, err
        with open(f, "rb") as fh:
            rows[policy] = pickle.load(fh)
    assert len(rows["zeros"]) == 9 and len(rows["drop"]) == 8
    zero = [r for r in rows["zeros"] if float(np.abs(np.asarray(r["pred_score"])).sum()) == 0]
    assert len(zero) == 1 and all(float(np.asarray(r["pred_score"]).sum()) > 0.99 for r in rows["drop"])


# ----------------------------------------------------------------------------- report
def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def _report(capsys, run, out, *extra) -> str:
    code, _, err = run_cli(capsys, "report", run, "--out", out, *extra)
    assert code == 0, err
    return (out / "report.md").read_text()


def test_report_confusion_top_and_classes(run, tmp_path, capsys):
    """The confusion figure shows every class (4 <= 20), the --confusion-top 2 most confused, or the
    --confusion-classes named: fewer classes, a smaller figure; an unknown name is refused."""
    _report(capsys, run, tmp_path / "all", "--boot", "50")
    _report(capsys, run, tmp_path / "top", "--confusion-top", "2")
    _report(capsys, run, tmp_path / "named", "--confusion-classes", "still,normal")
    full, top, named = (_png_size(tmp_path / d / "confusion.png") for d in ("all", "top", "named"))
    assert top[1] < full[1] and named[1] < full[1] and top[1] == named[1]
    code, _, err = run_cli(capsys, "report", run, "--out", tmp_path / "x", "--confusion-classes", "still,zebra")
    assert code == 2 and "zebra" in err


def test_report_min_videos_and_seed(run, tmp_path, capsys):
    """Every class has 2 ok videos (still 2 of 3: the broken video is labelled still): --min-videos 3
    ranks none of them; the bootstrap CIs follow --seed (the same seed: the same intervals; 10
    resamples, so that two seeds' intervals differ although each class has 2 videos)."""
    import pandas as pd

    md = _report(capsys, run, tmp_path / "m3", "--min-videos", "3")
    assert "Not ranked (fewer than 3 ok videos" in md
    assert len(pd.read_csv(tmp_path / "m3" / "unranked_classes.csv")) == 4
    cis = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "7")):
        _report(capsys, run, tmp_path / name, "--seed", seed, "--boot", "10")
        r = pd.read_csv(tmp_path / name / "ranking.csv")
        cis[name] = r[[c for c in r.columns if "ci" in c.lower()]]
    assert cis["a"].shape[1] >= 2
    pd.testing.assert_frame_equal(cis["a"], cis["b"])
    assert not cis["a"].equals(cis["c"])


def test_report_with_few_bootstrap_resamples(run, tmp_path, capsys):
    """--boot accepts any count >= 1; with 2 resamples an interval may miss the estimate itself
    (the ranking plot drew its error bars as value - ci_low: negative, a matplotlib ValueError)."""
    code, _, err = run_cli(capsys, "report", run, "--out", tmp_path / "r", "--boot", "2", "--seed", "0")
    assert code == 0, err


# ----------------------------------------------------------------------------- views, explain
def _rotated_clip(path: Path, rotation: int) -> Path:
    """A 64x48 clip (10 frames) whose display matrix says: turn by ``rotation`` degrees."""
    import av

    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        st.set_display_rotation(rotation)
        for i in range(10):
            a = np.zeros((48, 64, 3), np.uint8)
            a[:12, : 20 + i] = 255
            for p in st.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    return path


def _views_json(capsys, *args) -> dict:
    code, out, err = run_cli(capsys, "views", *args)
    assert code == 0, err
    return json.loads(out)


def test_views_apply_rotation_and_checksums(tmp_path, capsys):
    """--apply-rotation turns the frames (another checksum, the frame size after the turn);
    --checksums (the default) gives each view's mean and std, --no-checksums none."""
    clip = _rotated_clip(tmp_path / "rot90.mp4", 90)
    base = ("--model", MODEL, "--views", "1", "--crops", "1", "--short-side", "48", "--crop", "48", "--json")
    plain = _views_json(capsys, clip, *base, "--checksums")
    turned = _views_json(capsys, clip, *base, "--checksums", "--apply-rotation")
    bare = _views_json(capsys, clip, *base, "--no-checksums")
    assert plain["rotation"] == turned["rotation"] == 90 and not plain["rotated"] and turned["rotated"]
    (p,), (t,), (b,) = plain["views"], turned["views"], bare["views"]
    assert p["resized_hw"] == [48, 64] and t["resized_hw"] == [64, 48]
    assert set(p["checksum"]) >= {"mean", "std"} and p["checksum"] != t["checksum"]
    assert b["checksum"] is None and b["frames"] == p["frames"]


def test_explain_view(clips, tmp_path, capsys):
    """--view V draws view V in detail (the JSON holds every view either way)."""
    video = clips / "data" / "test" / "slow_4x" / "slow_4x_000.mp4"
    res = {}
    for v in ("0", "1"):
        stem = tmp_path / f"v{v}"
        code, out, err = run_cli(
            capsys, "explain", video, "--checkpoint", CKPT, "--model", MODEL, "--views", "2", "--crops", "1",
            "--view", v, "--out", stem,
        )  # fmt: skip
        assert code == 0, err
        res[v] = json.loads(stem.with_suffix(".json").read_text())
        assert res[v]["detail_view"] == int(v) and f"view {v} s2.ts_layer" in out
    assert res["0"]["views"] == res["1"]["views"] and res["0"]["num_views"] == 2
    code, _, err = run_cli(
        capsys, "explain", video, "--checkpoint", CKPT, "--model", MODEL, "--views", "2", "--crops", "1", "--view", "5",
        "--out", tmp_path / "bad",
    )  # fmt: skip
    assert code == 2 and "view 5 is out of range" in err
