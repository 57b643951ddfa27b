"""Test views against PySlowFast's recorded ones (shared/fixtures/pyslowfast_views).

Every (setting, video) of the fixture: frames, slow frames, resized size and crop box exact, the
checksums of the normalised input within the README's 1e-3 (float and uint8 views), through the
API and through ``atfr views --json``. ``x3d_s_10x1`` records PySlowFast HEAD literally, with a
window bug we do not copy: there the test checks that HEAD differs from us only by that bug.
"""

from __future__ import annotations

import json
from functools import lru_cache

import pytest
import torch
from profile_helpers import run_cli

from atfr_analysis.data.views import sample_views, view_protocol

TOL = 1e-3  # README: checksum mean / std, absolute
FIXTURE = "fixtures/pyslowfast_views"
EXACT_SETTINGS = ("x3d_s_10x3", "slowfast_4x16_r50_10x3", "x3d_s_10x1_2020frames")
VIDEOS = (
    "bikes.mp4",
    "bigbuckbunny.mp4",
    "carphone_pristine.mp4",
    "carphone_short40.mp4",
    "bikes_short30.mp4",
    "bikes_23.976fps.mp4",
)
SMALL = ("carphone_short40.mp4", "bikes_short30.mp4", "carphone_pristine.mp4")
#: the heavy cases (SlowFast at 256 on the larger clips) run with the slow tests
HEAVY = {("slowfast_4x16_r50_10x3", v) for v in VIDEOS if v not in SMALL}


@pytest.fixture(scope="module")
def fixture(shared_dir):
    root = shared_dir / FIXTURE
    if not (root / "views.json").is_file():
        pytest.skip("pyslowfast_views fixture missing")
    return root, _load(str(root / "views.json"))


@lru_cache(maxsize=1)
def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _expected(data: dict, setting: str, video: str) -> list[dict]:
    rows = sorted(
        (v for v in data["views"] if v["setting"] == setting and v["video"] == video), key=lambda v: v["view"]
    )
    assert rows, (setting, video)
    return rows


def _cases(settings, heavy=HEAVY):
    out = []
    for s in settings:
        for v in VIDEOS:
            marks = [pytest.mark.slow] if (s, v) in heavy else []
            out.append(pytest.param(s, v, marks=marks, id=f"{s}-{v}"))
    return out


def _sample(root, data, setting, video, dtype=torch.float32):
    st = data["settings"][setting]
    return _sampled(
        str(root / data["videos"][video]["file"]),
        st["model"],
        st["views"],
        st["crops"],
        st["short_side"],
        st["crop"],
        dtype,
    )


#: x3d_s_10x1 and x3d_s_10x1_2020frames share their protocol: sampled once. Only 1-crop results
#: are kept (10 views of 13x160x160, 4 MB a video): a SlowFast 10x3 video at 256 is 850 MB of
#: views, and an lru_cache of eight of them could hold about 7 GB in the test process.
_ONE_CROP: dict[tuple, object] = {}


def _sampled(path, model, views, crops, short_side, crop, dtype):
    key = (path, model, views, crops, short_side, crop, dtype)
    if key in _ONE_CROP:
        return _ONE_CROP[key]
    r = sample_views(path, model, view_protocol(model, views, crops, short_side, crop), dtype=dtype)
    if crops == 1:
        _ONE_CROP[key] = r
    return r


def _check_view(got: dict, want: dict, checksums: bool = True, window: bool = True) -> None:
    where = (want["setting"], want["video"], want["view"])
    for k in ("view", "temporal_index", "spatial_index", "spatial_idx", "frames", "resized_hw", "crop_box"):
        assert got[k] == want[k], (where, k, got[k], want[k])
    if "slow_frames" in want:
        assert got["slow_positions"] == want["slow_positions"], where
        assert got["slow_frames"] == want["slow_frames"], where
    for k in ("first_frame", "last_frame", "K", "start_pts", "end_pts", "decode_all_video") if window else ():
        assert got["window"][k] == want["window"][k], (where, k)
    assert got["status"] == "ok" and got["error"] is None, where
    if not checksums:
        return
    for key in ("checksum", "slow_checksum"):
        if key in want:
            for m in ("mean", "std"):
                assert abs(got[key][m] - want[key][m]) <= TOL, (where, key, m, got[key][m], want[key][m])


