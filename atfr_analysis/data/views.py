"""A video's test views as PySlowFast's PyAV test path builds them, each one auditable.

``sample_views(path, model, views, crops, short_side, crop)`` decodes only the frames its views
need and returns the pathway tensors, one ``ViewInfo`` per view and facts about the video.

Temporal rule (see ``atfr_analysis.data.transforms``):

* the container has a duration and a frame count (mp4 and similar): each clip is a
  presentation-time window; the frames whose pts fall in it and the first frame after it are
  decoded (``VideoReader.read``: a seek to the key frame before the window, nothing past its
  end), and the clip samples ``floor(linspace(0, clip_size - 1, T))`` of them, clamped to the
  last (``rule = "window"``);
* no duration (Matroska/WebM as PyAV reports them) or no frame count: the frames of a full
  decode, ``linspace(start, end, T)`` on its ``K`` frames (``rule = "full"``); decoding stops after
  the last frame a view needs.

Frames are named by their index in a full decode's presentation order (their rank by pts).

Spatial rule: the short side is scaled to ``short_side`` (bilinear), then a ``crop x crop`` square
is cut at PySlowFast's ``spatial_idx`` (3 crops: 0, 1, 2 along the long side; 1 crop: the centre).
``view_protocol`` gives the defaults: 3 crops: short side = crop = the test crop; 1 crop:
PySlowFast's 1-crop rule (short side = ``DATA.TRAIN_JITTER_SCALES[0]``, crop = the 1-crop
``DATA.TEST_CROP_SIZE``; X3D-S: 182 and 160).

Partial videos: when the stream ends before the frames its header lists (a truncated file whose
index survived) or a run of frames fails to decode, the views whose frames decoded are returned;
the others are ``ViewInfo(status="failed", error=...)`` and the video says ``partial``. A video of
which no view decodes raises ``VideoDecodeError``.

Views come as float32, normalised (``dtype=torch.float32``: bit-identical to
``transforms.prepare_frame`` + crop), or as uint8 ``[V, 3, T, S, S]`` (``dtype=torch.uint8``: a
quarter of the memory; resized frames rounded to integers, exact when nothing is resized) to be
normalised on the model's device with ``transforms.normalize_views``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch

from atfr_analysis.data import EmptyVideoError, VideoDecodeError
from atfr_analysis.data.transforms import (
    MEAN,
    STD,
    TARGET_FPS,
    checksum,
    checksum_uint8,
    clip_size,
    clip_windows,
    crop_box,
    crop_positions,
    get_start_end_idx,
    pack_pathways,
    prepare_frame,
    resize_frame,
    resized_size,
    sample_indices,
    slow_positions,
    to_uint8,
    window_positions,
    window_span,
)
from atfr_analysis.errors import InputError
from atfr_analysis.models.base import InputSpec

__all__ = [
    "ViewProtocol",
    "ViewInfo",
    "VideoFacts",
    "SampledViews",
    "model_spec",
    "view_protocol",
    "sample_views",
]


# ----------------------------------------------------------------------------- protocol
@dataclass(frozen=True)
class ViewProtocol:
    """How many views, and how each is scaled and cropped."""

    views: int
    crops: int
    short_side: int
    crop: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


#: PySlowFast's 1-crop test rule (``kinetics.py`` with ``TEST.NUM_SPATIAL_CROPS: 1``): short side
#: ``DATA.TRAIN_JITTER_SCALES[0]``, crop ``DATA.TEST_CROP_SIZE`` of the 1-crop config, as functions
#: of a model's ``InputSpec`` per family (``InputSpec`` has no jitter field).
#: X3D_{XS,S,M,L}.yaml: TRAIN_JITTER_SCALES[0] is the 3-crop TEST_CROP_SIZE (182, 182, 256, 356)
#: and the 1-crop TEST_CROP_SIZE (the yaml's commented value) is TRAIN_CROP_SIZE (160, 160, 224, 312).
#: The ResNet/Slow/SlowFast configs (Kinetics, SSv2): TRAIN_JITTER_SCALES [256, 320] and one
#: TEST_CROP_SIZE, 256: both the test crop.
ONE_CROP_RULE = {
    "x3d": (lambda s: s.test_crop, lambda s: s.train_crop),
    "resnet": (lambda s: s.test_crop, lambda s: s.test_crop),
}


@lru_cache(maxsize=None)
def _registry_spec(name: str) -> tuple[InputSpec, str]:
    from atfr_analysis.models.registry import get_entry

    entry = get_entry(name)
    with torch.device("meta"):  # the spec only: no weights are allocated
        m = entry.builder(entry.config)
    return m.spec, entry.family


def model_spec(model: Any) -> tuple[InputSpec, str | None]:
    """``(InputSpec, family)`` of a registry name, a model of the zoo or an ``InputSpec``
    (family ``None``: unknown)."""
    if isinstance(model, InputSpec):
        return model, None
    if isinstance(model, str):
        return _registry_spec(model)
    spec = getattr(model, "spec", None)
    if not isinstance(spec, InputSpec):
        raise InputError(f"expected a model name, a model of the zoo or an InputSpec, got {type(model).__name__}")
    name = getattr(model, "model_name", "") or ""
    if name:
        try:
            return spec, _registry_spec(name)[1]
        except ValueError:
            pass
    from atfr_analysis.models.resnet import VideoResNet
    from atfr_analysis.models.x3d import X3D

    family = "x3d" if isinstance(model, X3D) else "resnet" if isinstance(model, VideoResNet) else None
    return spec, family


def view_protocol(
    model: Any,
    views: int | None = None,
    crops: int | None = None,
    short_side: int | None = None,
    crop: int | None = None,
) -> ViewProtocol:
    """The test protocol of ``model`` (a registry name, a model or an ``InputSpec``) with the
    caller's choices.

    ``views``/``crops`` default to the model config's (10 x 3 for Kinetics models). 3 crops: short
    side = crop = the test crop (one given: both take it, as PySlowFast scales to the crop). 1 crop:
    PySlowFast's rule (``ONE_CROP_RULE``; X3D-S: short side 182, crop 160); with a bare
    ``InputSpec`` the family is unknown and both must be given. Raises ``InputError``.
    """
    spec, family = model_spec(model)
    views = spec.num_views if views is None else int(views)
    crops = spec.num_crops if crops is None else int(crops)
    if views < 1:
        raise InputError(f"views must be >= 1, got {views}")
    if crops not in (1, 3):
        raise InputError(f"crops must be 1 or 3 (PySlowFast's uniform crops), got {crops}")
    for name, v in (("short side", short_side), ("crop", crop)):
        if v is not None and int(v) < 1:
            raise InputError(f"{name} must be a positive integer, got {v}")
    if crops == 3:
        s = short_side if short_side is not None else crop if crop is not None else spec.test_crop
        c = crop if crop is not None else s
    else:
        if short_side is None or crop is None:
            if family not in ONE_CROP_RULE:
                raise InputError(
                    "the 1-crop protocol depends on the model family: pass a model name, or both short_side and crop"
                )
            rule_s, rule_c = ONE_CROP_RULE[family]
        s = short_side if short_side is not None else rule_s(spec)
        c = crop if crop is not None else rule_c(spec)
    s, c = int(s), int(c)
    if c > s:
        raise InputError(f"crop {c} is larger than the short side {s}")
    return ViewProtocol(views, crops, s, c)


# ----------------------------------------------------------------------------- results
@dataclass
class ViewInfo:
    """One test view, named as the fixtures name them (``shared/fixtures/pyslowfast_views``).

    ``view = temporal_index * crops + spatial_index``; ``spatial_idx`` is PySlowFast's crop
    position (0 = start of the long side, 1 = centre, 2 = end); ``frames`` the source frame indices
    of the fastest pathway (full-decode presentation order; empty for a failed view whose window
    runs past the end of a truncated stream); ``slow_frames`` those of SlowFast's
    slow pathway (``slow_positions`` of ``frames``); ``resized_hw`` the frame size after the
    short-side scale; ``crop_box`` ``[y0, x0, y1, x1]`` in it (end exclusive); ``checksum``
    ``{mean, std}`` (float64, population std) of the normalised view ``[3, T, crop, crop]``
    (``slow_checksum``: the slow pathway); ``window`` how the clip was decoded; ``row`` the view's
    row in the returned pathway tensors (``None`` when it failed).
    """

    view: int
    temporal_index: int
    spatial_index: int
    spatial_idx: int
    frames: list[int]
    resized_hw: list[int] | None
    crop_box: list[int] | None
    window: dict[str, Any]
    clip_start: float
    clip_end: float
    status: str = "ok"
    error: str | None = None
    row: int | None = None
    checksum: dict[str, float] | None = None
    slow_positions: list[int] | None = None
    slow_frames: list[int] | None = None
    slow_checksum: dict[str, float] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.slow_positions is None:
            for k in ("slow_positions", "slow_frames", "slow_checksum"):
                d.pop(k)
        return d


@dataclass
class VideoFacts:
    """What sampling learnt about a video.

    ``rule``: ``"window"`` (pts windows) or ``"full"`` (full decode); ``num_frames``: the header's
    frame count (window) or the full decode's (full); ``header_frames``, ``duration`` (stream
    time-base units, ``None`` when unknown) and ``time_base`` as the container says;
    ``width``/``height`` of the decoded frames (turned, with ``rotated``); ``rotation`` the
    counter-clockwise degrees a player turns them; ``decoded``: frames decoded; ``partial``: some
    view failed or the stream ends before its header's count; ``error``: why (one line);
    ``failed_views``; ``seconds`` per phase (``decode``: decoding and resizing, ``views``: cropping
    into views, ``checksum``).
    """

    path: str
    rule: str
    num_frames: int
    header_frames: int
    duration: int | None
    time_base: str | None
    fps: float
    width: int
    height: int
    rotation: int
    rotated: bool
    decoded: int
    partial: bool
    error: str | None
    failed_views: int
    protocol: ViewProtocol
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["protocol"] = self.protocol.to_dict()
        return d


class SampledViews(NamedTuple):
    """``pathways``: one tensor per pathway (slow first for SlowFast), ``[V_ok, 3, T_p, crop,
    crop]``, the views that decoded in view order (``ViewInfo.row``); ``views``: every view's
    ``ViewInfo`` (failed ones included); ``video``: ``VideoFacts``."""

    pathways: list[torch.Tensor]
    views: list[ViewInfo]
    video: VideoFacts

    @property
    def ok_views(self) -> list[ViewInfo]:
        return [v for v in self.views if v.ok]

    def meta(self) -> dict[str, list]:
        """Per-view metadata lists of the views that decoded, in row order (the keys of
        ``transforms.views_from_frames``, plus ``resized_hw`` and ``crop_box``)."""
        keys = (
            "view", "temporal_index", "spatial_index", "crop_position", "frame_start", "frame_end",
            "clip_start", "clip_end", "frame_indices", "resized_hw", "crop_box",
        )
        out: dict[str, list] = {k: [] for k in keys}
        for v in self.ok_views:
            out["view"].append(v.view)
            out["temporal_index"].append(v.temporal_index)
            out["spatial_index"].append(v.spatial_index)
            out["crop_position"].append(v.spatial_idx)
            out["frame_start"].append(v.frames[0])
            out["frame_end"].append(v.frames[-1])
            out["clip_start"].append(v.clip_start)
            out["clip_end"].append(v.clip_end)
            out["frame_indices"].append(list(v.frames))
            out["resized_hw"].append(list(v.resized_hw))
            out["crop_box"].append(list(v.crop_box))
        return out


# ----------------------------------------------------------------------------- sampling
@dataclass
class _Clip:
    temporal_index: int
    frames: list[int]
    window: dict[str, Any]
    start: float
    end: float
    error: str | None = None  # known before decoding (an incomplete window)


def _window_clips(reader, spec: InputSpec, protocol: ViewProtocol, target_fps: float) -> list[_Clip]:
    pts = reader.frame_pts()
    n = reader.header_frames
    complete = reader.index_complete()
    t = spec.clip_frames
    clips = []
    for w in clip_windows(n, reader.duration, reader.info.fps, spec, protocol.views, target_fps):
        window = {
            "decode_all_video": False, "start_pts": w.start_pts, "end_pts": w.end_pts,
            "first_frame": None, "last_frame": None, "K": 0, "resample_start": 0.0, "resample_end": w.size - 1,
        }
        span = window_span(pts, w)
        if span is None:
            reason = "no frame in its presentation-time window"
            if not complete:
                reason += _short_stream(len(pts), n, reader.index_error)
            clips.append(_Clip(w.temporal_index, [], window, w.start, w.end, reason))
            continue
        first, last, after = span
        k = last - first + 1
        window.update(first_frame=first, last_frame=last, K=k)
        frames = [first + int(p) for p in window_positions(k, w.size, t)]
        clip = _Clip(w.temporal_index, frames, window, w.start, w.end)
        if not after and not complete:
            # the window runs past the frames that can be named: its frame count K, and so its
            # frames, are not known (none are listed)
            clip.frames = []
            clip.error = "its window reaches past the end of the stream" + _short_stream(len(pts), n, reader.index_error)
        clips.append(clip)
    return clips


def _short_stream(have: int, header: int, why: str | None) -> str:
    s = f" (the stream ends after {have} of the {header} frames its header lists"
    return s + (f"; {why})" if why else ")")


def _full_clips(num_frames: int, fps: float, spec: InputSpec, protocol: ViewProtocol, target_fps: float) -> list[_Clip]:
    size = clip_size(spec, fps, target_fps)
    clips = []
    for i in range(protocol.views):
        start, end = get_start_end_idx(num_frames, size, i, protocol.views)
        frames = sample_indices(start, end, spec.clip_frames, num_frames).tolist()
        window = {
            "decode_all_video": True, "start_pts": 0, "end_pts": None, "first_frame": 0,
            "last_frame": num_frames - 1, "K": num_frames, "resample_start": start, "resample_end": end,
        }
        clips.append(_Clip(i, frames, window, start, end))
    return clips


class _Prepare:
    """The per-frame transform: short side to ``short_side``, normalised float32 or uint8."""

    def __init__(self, path, short_side: int, dtype: torch.dtype) -> None:
        self.path = path
        self.short_side = short_side
        self.dtype = dtype
        self.source_hw: tuple[int, int] | None = None

    def __call__(self, arr) -> torch.Tensor:
        hw = (int(arr.shape[0]), int(arr.shape[1]))
        if self.source_hw is None:
            self.source_hw = hw
        elif hw != self.source_hw:
            raise VideoDecodeError(self.path, f"frame size changes within the stream ({self.source_hw} then {hw})")
        if self.dtype == torch.uint8:
            if min(hw) == self.short_side:
                return torch.from_numpy(arr).permute(2, 0, 1).contiguous()
            return to_uint8(resize_frame(arr, self.short_side))
        return prepare_frame(arr, self.short_side)


def sample_views(
    path: str | Path,
    model: Any,
    views: int | None = None,
    crops: int | None = None,
    short_side: int | None = None,
    crop: int | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    checksums: bool = True,
    apply_rotation: bool = False,
    target_fps: float = TARGET_FPS,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    thread_type: str | None = "AUTO",
    thread_count: int = 0,
) -> SampledViews:
    """The ``views x crops`` test views of one video, as PySlowFast's PyAV test path takes them.

    ``model``: a registry name, a model of the zoo or an ``InputSpec`` (frames, sampling rate,
    SlowFast's alpha; with a bare spec and 1 crop, give ``short_side`` and ``crop``).
    ``views``/``crops``/``short_side``/``crop``: the protocol (``view_protocol`` fills the
    defaults). ``dtype``: ``torch.float32`` (normalised with ``mean``/``std``) or ``torch.uint8``
    (not normalised: ``transforms.normalize_views`` on the device). ``checksums``: compute each
    view's ``{mean, std}`` of its normalised input. ``apply_rotation``: turn the frames by their
    rotation metadata (default: as decoded, as PySlowFast).

    Returns ``SampledViews(pathways, views, video)``. Raises ``VideoError`` for a file that cannot
    be used at all (missing, not a video, no frames, no view decodes) and ``InputError`` for a bad
    protocol.
    """
    from atfr_analysis.data.video import VideoReader

    if dtype not in (torch.float32, torch.uint8):
        raise InputError(f"dtype must be torch.float32 or torch.uint8, got {dtype}")
    spec, _family = model_spec(model)
    protocol = view_protocol(model, views, crops, short_side, crop)
    positions = crop_positions(protocol.crops)
    t0 = time.perf_counter()
    prep = _Prepare(path, protocol.short_side, dtype)
    errors: list[str] = []
    with VideoReader(path, thread_type=thread_type, thread_count=thread_count) as reader:
        info = reader.info
        fps = info.fps
        use_window = bool(reader.duration) and reader.header_frames > 0
        if use_window:
            clips = _window_clips(reader, spec, protocol, target_fps)
            needed = sorted({f for c in clips if c.error is None for f in c.frames})
            if not needed:
                raise VideoDecodeError(path, "no view decodes: " + (clips[0].error or "no frame"))
            got = reader.read(needed, prep, apply_rotation=apply_rotation)
            frames, decoded, errors = got.frames, got.decoded, got.errors
            rotation, rotated = got.rotation, got.rotated
            num_frames = reader.header_frames
            short_stream = not reader.index_complete()
        else:
            known = len(reader.frame_pts())
            short_stream = False
    if not use_window:
        frames, decoded, rotation, rotated, num_frames, clips = _read_full(
            path, known, fps, spec, protocol, target_fps, prep, apply_rotation, thread_type, thread_count
        )
    if not frames:
        raise EmptyVideoError(path, "zero frames") if not errors else VideoDecodeError(path, errors[0])
    t1 = time.perf_counter()

    sample = next(iter(frames.values()))
    rh, rw = int(sample.shape[-2]), int(sample.shape[-1])
    sh, sw = prep.source_hw
    if (rh, rw) != resized_size(sh, sw, protocol.short_side):  # pragma: no cover - a transform bug
        raise RuntimeError(f"resized {sh}x{sw} to {rh}x{rw}")
    try:
        boxes = [crop_box(rh, rw, protocol.crop, p) for p in positions]
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None

    t = spec.clip_frames
    alpha = spec.alpha if spec.num_pathways == 2 else None
    slow_pos = slow_positions(t, alpha).tolist() if alpha else None
    infos: list[ViewInfo] = []
    for c in clips:
        err = c.error
        if err is None:
            missing = [f for f in c.frames if f not in frames]
            if missing:
                why = errors[0] if errors else "not decoded"
                err = f"frame {missing[0]} did not decode ({why})"
        for s, (p, box) in enumerate(zip(positions, boxes)):
            infos.append(ViewInfo(
                view=c.temporal_index * protocol.crops + s,
                temporal_index=c.temporal_index,
                spatial_index=s,
                spatial_idx=p,
                frames=list(c.frames),
                resized_hw=[rh, rw],
                crop_box=list(box),
                window=dict(c.window),
                clip_start=float(c.start),
                clip_end=float(c.end),
                status="ok" if err is None else "failed",
                error=err,
                slow_positions=list(slow_pos) if slow_pos else None,
                slow_frames=[c.frames[q] for q in slow_pos] if slow_pos and c.frames else None,
            ))
    ok = [v for v in infos if v.ok]
    if not ok:
        raise VideoDecodeError(path, "no view decodes: " + infos[0].error)

    fast = torch.empty((len(ok), 3, t, protocol.crop, protocol.crop), dtype=dtype)
    for r, v in enumerate(ok):
        v.row = r
        y0, x0, y1, x1 = v.crop_box
        out_v = fast[r]
        for j, f in enumerate(v.frames):  # frame by frame, straight into the output
            out_v[:, j].copy_(frames[f][:, y0:y1, x0:x1])
    del frames
    pathways = pack_pathways(fast, alpha)
    t2 = time.perf_counter()
    if checksums:
        summ = (lambda x: checksum_uint8(x, mean, std)) if dtype == torch.uint8 else checksum
        for v in ok:
            v.checksum = summ(pathways[-1][v.row])
            if alpha:
                v.slow_checksum = summ(pathways[0][v.row])
    t3 = time.perf_counter()

    failed = [v for v in infos if not v.ok]
    partial = bool(failed or errors or short_stream)
    err = failed[0].error if failed else (errors[0] if errors else None)
    facts = VideoFacts(
        path=str(path),
        rule="window" if use_window else "full",
        num_frames=num_frames,
        header_frames=info.frames if info.frames_known else 0,
        duration=reader.duration,
        time_base=str(reader.time_base) if reader.time_base is not None else None,
        fps=fps,
        width=sw,
        height=sh,
        rotation=rotation,
        rotated=rotated,
        decoded=decoded,
        partial=partial,
        error=err,
        failed_views=len(failed),
        protocol=protocol,
        seconds={"decode": t1 - t0, "views": t2 - t1, "checksum": t3 - t2},
    )
    return SampledViews(pathways, infos, facts)


def _read_full(path, known, fps, spec, protocol, target_fps, prep, apply_rotation, thread_type, thread_count):
    """The full-decode rule: clips on the decoded frame count (the packet count when the
    decode stops early at the last frame needed; redone on the true count when the stream ends
    before it)."""
    from atfr_analysis.data.video import read_frames

    kw = dict(transform=prep, thread_type=thread_type, thread_count=thread_count, stack=False,
              check_count=False, apply_rotation=apply_rotation)
    if known > 0:
        clips = _full_clips(known, fps, spec, protocol, target_fps)
        needed = sorted({f for c in clips for f in c.frames})
        fs = read_frames(path, needed, **kw)
        n = known
        if fs.eof and fs.num_decoded != known:
            n = fs.num_decoded
    else:
        fs = read_frames(path, None, **kw)
        n = fs.num_decoded
    if n == 0:
        raise EmptyVideoError(path, "zero frames")
    clips = _full_clips(n, fps, spec, protocol, target_fps)
    needed = sorted({f for c in clips for f in c.frames})
    if not set(needed) <= set(fs.index):
        fs = read_frames(path, needed, **kw)
    frames = dict(zip(fs.index, fs.frames))
    return frames, fs.num_decoded, fs.rotation, fs.rotated, n, clips
