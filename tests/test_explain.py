"""`atfr explain`: a frozen clip collapses into one bin, repeated frames share a bin, bad input is
one line with exit status 2, the figure is byte-reproducible."""

import json
from fractions import Fraction

import numpy as np
import pytest
import torch

from atfr_analysis.analysis.explain import ExplainConfig, explain_video, run_explain
from atfr_analysis.analysis.explain_plot import plot_explain
from atfr_analysis.demo import DEMO, checkpoint_path
from atfr_cli.main import main

MODEL = DEMO["atfr"]
CKPT = checkpoint_path(MODEL)
FRAMES = DEMO["frames"]  # 16: the demo model's clip at sampling rate 1


def run_cli(capsys, *args):
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _images(n, seed, size=(72, 96)):
    """``n`` distinct smooth RGB images (low-frequency noise, upsampled)."""
    g = np.random.default_rng(seed)
    h, w = size
    out = []
    for _ in range(n):
        small = g.integers(0, 256, size=(h // 8, w // 8, 3)).astype(np.uint8)
        out.append(np.ascontiguousarray(small.repeat(8, 0).repeat(8, 1)))
    return out


def _encode(path, frames, fps=30):
    """Lossless H.264 (qp 0): identical frames decode identically."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w", format="mp4") as c:
        st = c.add_stream("libx264", rate=Fraction(fps), options={"qp": "0", "preset": "veryfast", "threads": "1"})
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            for p in st.encode(vf):
                c.mux(p)
        for p in st.encode(None):
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("explain_videos")
    still = _images(1, 0)[0]
    distinct = _images(FRAMES // 4, 1)
    return {
        "frozen": _encode(d / "frozen.mp4", [still] * FRAMES),
        "slow_4x": _encode(d / "slow_4x.mp4", [distinct[i // 4] for i in range(FRAMES)]),
    }


def test_frozen_clip_is_one_bin_through_the_cli(capsys, tmp_path, videos):
    out = tmp_path / "frozen"
    code, stdout, err = run_cli(
        capsys, "explain", videos["frozen"], "--checkpoint", CKPT, "--model", MODEL, "--out", out
    )
    assert code == 0, err
    assert "B' = 1 of" in stdout
    res = json.loads(out.with_suffix(".json").read_text())
    assert (tmp_path / "frozen.png").stat().st_size > 0
    assert res["model"] == MODEL and len(res["layers"]) == 1
    assert res["num_views"] == DEMO["crops"] * 1 == len(res["views"])
    for v in res["views"]:
        assert v["frame_indices"] == list(range(FRAMES))
        (lay,) = v["layers"]
        assert lay["active_bins"] == 1 and v["signature"] == [1]
        bins = {s["bin"] for s in lay["steps"]}
        assert len(bins) == 1 and None not in bins
        assert [b["bin"] for b in lay["bins"]] == list(bins)
        assert lay["bins"][0]["span"] == [0, FRAMES - 1]
        # every frame at the largest distance: on the last bin's upper edge, weight ~1e-7
        assert bins == {lay["num_bins"] - 1}
        assert all(0 < s["weight"] < 1e-6 for s in lay["steps"])
    # fewer bins, fewer GMACs than at all bins
    assert 0 < res["views"][0]["gmacs"] < res["gmacs_all_bins"]


def test_slow_motion_groups_share_a_bin(videos):
    res, clips = explain_video(ExplainConfig(CKPT, MODEL, videos["slow_4x"]))
    info = res["layers"][0]
    assert info["temporal_stride"] == 1 and info["feature_frames"] == FRAMES
    for v in res["views"]:
        (lay,) = v["layers"]
        groups = {}
        for s in lay["steps"]:
            (f,) = s["source_frames"]
            groups.setdefault(f // 4, set()).add(s["bin"])
        assert sorted(groups) == list(range(FRAMES // 4))
        assert all(len(b) == 1 and None not in b for b in groups.values()), groups
        assert lay["active_bins"] <= FRAMES // 4
        assert lay["distinct_bins_of_steps"] == lay["active_bins"]
    # not trivially one bin: the four distinct images do not all merge
    assert max(v["signature"][0] for v in res["views"]) >= 2
    # the bins the model's own forward finds for each view
    from atfr_analysis.loading import load_model_from_checkpoint

    model, _, _ = load_model_from_checkpoint(CKPT, MODEL)
    model.eval()
    with torch.no_grad():
        for v in res["views"]:
            _outs, bins = model.forward_sgs([p[v["view"] : v["view"] + 1] for p in clips.pathways])
            assert [int(b[0]) for b in bins] == v["signature"]


def test_figure_is_byte_reproducible(tmp_path, videos):
    res, j, p = run_explain(ExplainConfig(CKPT, MODEL, videos["slow_4x"], view=1), tmp_path / "a")
    assert res["detail_view"] == 1
    again = plot_explain(json.loads(j.read_text()), tmp_path / "b.png", thumbnails=None)
    plot_explain(json.loads(j.read_text()), tmp_path / "c.png", thumbnails=None)
    assert again.read_bytes() == (tmp_path / "c.png").read_bytes()
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["VIDEO", "--checkpoint", CKPT, "--model", "no_such_model"], "unknown model"),
        (["/nonexistent/video.mp4", "--checkpoint", CKPT, "--model", MODEL], "video not found"),
        (["VIDEO", "--checkpoint", "/nonexistent/x.pyth", "--model", MODEL], "checkpoint not found"),
        (["VIDEO", "--checkpoint", CKPT, "--model", MODEL, "--view", "3"], "view 3 is out of range"),
        (["VIDEO", "--checkpoint", CKPT, "--model", MODEL, "--view", "-1"], "view must be >= 0"),
        (["VIDEO", "--checkpoint", checkpoint_path(DEMO["baseline"]), "--model", DEMO["baseline"]], "no SGS layer"),
        (["VIDEO", "--checkpoint", CKPT, "--model", MODEL, "--crops", "2"], "crops must be 1 or 3"),
        (["VIDEO", "--checkpoint", CKPT, "--model", MODEL, "--views", "0"], "views must be a positive integer"),
        (["VIDEO"], "needs a VIDEO, --checkpoint and --model"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, videos, args, needle):
    args = [videos["frozen"] if a == "VIDEO" else a for a in args]
    code, out, err = run_cli(capsys, "explain", *args, "--out", tmp_path / "x")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert not (tmp_path / "x.json").exists()


def test_a_cut_between_still_stretches(tmp_path):
    """Two still stretches: each collapses into one bin. With unequal lengths (6 + 10 frames) the
    cut opens a new bin; with equal ones (8 + 8) both stretches are equally far from the clip's
    mean embedding (``l2_to_mean``), so SGS merges them into ONE bin -- official semantics."""
    a, b = _images(2, 7)
    for n_a, expected in ((6, 2), (8, 1)):
        v = _encode(tmp_path / f"cut_{n_a}.mp4", [a] * n_a + [b] * (FRAMES - n_a))
        res, _ = explain_video(ExplainConfig(CKPT, MODEL, v, views=1, crops=1))
        (lay,) = res["views"][0]["layers"]
        bins = [s["bin"] for s in lay["steps"]]
        assert len(set(bins[:n_a])) == 1 and len(set(bins[n_a:])) == 1, bins
        assert lay["active_bins"] == expected, bins
        if expected == 2:
            assert bins[n_a - 1] != bins[n_a]
            spans = sorted(x["span"] for x in lay["bins"])
            assert spans == [[0, n_a - 1], [n_a, FRAMES - 1]]


@pytest.mark.slow
def test_demo_command_writes_the_three_explains(capsys, tmp_path):
    from pathlib import Path

    code, out, err = run_cli(capsys, "explain", "--demo", "--out", tmp_path)
    assert code == 0, err
    committed = Path(__file__).resolve().parents[1] / "reports" / "demo"
    for c in ("still", "slow_4x", "normal"):
        res = json.loads((tmp_path / f"explain_{c}.json").read_text())
        # reports/demo holds what the command writes (bins and signatures; floats may differ by CPU)
        old = json.loads((committed / f"explain_{c}.json").read_text())
        assert [v["signature"] for v in res["views"]] == [v["signature"] for v in old["views"]]
        assert [[s["bin"] for s in v["layers"][0]["steps"]] for v in res["views"]] == [
            [s["bin"] for s in v["layers"][0]["steps"]] for v in old["views"]
        ]
        assert (tmp_path / f"explain_{c}.png").is_file()
        assert res["video"]["path"].endswith(f"test/{c}/{c}_000.mp4")
        if c == "still":
            assert all(v["signature"] == [1] for v in res["views"])
        if c == "slow_4x":
            for v in res["views"]:
                steps = v["layers"][0]["steps"]
                assert all(len({s["bin"] for s in steps[i : i + 4]}) == 1 for i in range(0, FRAMES, 4))


@pytest.mark.slow
def test_slowfast_both_pathways_and_their_frames(tmp_path):
    """SlowFast: one SGS layer per pathway; the slow layer's steps are the fast clip's frames at
    linspace(0, T-1, T/alpha); a still stretch of the fast clip shares one bin away from the
    frames the stem's temporal kernel mixes with the moving part or the clip's end."""
    from atfr_analysis.analysis.explain import ViewClips, explain_model, thumbnails_of
    from atfr_analysis.data.transforms import pack_pathways
    from atfr_analysis.models import build_model

    torch.manual_seed(0)
    model = build_model("slowfast_4x16_r50_atfr", num_classes=5)
    spec = model.spec
    t = spec.clip_frames
    fast = torch.rand(1, 3, t, 64, 64)
    fast[:, :, t // 2 :] = fast[:, :, t // 2 : t // 2 + 1]  # the second half still
    src = list(range(100, 100 + 2 * t, 2))
    clips = ViewClips(
        pack_pathways(fast, spec),
        [src],
        {"temporal_index": [0], "spatial_index": [0], "crop_position": [1]},
        {"num_frames": 300, "fps": 30.0},
    )
    res = explain_model(model, clips)
    slow, fastl = res["layers"]
    assert (slow["pathway"], fastl["pathway"]) == (0, 1)
    assert (slow["feature_frames"], fastl["feature_frames"]) == (t // spec.alpha, t)
    pos = torch.linspace(0, t - 1, t // spec.alpha).long().tolist()
    v = res["views"][0]
    ls, lf = v["layers"]
    assert [s["clip_positions"] for s in ls["steps"]] == [[q] for q in pos]
    assert [s["source_frames"] for s in ls["steps"]] == [[src[q]] for q in pos]
    assert [s["source_frames"] for s in lf["steps"]] == [[f] for f in src]
    lo, hi = fastl["temporal_reach"]
    assert lo < 0 < hi  # the fast stem's temporal kernel mixes neighbouring frames
    inner = [s["bin"] for s in lf["steps"][t // 2 + hi : t - hi]]
    assert len(inner) > 1 and len(set(inner)) == 1
    assert v["signature"] == [ls["active_bins"], lf["active_bins"]]
    png = plot_explain(res, tmp_path / "sf.png", thumbnails=thumbnails_of(clips, 0))
    assert png.stat().st_size > 0