# ----------------------------------------------------------------------------- the API
@pytest.mark.parametrize("setting,video", _cases(EXACT_SETTINGS))
def test_views_match_pyslowfast(fixture, setting, video):
    root, data = fixture
    r = _sample(root, data, setting, video)
    want = _expected(data, setting, video)
    assert len(r.views) == len(want)
    assert r.video.rule == "window" and not r.video.partial
    assert r.video.num_frames == data["videos"][video]["header_frames"]
    for g, w in zip(r.views, want):
        _check_view(g.to_dict(), w)
    # the tensors are the views the infos describe
    fast = r.pathways[-1]
    st = data["settings"][setting]
    assert tuple(fast.shape) == (len(want), 3, st["frames"], st["crop"], st["crop"])
    assert fast.dtype == torch.float32
    v = r.views[-1]
    x = fast[v.row].double()
    assert float(x.mean()) == pytest.approx(v.checksum["mean"], abs=1e-12)
    # only the frames the views need were converted, and nothing past the last one was decoded
    needed = {f for v in r.views for f in v.frames}
    last_needed = max(max(v.frames) for v in r.views)
    assert r.video.decoded <= max(w["window"]["last_frame"] for w in want) + 1
    assert r.video.decoded >= last_needed + 1 and len(needed) <= r.video.decoded


@pytest.mark.parametrize(
    "setting,video",
    _cases(
        ("x3d_s_10x3", "slowfast_4x16_r50_10x3"),
        {(s, v) for s in ("x3d_s_10x3", "slowfast_4x16_r50_10x3") for v in VIDEOS if v not in SMALL[:2]},
    ),
)
def test_uint8_views_match_pyslowfast(fixture, setting, video):
    """uint8 views (rounded after the resize), normalised separately: the same frames and boxes,
    checksums within the README's tolerance."""
    from atfr_analysis.data.transforms import checksum, normalize_views

    root, data = fixture
    r = _sample(root, data, setting, video, torch.uint8)
    assert all(p.dtype == torch.uint8 for p in r.pathways)
    for g, w in zip(r.views, _expected(data, setting, video)):
        _check_view(g.to_dict(), w)
    v = r.views[0]
    x = normalize_views([p[v.row : v.row + 1] for p in r.pathways], device="cpu")  # that view only (memory)
    cs = checksum(x[-1][0])  # the histogram checksum is the checksum of the normalised tensor
    assert cs["mean"] == pytest.approx(v.checksum["mean"], abs=1e-9)
    assert cs["std"] == pytest.approx(v.checksum["std"], abs=1e-9)


def test_head_1crop_setting_spatially(fixture):
    """``x3d_s_10x1`` (HEAD literally, a window bug we do not copy): the same resized size and
    crop box on every view; our frames are the 2020 rule's (``x3d_s_10x1_2020frames``); where HEAD's
    frames happen to be those, the whole view agrees."""
    root, data = fixture
    differ = agree = 0
    for video in VIDEOS:
        r = _sample(root, data, "x3d_s_10x1", video)
        ref = _expected(data, "x3d_s_10x1_2020frames", video)
        for g, w, w2020 in zip(r.views, _expected(data, "x3d_s_10x1", video), ref):
            assert g.resized_hw == w["resized_hw"] and g.crop_box == w["crop_box"], (video, g.view)
            assert g.frames == w2020["frames"], (video, g.view)
            if g.frames == w["frames"]:  # (HEAD's window is another: its shorter one)
                _check_view(g.to_dict(), w, window=False)
                agree += 1
            else:
                differ += 1
    assert differ > 0 and agree > 0  # both kinds occur in the public set


def test_one_crop_protocol_defaults():
    """PySlowFast's 1-crop rule: short side TRAIN_JITTER_SCALES[0], the 1-crop TEST_CROP_SIZE."""
    p = view_protocol("x3d_s", crops=1)
    assert (p.views, p.crops, p.short_side, p.crop) == (10, 1, 182, 160)
    assert (view_protocol("x3d_s").short_side, view_protocol("x3d_s").crop) == (182, 182)
    assert (view_protocol("x3d_m", crops=1).short_side, view_protocol("x3d_m", crops=1).crop) == (256, 224)
    assert (view_protocol("x3d_l_atfr", crops=1).short_side, view_protocol("x3d_l_atfr", crops=1).crop) == (356, 312)
    p = view_protocol("slowfast_4x16_r50", crops=1)
    assert (p.short_side, p.crop) == (256, 256)
    assert view_protocol("x3d_s", crops=1, crop=120).short_side == 182
    assert view_protocol("x3d_s", crop=150).short_side == 150  # 3 crops: scaled to the crop
    from atfr_analysis.errors import InputError
    from atfr_analysis.models.base import InputSpec

    spec = InputSpec(frames=(13,), train_crop=160, test_crop=182, sampling_rate=6)
    with pytest.raises(InputError, match="model family"):
        view_protocol(spec, crops=1)
    assert view_protocol(spec, crops=1, short_side=182, crop=160).crop == 160
    for kw in ({"crops": 2}, {"views": 0}, {"crop": 200, "short_side": 182}, {"crop": -1}):
        with pytest.raises(InputError):
            view_protocol("x3d_s", **kw)


