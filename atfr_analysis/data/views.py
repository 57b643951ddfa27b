"""A video's test views as PySlowFast's PyAV test path builds them, each one auditable.

``sample_views(path, model, protocol)`` decodes only the frames its views need and returns the
pathway tensors, one ``ViewInfo`` per view and facts about the video.

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
``ViewProtocol.of`` gives the defaults: 3 crops: short side = crop = the test crop; 1 crop:
PySlowFast's 1-crop rule, ``InputSpec.one_crop`` (short side = ``DATA.TRAIN_JITTER_SCALES[0]``,
crop = the 1-crop ``DATA.TEST_CROP_SIZE``; X3D-S: 182 and 160).

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
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

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
from atfr_analysis.data.video import Decoding
from atfr_analysis.errors import InputError
from atfr_analysis.models.base import InputSpec

__all__ = [
    "ViewProtocol",
    "Decoding",
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
    """How many views, and how each is scaled and cropped: ``views`` temporal clips x ``crops``
    spatial crops (1 or 3, PySlowFast's uniform crops), each frame's short side scaled to
    ``short_side``, then a ``crop x crop`` square cut. Checked when built (``InputError``).

    ``ViewProtocol.of(spec, ...)`` fills the caller's choices in with a model's test protocol;
    ``ViewProtocol.at_crop(spec, ...)`` scales every view's short side to its crop.
    """

    views: int
    crops: int
    short_side: int
    crop: int

    def __post_init__(self) -> None:
        if self.views < 1:
            raise InputError(f"views must be >= 1, got {self.views}")
        if self.crops not in (1, 3):
            raise InputError(f"crops must be 1 or 3 (PySlowFast's uniform crops), got {self.crops}")
        for name, v in (("short side", self.short_side), ("crop", self.crop)):
            if v < 1:
                raise InputError(f"{name} must be a positive integer, got {v}")
        if self.crop > self.short_side:
            raise InputError(f"crop {self.crop} is larger than the short side {self.short_side}")

    @property
    def num_views(self) -> int:
        """Views per video: ``views * crops``."""
        return self.views * self.crops

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def of(
        cls,
        spec: InputSpec,
        views: int | None = None,
        crops: int | None = None,
        short_side: int | None = None,
        crop: int | None = None,
    ) -> ViewProtocol:
        """The test protocol of a model's ``spec`` with the caller's choices.

        ``views``/``crops`` default to the spec's (10 x 3 for Kinetics models). 3 crops: short side
        = crop = the test crop (one given: both take it, as PySlowFast scales to the crop). 1 crop:
        PySlowFast's rule, ``spec.one_crop`` (X3D-S: short side 182, crop 160); a spec without one
        needs both given. Raises ``InputError``.
        """
        views = spec.num_views if views is None else int(views)
        crops = spec.num_crops if crops is None else int(crops)
        for name, v in (("short side", short_side), ("crop", crop)):
            if v is not None and int(v) < 1:
                raise InputError(f"{name} must be a positive integer, got {v}")
        if crops == 1 and (short_side is None or crop is None):
            if spec.one_crop is None:
                raise InputError(
                    "the 1-crop protocol depends on the model family: pass a model name, or both short_side and crop"
                )
            s = short_side if short_side is not None else spec.one_crop[0]
            c = crop if crop is not None else spec.one_crop[1]
        else:  # 3 crops (PySlowFast scales to the crop), or 1 crop with both given
            s = short_side if short_side is not None else crop if crop is not None else spec.test_crop
            c = crop if crop is not None else s
        return cls(views, crops, int(s), int(c))

    @classmethod
    def at_crop(
        cls, spec: InputSpec, views: int | None = None, crops: int | None = None, crop: int | None = None
    ) -> ViewProtocol:
        """Every view's short side scaled to its crop (``crop``, default the test crop), whatever
        the number of crops; ``views``/``crops`` default to the spec's."""
        c = spec.test_crop if crop is None else int(crop)
        return cls(
            spec.num_views if views is None else int(views), spec.num_crops if crops is None else int(crops), c, c
        )


@cache
def _registry_spec(name: str) -> InputSpec:
    from atfr_analysis.models.registry import get_entry

    entry = get_entry(name)
    with torch.device("meta"):  # the spec only: no weights are allocated
        m = entry.builder(entry.config)
    return m.spec


def model_spec(model: Any) -> InputSpec:
    """The ``InputSpec`` of a registry name, a model of the zoo or an ``InputSpec``."""
    if isinstance(model, InputSpec):
        return model
    if isinstance(model, str):
        return _registry_spec(model)
    spec = getattr(model, "spec", None)
    if not isinstance(spec, InputSpec):
        raise InputError(f"expected a model name, a model of the zoo or an InputSpec, got {type(model).__name__}")
    return spec


def view_protocol(
    model: Any,
    views: int | None = None,
    crops: int | None = None,
    short_side: int | None = None,
    crop: int | None = None,
) -> ViewProtocol:
    """``ViewProtocol.of`` the spec of ``model`` (a registry name, a model or an ``InputSpec``)."""
    return ViewProtocol.of(model_spec(model), views, crops, short_side, crop)


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
        """Per-view metadata lists of the views that decoded, in row order: ``view``,
        ``temporal_index``, ``spatial_index``, ``crop_position`` (PySlowFast's ``spatial_idx``),
        ``frame_start``, ``frame_end``, ``clip_start``, ``clip_end``, ``frame_indices``,
        ``resized_hw``, ``crop_box``."""
        keys = (
            "view",
            "temporal_index",
            "spatial_index",
            "crop_position",
            "frame_start",
            "frame_end",
            "clip_start",
            "clip_end",
            "frame_indices",
            "resized_hw",
            "crop_box",
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


def _window_clips(reader, spec: InputSpec, protocol: ViewProtocol) -> list[_Clip]:
    pts = reader.frame_pts()
    n = reader.header_frames
    complete = reader.index_complete()
    t = spec.clip_frames
    clips = []
    for w in clip_windows(n, reader.duration, reader.info.fps, spec, protocol.views, TARGET_FPS):
        window = {
            "decode_all_video": False,
            "start_pts": w.start_pts,
            "end_pts": w.end_pts,
            "first_frame": None,
            "last_frame": None,
            "K": 0,
            "resample_start": 0.0,
            "resample_end": w.size - 1,
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
            clip.error = "its window reaches past the end of the stream" + _short_stream(
                len(pts), n, reader.index_error
            )
        clips.append(clip)
    return clips


def _short_stream(have: int, header: int, why: str | None) -> str:
    s = f" (the stream ends after {have} of the {header} frames its header lists"
    return s + (f"; {why})" if why else ")")


def _full_clips(num_frames: int, fps: float, spec: InputSpec, protocol: ViewProtocol) -> list[_Clip]:
    size = clip_size(spec, fps, TARGET_FPS)
    clips = []
    for i in range(protocol.views):
        start, end = get_start_end_idx(num_frames, size, i, protocol.views)
        frames = sample_indices(start, end, spec.clip_frames, num_frames).tolist()
        window = {
            "decode_all_video": True,
            "start_pts": 0,
            "end_pts": None,
            "first_frame": 0,
            "last_frame": num_frames - 1,
            "K": num_frames,
            "resample_start": start,
            "resample_end": end,
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
    protocol: ViewProtocol | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    checksums: bool = True,
    decoding: Decoding = Decoding(),
) -> SampledViews:
    """The test views of one video, as PySlowFast's PyAV test path takes them.

    ``model``: a registry name, a model of the zoo or an ``InputSpec`` (frames, sampling rate,
    SlowFast's alpha). ``protocol``: views, crops, short side and crop (``None``: the model's,
    ``ViewProtocol.of``). ``dtype``: ``torch.float32`` (normalised with PySlowFast's mean and std)
    or ``torch.uint8`` (not normalised: ``transforms.normalize_views`` on the device).
    ``checksums``: compute each view's ``{mean, std}`` of its normalised input. ``decoding``:
    FFmpeg threads and rotation (default: as decoded, as PySlowFast).

    Returns ``SampledViews(pathways, views, video)``. Raises ``VideoError`` for a file that cannot
    be used at all (missing, not a video, no frames, no view decodes) and ``InputError`` for a bad
    protocol.
    """
    if dtype not in (torch.float32, torch.uint8):
        raise InputError(f"dtype must be torch.float32 or torch.uint8, got {dtype}")
    spec = model_spec(model)
    protocol = ViewProtocol.of(spec) if protocol is None else protocol
    t0 = time.perf_counter()
    prep = _Prepare(path, protocol.short_side, dtype)
    decoded = _decode_clips(path, spec, protocol, prep, decoding)
    t1 = time.perf_counter()
    infos, fast = _cut_views(path, spec, protocol, decoded, prep, dtype)
    decoded.frames.clear()  # the views hold what they need
    alpha = spec.alpha if spec.num_pathways == 2 else None
    pathways = pack_pathways(fast, alpha)
    t2 = time.perf_counter()
    if checksums:
        summ = (lambda x: checksum_uint8(x, MEAN, STD)) if dtype == torch.uint8 else checksum
        for v in infos:
            if v.ok:
                v.checksum = summ(pathways[-1][v.row])
                if alpha:
                    v.slow_checksum = summ(pathways[0][v.row])
    t3 = time.perf_counter()
    facts = _facts(path, protocol, decoded, infos, prep, {"decode": t1 - t0, "views": t2 - t1, "checksum": t3 - t2})
    return SampledViews(pathways, infos, facts)


@dataclass
class _Decoded:
    """The frames a video's views need, decoded and resized, and how they were found."""

    frames: dict[int, torch.Tensor]
    clips: list[_Clip]
    decoded: int
    errors: list[str]
    rotation: int
    rotated: bool
    num_frames: int
    short_stream: bool
    use_window: bool
    info: Any
    duration: int | None
    time_base: Any


def _decode_clips(path, spec: InputSpec, protocol: ViewProtocol, prep: _Prepare, decoding: Decoding) -> _Decoded:
    """The window rule when the container has a duration and a frame count, else the full decode."""
    from atfr_analysis.data.video import VideoReader

    errors: list[str] = []
    with VideoReader(path, decoding) as reader:
        info, duration, time_base = reader.info, reader.duration, reader.time_base
        use_window = bool(reader.duration) and reader.header_frames > 0
        if use_window:
            clips = _window_clips(reader, spec, protocol)
            needed = sorted({f for c in clips if c.error is None for f in c.frames})
            if not needed:
                raise VideoDecodeError(path, "no view decodes: " + (clips[0].error or "no frame"))
            got = reader.read(needed, prep)
            out = _Decoded(
                got.frames,
                clips,
                got.decoded,
                got.errors,
                got.rotation,
                got.rotated,
                reader.header_frames,
                not reader.index_complete(),
                True,
                info,
                duration,
                time_base,
            )
        else:
            known = len(reader.frame_pts())
    if not use_window:
        frames, decoded, rotation, rotated, num_frames, clips = _read_full(
            path, known, info.fps, spec, protocol, prep, decoding
        )
        out = _Decoded(
            frames, clips, decoded, errors, rotation, rotated, num_frames, False, False, info, duration, time_base
        )
    if not out.frames:
        raise EmptyVideoError(path, "zero frames") if not out.errors else VideoDecodeError(path, out.errors[0])
    return out


def _cut_views(path, spec: InputSpec, protocol: ViewProtocol, d: _Decoded, prep: _Prepare, dtype: torch.dtype):
    """Every view's ``ViewInfo`` (failed ones included) and the fastest pathway's tensor of the
    views that decoded ``[V_ok, 3, T, crop, crop]``, cut from the decoded frames."""
    frames, clips, errors = d.frames, d.clips, d.errors
    positions = crop_positions(protocol.crops)
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
            infos.append(
                ViewInfo(
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
                )
            )
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
    return infos, fast


def _facts(path, protocol: ViewProtocol, d: _Decoded, infos: list[ViewInfo], prep: _Prepare, seconds) -> VideoFacts:
    failed = [v for v in infos if not v.ok]
    partial = bool(failed or d.errors or d.short_stream)
    err = failed[0].error if failed else (d.errors[0] if d.errors else None)
    sh, sw = prep.source_hw
    return VideoFacts(
        path=str(path),
        rule="window" if d.use_window else "full",
        num_frames=d.num_frames,
        header_frames=d.info.frames if d.info.frames_known else 0,
        duration=d.duration,
        time_base=str(d.time_base) if d.time_base is not None else None,
        fps=d.info.fps,
        width=sw,
        height=sh,
        rotation=d.rotation,
        rotated=d.rotated,
        decoded=d.decoded,
        partial=partial,
        error=err,
        failed_views=len(failed),
        protocol=protocol,
        seconds=seconds,
    )


def _read_full(
    path, known: int, fps: float, spec: InputSpec, protocol: ViewProtocol, prep: _Prepare, decoding: Decoding
):
    """The full-decode rule: clips on the decoded frame count (the packet count when the
    decode stops early at the last frame needed; redone on the true count when the stream ends
    before it)."""
    from atfr_analysis.data.video import FrameOutput, read_frames

    kw = dict(output=FrameOutput(transform=prep, stack=False), decoding=replace(decoding, check_count=False))
    if known > 0:
        clips = _full_clips(known, fps, spec, protocol)
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
    clips = _full_clips(n, fps, spec, protocol)
    needed = sorted({f for c in clips for f in c.frames})
    if not set(needed) <= set(fs.index):
        fs = read_frames(path, needed, **kw)
    frames = dict(zip(fs.index, fs.frames))
    return frames, fs.num_decoded, fs.rotation, fs.rotated, n, clips
