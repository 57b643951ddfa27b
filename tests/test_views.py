"""sample_views beyond the fixture: the full-decode fallback, float views bit-identical to the
frame pipeline, uint8 views, partial (truncated) videos, rotation, the profiler's metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from profile_helpers import remux
from view_pipeline import make_views, prepare_frames

from atfr_analysis.data import VideoDecodeError
from atfr_analysis.data.samples import sample_videos
from atfr_analysis.data.transforms import crop_positions, normalize_views, view_indices
from atfr_analysis.data.video import VideoReader, decode_video
from atfr_analysis.data.views import Decoding, ViewProtocol, sample_views, view_protocol
from atfr_analysis.models.base import InputSpec
from atfr_cli.main import main

X3D_S = InputSpec(frames=(13,), train_crop=160, test_crop=182, sampling_rate=6)


@pytest.fixture(scope="module")
def videos():
    return sample_videos()


def _old_pipeline(frames_u8: torch.Tensor, frame_ids: list[int], short_side: int, crop: int, spatial_idx: int):
    """Today's frame pipeline (``prepare_frames``: resize in float, normalise) and PySlowFast's crop."""
    from atfr_analysis.data.transforms import crop_offset

    x = prepare_frames(frames_u8[frame_ids], short_side)  # [T, 3, H', W']
    y0, x0 = crop_offset(x.shape[-2], x.shape[-1], crop, spatial_idx)
    return x[:, :, y0 : y0 + crop, x0 : x0 + crop].permute(1, 0, 2, 3)


# ----------------------------------------------------------------------------- rules
def test_no_duration_falls_back_to_the_full_decode(tmp_path, videos):
    mkv = remux(videos["bikes"], tmp_path / "bikes.mkv", fmt="matroska")
    with VideoReader(mkv) as r:
        assert r.duration is None and r.header_frames == 0  # PyAV reports no duration
    got = sample_views(mkv, X3D_S, ViewProtocol.of(X3D_S, 10, 3))
    assert got.video.rule == "full" and got.video.num_frames == 250 and not got.video.partial
    full = view_indices(250, 25.0, X3D_S, 10)
    for v in got.views:
        assert v.frames == full[v.temporal_index].indices.tolist()
        assert v.window["decode_all_video"] is True
    # ... which is what the frame pipeline gives on the whole decoded video, bit for bit
    frames, fps = decode_video(videos["bikes"])
    (old,), meta = make_views(frames, fps, X3D_S, views=10, crops=3)
    assert meta["frame_indices"] == [v.frames for v in got.views]
    assert torch.equal(got.pathways[0], old)
    # the mp4 (a duration) takes other frames in some clips: the pts windows
    mp4 = sample_views(videos["bikes"], X3D_S, ViewProtocol.of(X3D_S, 10, 3), checksums=False)
    assert mp4.video.rule == "window"
    assert sum(a.frames != b.frames for a, b in zip(mp4.views, got.views)) >= 3


def test_float_views_are_the_frame_pipeline_bit_for_bit(videos):
    """Window rule, 1-crop protocol (182 -> centre 160): each view equals today's normalised input
    (resize in float, normalise, crop) of the same frames."""
    got = sample_views(videos["carphone_pristine"], "x3d_s", view_protocol("x3d_s", crops=1))
    assert (got.video.protocol.short_side, got.video.protocol.crop) == (182, 160)
    frames, _ = decode_video(videos["carphone_pristine"])
    for v in got.views[::3]:
        ref = _old_pipeline(frames, v.frames, 182, 160, v.spatial_idx)
        assert torch.equal(got.pathways[0][v.row], ref), v.view
        assert v.resized_hw == [182, 222] and v.crop_box == [11, 31, 171, 191]


def test_uint8_views(videos):
    spec = InputSpec(frames=(8,), train_crop=128, test_crop=144, sampling_rate=4)
    path = videos["carphone_pristine"]  # 176x144: the short side is already 144, nothing is resized
    f32 = sample_views(path, spec, ViewProtocol.of(spec, 3, 3))
    u8 = sample_views(path, spec, ViewProtocol.of(spec, 3, 3), dtype=torch.uint8)
    assert u8.pathways[0].dtype == torch.uint8
    assert u8.pathways[0].element_size() * 4 == f32.pathways[0].element_size()
    assert torch.equal(normalize_views(u8.pathways, device="cpu")[0], f32.pathways[0])  # exact
    for a, b in zip(u8.views, f32.views):  # histogram moments = the float tensor's
        assert a.checksum["mean"] == pytest.approx(b.checksum["mean"], abs=1e-12)
        assert a.checksum["std"] == pytest.approx(b.checksum["std"], abs=1e-12)
    # resized: rounded to uint8 after the float resize, at most half a grey level off
    f32 = sample_views(path, spec, ViewProtocol(2, 1, 160, 128))
    u8 = sample_views(path, spec, ViewProtocol(2, 1, 160, 128), dtype=torch.uint8)
    d = (normalize_views(u8.pathways[0]) - f32.pathways[0]).abs().max()
    assert 0 < float(d) <= 0.5 / 255 / 0.225 + 1e-6
    for a, b in zip(u8.views, f32.views):
        assert a.frames == b.frames and a.crop_box == b.crop_box
        assert a.checksum["mean"] == pytest.approx(b.checksum["mean"], abs=1e-3)


def test_slowfast_pathways_and_profiler_meta(videos):
    spec = InputSpec(frames=(2, 8), train_crop=96, test_crop=112, sampling_rate=2, alpha=4)
    got = sample_views(videos["carphone_distorted"], spec, ViewProtocol.of(spec, 2, 3))
    slow, fast = got.pathways
    assert tuple(fast.shape) == (6, 3, 8, 112, 112) and tuple(slow.shape) == (6, 3, 2, 112, 112)
    assert torch.equal(slow, fast[:, :, [0, 7]])
    v = got.views[4]
    assert v.slow_positions == [0, 7] and v.slow_frames == [v.frames[0], v.frames[7]]
    assert v.slow_checksum is not None and v.slow_checksum != v.checksum
    meta = got.meta()
    assert meta["view"] == list(range(6)) and meta["crop_position"] == crop_positions(3) * 2
    assert meta["frame_indices"][4] == v.frames and meta["crop_box"][4] == v.crop_box
    assert set(meta) >= {
        "temporal_index",
        "spatial_index",
        "frame_start",
        "frame_end",
        "clip_start",
        "clip_end",
        "resized_hw",
    }
    json.dumps([x.to_dict() for x in got.views])  # JSON-able
    json.dumps(got.video.to_dict())


# ----------------------------------------------------------------------------- partial videos
def _truncated(src: Path, tmp_path: Path, packets: int) -> Path:
    """A copy of ``src`` with its index first, cut after ``packets`` packets (in file order)."""
    import av

    fs = remux(src, tmp_path / "faststart.mp4", fmt="mp4", faststart=True)
    with av.open(str(fs)) as c:
        pos = sorted(p.pos for p in c.demux(c.streams.video[0]) if p.pos is not None and p.size)
    cut = tmp_path / f"cut{packets}.mp4"
    cut.write_bytes(fs.read_bytes()[: pos[packets]])
    return cut


def test_partial_video_keeps_the_views_that_decode(tmp_path, videos):
    cut = _truncated(videos["bikes"], tmp_path, 140)
    with VideoReader(cut) as r:
        assert r.header_frames == 250 and not r.index_complete()  # the header survived
    got = sample_views(cut, X3D_S, ViewProtocol.of(X3D_S, 10, 3))
    whole = sample_views(videos["bikes"], X3D_S, ViewProtocol.of(X3D_S, 10, 3))
    ok = [v for v in got.views if v.ok]
    failed = [v for v in got.views if not v.ok]
    assert got.video.partial and got.video.failed_views == len(failed)
    assert 0 < len(ok) < 30 and len(failed) > 0
    assert got.pathways[0].shape[0] == len(ok) and [v.row for v in ok] == list(range(len(ok)))
    for v in ok:  # the same views as in the whole file, bit for bit
        w = whole.views[v.view]
        assert v.frames == w.frames and v.crop_box == w.crop_box
        assert torch.equal(got.pathways[0][v.row], whole.pathways[0][w.row])
    for v in failed:
        assert v.row is None and v.checksum is None
        assert "\n" not in v.error and ("stream ends after" in v.error or "did not decode" in v.error)
        assert v.clip_end > 130  # only views at the end of the video fail
    assert got.video.error == failed[0].error
    with pytest.raises(VideoDecodeError, match="no view decodes"):
        sample_views(_truncated(videos["bikes"], tmp_path, 8), X3D_S, ViewProtocol.of(X3D_S, 10, 3))


def test_atfr_views_partial_and_rotation_warnings(tmp_path, videos, capsys):
    cut = _truncated(videos["bikes"], tmp_path, 140)
    try:
        main(["views", str(cut), "--model", "x3d_s", "--json", "--no-checksums"])
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    assert code == 0
    doc = json.loads(out.out)
    assert doc["partial"] is True and any(v["status"] == "failed" for v in doc["views"])
    assert "partial video" in out.err and len(out.err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- rotation
def test_rotation_is_recorded_and_applied_on_request(tmp_path):
    from test_data_video import _rotated_clip

    p = _rotated_clip(tmp_path / "rot.mp4", rotation=90)
    spec = InputSpec(frames=(4,), train_crop=32, test_crop=32, sampling_rate=1)
    plain = sample_views(p, spec, ViewProtocol.of(spec, 1, 3))
    assert plain.video.rotation == 90 and not plain.video.rotated
    assert (plain.video.height, plain.video.width) == (48, 64) and plain.views[0].resized_hw == [32, 42]
    turned = sample_views(p, spec, ViewProtocol.of(spec, 1, 3), decoding=Decoding(apply_rotation=True))
    assert turned.video.rotated and (turned.video.height, turned.video.width) == (64, 48)
    assert turned.views[0].resized_hw == [42, 32] and turned.views[2].crop_box == [10, 0, 42, 32]
    assert view_protocol(spec, crops=1, short_side=32, crop=32).crop == 32