def test_the_one_crop_rule_lives_on_the_input_spec():
    """``InputSpec.one_crop`` per family (the data layer knows no family); ``ViewProtocol`` is
    checked when built; ``at_crop`` scales every view's short side to its crop."""
    from atfr_analysis.data.views import ViewProtocol, model_spec
    from atfr_analysis.errors import InputError

    assert model_spec("x3d_s").one_crop == (182, 160) and model_spec("x3d_m").one_crop == (256, 224)
    assert model_spec("slowfast_4x16_r50").one_crop == (256, 256)
    spec = model_spec("x3d_s")
    assert ViewProtocol.of(spec, crops=1) == ViewProtocol(10, 1, 182, 160)
    assert ViewProtocol.at_crop(spec, views=2, crops=1) == ViewProtocol(2, 1, 182, 182)
    assert ViewProtocol.at_crop(spec, crops=1, crop=112) == ViewProtocol(10, 1, 112, 112)
    assert ViewProtocol(4, 3, 64, 64).num_views == 12
    for bad in ((0, 3, 64, 64), (1, 2, 64, 64), (1, 3, 0, 64), (1, 1, 60, 64)):
        with pytest.raises(InputError):
            ViewProtocol(*bad)


# ----------------------------------------------------------------------------- the CLI


def _cli_cases():
    out = []
    for s in EXACT_SETTINGS:
        for v in VIDEOS:
            # the API sweep above covers every case; the CLI's own run of the larger ones is slow
            slow = s != "x3d_s_10x1_2020frames" or v not in SMALL[:2]
            out.append(pytest.param(s, v, marks=[pytest.mark.slow] if slow else [], id=f"{s}-{v}"))
    return out


@pytest.mark.parametrize("setting,video", _cli_cases())
def test_atfr_views_json_reproduces_fixture(fixture, capsys, setting, video):
    root, data = fixture
    st = data["settings"][setting]
    args = [
        "views",
        str(root / data["videos"][video]["file"]),
        "--model",
        st["model"],
        "--views",
        str(st["views"]),
        "--crops",
        str(st["crops"]),
        "--json",
    ]
    if setting == "x3d_s_10x1_2020frames":  # the defaults of 1 crop are the fixture's short side and crop
        assert (st["short_side"], st["crop"]) == (182, 160)
    else:
        args += ["--short-side", str(st["short_side"]), "--crop", str(st["crop"])]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["rule"] == "window" and doc["partial"] is False
    want = _expected(data, setting, video)
    assert len(doc["views"]) == len(want)
    for g, w in zip(doc["views"], want):
        _check_view(g, w)


def test_atfr_views_table_and_errors(fixture, capsys, tmp_path):
    root, data = fixture
    video = root / data["videos"]["carphone_short40.mp4"]["file"]
    code, out, err = run_cli(capsys, "views", str(video), "--model", "x3d_s", "--crops", "1")
    assert code == 0, err
    assert "short side 182, crop 160" in out
    want = _expected(data, "x3d_s_10x1_2020frames", "carphone_short40.mp4")[0]
    assert ",".join(map(str, want["crop_box"])) in out and "x".join(map(str, want["resized_hw"])) in out
    for args, needle in (
        (["views", str(tmp_path / "nope.mp4"), "--model", "x3d_s"], "no such file"),
        (["views", str(video), "--model", "nope"], "unknown model"),
        (["views", str(video), "--model", "x3d_s", "--crops", "2"], "crops must be 1 or 3"),
        (["views", str(video), "--model", "x3d_s", "--views", "0"], "--views must be a positive integer"),
        (
            ["views", str(video), "--model", "x3d_s", "--short-side", "100", "--crop", "150"],
            "larger than the short side",
        ),
    ):
        code, out, err = run_cli(capsys, *args)
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (args, err)
