"""Video decoding with PyAV: probe a file, decode its frames into uint8 ``[T, H, W, 3]`` (RGB).

Frames are converted as PySlowFast's PyAV decoder does (``rgb24`` through FFmpeg's swscale).
Decoding is sequential from the first frame and stops after the last frame asked for; only the
frames asked for are converted to RGB (every frame up to the last one must still be decoded, as
inter-coded frames depend on each other).

Selective decoding (``VideoReader``): one demux pass (no decoding) lists every frame's pts in
presentation order, so that a frame is named by its index in a full decode; ``VideoReader.read``
then decodes only the runs of frames asked for, seeking to the key frame before each run.

Rotation: a display matrix (side data on the decoded frames) or a ``rotate`` stream tag is read
as ``rotation``, the counter-clockwise degrees (0, 90, 180 or 270) by which a player turns the
frames. Frames are returned as decoded (as PySlowFast does) unless ``apply_rotation=True``.

Every failure raises a ``VideoError`` (a ``DataError``) whose one-line message reads
``cannot decode video: <path>: <reason>``:

* ``VideoNotFoundError``: no such file (or a directory);
* ``VideoDecodeError``: FFmpeg cannot open it (not a video, truncated before its index), fails
  while decoding it (truncated or corrupt data before the last frame needed), or the stream ends
  clearly short of the frame count the header lists (a truncated file whose index survived);
* ``EmptyVideoError``: no video stream, or not a single decodable frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from atfr_analysis.data import EmptyVideoError, VideoDecodeError, VideoNotFoundError

__all__ = [
    "VideoInfo",
    "DecodedVideo",
    "FrameSet",
    "FrameRead",
    "VideoReader",
    "probe",
    "decode_video",
    "read_frames",
    "Decoding",
    "FrameOutput",
    "frame_rotation",
    "rotate_frame",
    "DEFAULT_THREAD_TYPE",
]

#: FFmpeg's decoder threading used by default ("AUTO": frame and slice threads, as many as cores)
DEFAULT_THREAD_TYPE = "AUTO"


@dataclass(frozen=True)
class Decoding:
    """How a file is decoded.

    ``thread_type`` / ``thread_count``: FFmpeg's decoder threading ("AUTO": frame and slice
    threads; 0 threads = as many as cores; ``thread_type=None`` decodes on one thread, advisable
    with many loader workers). ``apply_rotation``: turn the frames by their rotation metadata
    (default: as decoded, as PySlowFast). ``check_count`` (``read_frames``): a stream that ends
    clearly short of the frame count its header lists is an error.
    """

    thread_type: str | None = DEFAULT_THREAD_TYPE
    thread_count: int = 0
    apply_rotation: bool = False
    check_count: bool = True

    def configure(self, stream) -> None:
        """Set the decoder threading of a PyAV video ``stream``."""
        if self.thread_type:
            stream.codec_context.thread_type = self.thread_type
            stream.codec_context.thread_count = int(self.thread_count)


@dataclass(frozen=True)
class FrameOutput:
    """How ``read_frames`` returns the frames it keeps: ``size=(width, height)`` has FFmpeg's
    swscale resize each one as it converts it to RGB (area interpolation); ``transform`` maps each
    (uint8 ``[H, W, 3]`` ndarray) to a tensor as it is decoded (e.g. a resize), so that full-size
    frames need not be held; ``stack`` stacks them into one tensor ``[K, ...]``."""

    size: tuple[int, int] | None = None
    transform: Callable[[np.ndarray], Any] | None = None
    stack: bool = True


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a file's first video stream.

    ``frames`` is the stream's frame count from the container header when it has one
    (``frames_known``); otherwise an estimate from duration x fps (0 when neither is known), or, with
    ``probe(count=True)``, the number of video packets.
    """

    path: str
    frames: int
    fps: float
    width: int
    height: int
    duration: float
    codec: str
    frames_known: bool


class DecodedVideo(NamedTuple):
    """``frames`` uint8 ``[T, H, W, 3]`` and the stream's frame rate (unpacks as ``frames, fps``)."""

    frames: torch.Tensor
    fps: float


@dataclass
class FrameSet:
    """Frames kept by ``read_frames``: ``frames[k]`` is video frame ``index[k]`` (ascending).

    ``num_decoded`` frames were decoded; ``eof`` tells whether decoding reached the end of the stream
    (then ``num_decoded`` is the video's true frame count).
    """

    frames: torch.Tensor | list
    index: list[int]
    fps: float
    num_decoded: int
    eof: bool
    info: VideoInfo
    #: counter-clockwise degrees a player turns the frames (0 when untagged); see ``frame_rotation``
    rotation: int = 0
    #: whether ``frames`` were turned by ``rotation`` (``apply_rotation=True``)
    rotated: bool = False


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoNotFoundError(path, "no such file")
    if not path.is_file():
        raise VideoNotFoundError(path, "not a regular file")


def _open(path: Path):
    import av

    _check_file(path)
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as e:  # not a video, truncated before its index, ...
        raise VideoDecodeError(path, _ffmpeg_reason(e, "cannot open")) from None
    except (OSError, ValueError, IndexError) as e:
        raise VideoDecodeError(path, f"cannot open: {e}") from None
    if not container.streams.video:
        container.close()
        raise EmptyVideoError(path, "no video stream")
    return container


def _ffmpeg_reason(e: Exception, what: str) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    hint = ""
    if "Invalid data" in msg:
        hint = " (not a video file, or truncated/corrupt)"
    elif "End of file" in msg:
        hint = " (truncated or empty container)"
    return f"{what}: {msg}{hint}"


def _rate(stream) -> float:
    for r in (stream.average_rate, getattr(stream, "guessed_rate", None), stream.base_rate):
        if r:
            return float(r)
    return 0.0


def _info(path: Path, container, count: bool = False) -> VideoInfo:
    st = container.streams.video[0]
    fps = _rate(st)
    if st.duration and st.time_base:
        duration = float(st.duration * st.time_base)
    elif container.duration:
        duration = container.duration / 1_000_000
    else:
        duration = 0.0
    frames, known = int(st.frames or 0), bool(st.frames)
    if count:
        try:
            frames = sum(1 for p in container.demux(st) if p.size)
        except Exception as e:  # noqa: BLE001 - any demux failure is a broken file
            raise VideoDecodeError(path, _ffmpeg_reason(e, "cannot read packets")) from None
        known = True
    elif not known and duration > 0 and fps > 0:
        frames = int(round(duration * fps))
    if not duration and frames and fps:
        duration = frames / fps
    cc = st.codec_context
    return VideoInfo(
        path=str(path),
        frames=frames,
        fps=fps,
        width=int(cc.width or st.width or 0),
        height=int(cc.height or st.height or 0),
        duration=duration,
        codec=str(cc.name),
        frames_known=known,
    )


def frame_rotation(frame, stream=None) -> int:
    """Counter-clockwise degrees (0, 90, 180 or 270, rounded to a quarter turn) by which a player
    turns ``frame``: its display matrix (PyAV's ``VideoFrame.rotation``), else the stream's
    ``rotate`` tag (clockwise degrees, as FFmpeg writes it), else 0."""
    deg = 0.0
    try:
        deg = float(frame.rotation or 0)
    except (AttributeError, TypeError, ValueError):
        deg = 0.0
    if not deg and stream is not None:
        for k, v in (stream.metadata or {}).items():
            if k.lower() == "rotate":
                try:
                    deg = -float(v)
                except ValueError:
                    pass
                break
    return int(round(deg / 90.0)) % 4 * 90


def rotate_frame(arr: np.ndarray, rotation: int) -> np.ndarray:
    """``[H, W, 3]`` frame turned counter-clockwise by ``rotation`` degrees (a multiple of 90)."""
    k = (int(rotation) // 90) % 4
    return np.ascontiguousarray(np.rot90(arr, k)) if k else arr


def probe(path: str | Path, count: bool = False) -> VideoInfo:
    """Frames, fps, width, height and duration (s) of ``path``'s first video stream, without decoding.

    ``count=True`` counts the stream's packets (a demux pass, no decoding) when the header may be
    wrong or lacks a count (Matroska/WebM files have none).
    """
    path = Path(path)
    container = _open(path)
    try:
        info = _info(path, container, count=count)
    finally:
        container.close()
    if info.fps <= 0:
        raise VideoDecodeError(path, "unknown frame rate")
    if count and info.frames == 0:
        raise EmptyVideoError(path, "zero frames")
    return info


def read_frames(
    path: str | Path,
    indices: Iterable[int] | Callable[[VideoInfo], Iterable[int] | None] | None = None,
    stop: int | None = None,
    *,
    start: int = 0,
    output: FrameOutput = FrameOutput(),
    decoding: Decoding = Decoding(),
) -> FrameSet:
    """Decode ``path`` from its first frame and keep the frames asked for.

    ``indices``: video frame numbers to keep (any order, duplicates allowed; kept once each, in
    ascending order); ``None`` keeps every frame; a callable gets the header's ``VideoInfo`` once the
    file is open and returns either (no second open to probe). Decoding stops after ``max(indices)`` or before
    frame ``stop``, whichever comes first; frames beyond the video's end are simply absent (compare
    ``index``); with ``indices=None``, ``start`` skips the conversion of the frames before it.
    ``output`` (``FrameOutput``): the kept frames' size, transform and stacking; ``decoding``
    (``Decoding``): threads, rotation, the frame-count check.

    Raises ``VideoError`` when the file is missing, not a video, fails to decode before the last
    frame needed, or has no frame at all; and, with ``decoding.check_count``, when the stream ends
    clearly short of the frame count its header lists (a truncated file whose index survived; the
    tolerance, ``count_tolerance``, allows for the frames an edit list may drop).

    ``rotation`` of the result is the first frame's (see ``frame_rotation``); with
    ``decoding.apply_rotation`` every kept frame is turned by it before ``size``/``transform``
    apply (then ``size`` is the turned frame's).
    """
    import av

    size, transform, stack = output.size, output.transform, output.stack
    apply_rotation = decoding.apply_rotation
    path = Path(path)
    container = _open(path)
    kept: list = []
    index: list[int] = []
    n = 0
    eof = False
    rotation = None
    to_rgb = {"format": "rgb24"}
    if size is not None and not apply_rotation:
        to_rgb.update(width=int(size[0]), height=int(size[1]), interpolation="AREA")
    try:
        info = _info(path, container)
        if info.fps <= 0:
            raise VideoDecodeError(path, "unknown frame rate")
        if callable(indices):
            indices = indices(info)
        wanted: set[int] | None = None
        last = None if stop is None else int(stop) - 1
        if indices is not None:
            wanted = {int(i) for i in indices}
            if any(i < 0 for i in wanted):
                raise ValueError("frame indices must be >= 0")
            if not wanted:
                raise ValueError("no frame index asked for")
            m = max(wanted)
            last = m if last is None else min(last, m)
        st = container.streams.video[0]
        decoding.configure(st)
        if last is not None and last < 0:
            return FrameSet(_stack(kept, stack), index, info.fps, 0, False, info)
        try:
            for frame in container.decode(st):
                if rotation is None:
                    rotation = frame_rotation(frame, st)
                if (n in wanted) if wanted is not None else n >= start:
                    arr = frame.to_ndarray(**to_rgb)
                    if apply_rotation and rotation:
                        arr = rotate_frame(arr, rotation)
                    if apply_rotation and size is not None:
                        arr = _resize_area(arr, size)
                    kept.append(transform(arr) if transform is not None else torch.from_numpy(arr))
                    index.append(n)
                n += 1
                if last is not None and n > last:
                    break
            else:
                eof = True
        except av.FFmpegError as e:
            raise VideoDecodeError(path, _ffmpeg_reason(e, f"decoding failed after {n} frames")) from None
    finally:
        container.close()
    if n == 0:
        raise EmptyVideoError(path, "zero frames")
    if eof and decoding.check_count and info.frames_known and n < info.frames - count_tolerance(info.frames):
        raise VideoDecodeError(
            path, f"truncated or corrupt: the stream ends after {n} of the {info.frames} frames its header lists"
        )
    try:
        frames = _stack(kept, stack)
    except RuntimeError as e:  # frames of different sizes
        raise VideoDecodeError(path, f"frame size changes within the stream ({e})") from None
    rot = rotation or 0
    return FrameSet(frames, index, info.fps, n, eof, info, rot, bool(apply_rotation and rot))


def _resize_area(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An RGB frame resized by swscale (area), as ``read_frames(size=...)`` does while converting."""
    import av

    w, h = int(size[0]), int(size[1])
    if arr.shape[1] == w and arr.shape[0] == h:
        return arr
    f = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
    return f.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()


def count_tolerance(header_frames: int) -> int:
    """Frames a stream may fall short of its header's count without being called truncated."""
    return max(2, int(math.ceil(0.02 * header_frames)))


def _stack(kept: list, stack: bool):
    if not stack:
        return kept
    if not kept:
        return torch.empty((0, 0, 0, 3), dtype=torch.uint8)
    return torch.stack(kept)


def decode_video(
    path: str | Path,
    start: int = 0,
    stop: int | None = None,
    *,
    thread_type: str | None = DEFAULT_THREAD_TYPE,
    thread_count: int = 0,
) -> DecodedVideo:
    """Frames ``start .. stop-1`` of ``path`` (all by default) as uint8 ``[T, H, W, 3]`` RGB, and fps.

    Decoding stops after frame ``stop - 1``. Raises ``VideoError`` (one line) for a missing,
    truncated, corrupt, non-video or frame-less file, and ``EmptyVideoError`` when ``start`` lies
    beyond the last frame.
    """
    if start < 0 or (stop is not None and stop <= start):
        raise ValueError(f"need 0 <= start < stop, got start={start} stop={stop}")
    fs = read_frames(
        path,
        None,
        stop,
        start=start,
        output=FrameOutput(stack=False),
        decoding=Decoding(thread_type=thread_type, thread_count=thread_count),
    )
    frames = fs.frames
    if not frames:
        raise EmptyVideoError(path, f"no frame at or after {start} (the video has {fs.num_decoded})")
    return DecodedVideo(torch.stack(frames), fs.fps)


# ----------------------------------------------------------------------------- selective decoding
@dataclass
class FrameRead:
    """What ``VideoReader.read`` got: ``frames[k]`` is (the transform of) source frame ``k``.

    ``decoded`` counts every frame decoded (those only decoded to reach a wanted one included);
    ``errors`` holds one line per run of frames whose decoding failed (the frames of that run
    after the failure are absent); ``rotation`` is the first decoded frame's.
    """

    frames: dict[int, Any]
    decoded: int
    errors: list[str]
    rotation: int
    rotated: bool
    seeks: int


class VideoReader:
    """An open video for selective decoding (a context manager; ``close()`` when done).

    ``info`` (``VideoInfo``), ``header_frames`` (the stream's frame count, 0 when unknown),
    ``duration`` (the stream's duration in ``time_base`` units, ``None`` when unknown: PySlowFast
    then decodes the whole video), ``frame_pts()`` (every frame's pts in presentation order, from
    one demux pass: no decoding) and ``read(indices)``.
    """

    def __init__(self, path: str | Path, decoding: Decoding = Decoding()) -> None:
        self.path = Path(path)
        self.decoding = decoding
        self._container = _open(self.path)
        try:
            self.info = _info(self.path, self._container)
            if self.info.fps <= 0:
                raise VideoDecodeError(self.path, "unknown frame rate")
        except BaseException:
            self._container.close()
            raise
        st = self._container.streams.video[0]
        self.header_frames = int(st.frames or 0)
        self.duration = int(st.duration) if st.duration is not None else None
        self.time_base = st.time_base
        self._pts: list[int] | None = None
        self._pts_error: str | None = None
        self._rotation: int | None = None
        self._stop_dts: int | None = None  # no packet past this dts is decoded (a truncated stream)
        self._decode_errors: list[str] = []
        self.packets_read = 0
        self._decoded = 0
        self._start()

    # ------------------------------------------------------------------ context manager
    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ index
    def frame_pts(self) -> list[int]:
        """Every frame's pts (ascending: presentation order), from the packets of the stream
        (one demux pass, nothing decoded); packets without pts or marked discard are left out.

        When the packets stop short of the header's frame count (a truncated file whose index
        survived; or a demux failure, ``index_error``), the frames after the cut cannot be named:
        a missing packet may sit anywhere after the last one read in presentation order. Only the
        frames whose pts do not exceed the largest dts read before the last packet are kept (a
        missing packet's pts is at least its dts, which is larger); decoding then sends no packet
        beyond that dts (the last packet read may be cut short).
        """
        if self._pts is None:
            import av

            packets: list[tuple[int, int | None]] = []
            with av.open(str(self.path), mode="r") as c:
                st = c.streams.video[0]
                try:
                    for p in c.demux(st):
                        if p.pts is not None and p.size and not p.is_discard:
                            packets.append((int(p.pts), None if p.dts is None else int(p.dts)))
                except (av.FFmpegError, OSError, ValueError) as e:
                    self._pts_error = _ffmpeg_reason(e, f"reading packets failed after {len(packets)}")
            self.packets_read = len(packets)
            short = self.header_frames and len(packets) < self.header_frames - count_tolerance(self.header_frames)
            if (self._pts_error is not None or short) and packets:
                dts = [d for _p, d in packets[:-1] if d is not None]
                limit = max(dts) if dts else None
                self._stop_dts = limit
                packets = [pd for pd in packets if limit is not None and pd[0] <= limit]
            self._pts = sorted({p for p, _d in packets})
        return self._pts

    @property
    def index_error(self) -> str | None:
        """Why the demux pass stopped early (``None`` when it reached the end)."""
        self.frame_pts()
        return self._pts_error

    def index_complete(self) -> bool:
        """Whether the packets cover the header's frame count (within ``count_tolerance``)."""
        n = len(self.frame_pts())
        if self._pts_error is not None:
            return False
        if self._stop_dts is not None:
            return False
        return not self.header_frames or n >= self.header_frames - count_tolerance(self.header_frames)

    def keyframe_interval(self) -> int | None:
        """The longest distance between key frames in the container's index (``None``: no index)."""
        st = self._container.streams.video[0]
        try:
            entries = st.index_entries
            keys = [i for i, e in enumerate(entries) if e.is_keyframe]
        except Exception:  # noqa: BLE001 - an index PyAV cannot read: decode sequentially
            return None
        if len(keys) < 2:
            return None if not keys else max(1, len(entries))
        return max(b - a for a, b in zip(keys, keys[1:]))

    # ------------------------------------------------------------------ decoding
    def read(
        self,
        indices: Iterable[int],
        transform: Callable[[np.ndarray], Any] | None = None,
        max_gap: int | None = None,
    ) -> FrameRead:
        """Decode the frames ``indices`` (source indices into ``frame_pts()``) and nothing past the
        last of them; ``transform`` maps each (uint8 ``[H, W, 3]`` RGB, turned by the rotation with
        the reader's ``decoding.apply_rotation``) as it is decoded.

        Wanted frames at most ``max_gap`` apart (default: the index's key-frame interval; no index:
        no seeking) are decoded in one run; a run that starts further on than that seeks to the key
        frame at or before its first frame (and decodes from the start when a seek lands too late).
        A decoding failure ends its run; the frames of later runs are still tried.
        """
        import av

        apply_rotation = self.decoding.apply_rotation
        pts = self.frame_pts()
        at = {p: k for k, p in enumerate(pts)}
        wanted = sorted({int(i) for i in indices})
        if wanted and (wanted[0] < 0 or wanted[-1] >= len(pts)):
            raise ValueError(f"frame indices must lie in [0, {len(pts)}), got {wanted[0]}..{wanted[-1]}")
        gap = self.keyframe_interval() if max_gap is None else max_gap
        runs: list[list[int]] = []
        for k in wanted:
            if runs and (gap is None or k - runs[-1][-1] <= gap):
                runs[-1].append(k)
            else:
                runs.append([k])
        want = set(wanted)
        out: dict[int, Any] = {}
        errors: list[str] = []
        self._decoded = 0
        seeks = 0

        def decode_to(last: int) -> int | None:
            """Continue the decoder up to frame ``last``; the index of the first frame it gave."""
            first_seen = None
            for frame in self._frames:
                self._decoded += 1
                if self._rotation is None:
                    self._rotation = frame_rotation(frame, self._container.streams.video[0])
                k = at.get(frame.pts) if frame.pts is not None else None
                if k is None:
                    continue
                self._last = k
                if first_seen is None:
                    first_seen = k
                if k in want and k not in out:
                    arr = frame.to_ndarray(format="rgb24")
                    if apply_rotation:
                        arr = rotate_frame(arr, self._rotation)
                    out[k] = transform(arr) if transform is not None else torch.from_numpy(arr)
                if k >= last:
                    break
            return first_seen

        self._decode_errors = []
        for run in runs:
            first, last = run[0], run[-1]
            before = len(self._decode_errors)
            try:
                ahead = first - self._last - 1  # frames to decode before the run without a seek
                if ahead < 0 or (gap is not None and ahead > gap):
                    self._seek(pts[first])
                    seeks += 1
                    seen = decode_to(last)
                    if first not in out and (seen is None or seen > first):  # the seek landed too late
                        self._reopen()
                        decode_to(last)
                else:
                    decode_to(last)
            except av.FFmpegError as e:  # a failed seek
                self._decode_errors.append(_ffmpeg_reason(e, "seeking failed"))
            if len(self._decode_errors) > before:
                errors.append(f"{self._decode_errors[-1]} (frames {first}..{last} wanted)")
                self._reopen()
        rot = self._rotation or 0
        return FrameRead(out, self._decoded, errors, rot, bool(apply_rotation and rot), seeks)

    def _seek(self, pts: int) -> None:
        c = self._container
        st = c.streams.video[0]
        c.seek(pts, backward=True, any_frame=False, stream=st)
        self._frames = self._decode()
        self._last = -(1 << 62)  # unknown until a frame comes

    def _decode(self):
        """Decoded frames from the current position: packets up to ``_stop_dts``, then the frames
        the decoder still holds. A decoding failure is recorded in ``_decode_errors`` and ends
        the stream there (after the frames already complete)."""
        import av

        c = self._container
        st = c.streams.video[0]
        cc = st.codec_context
        try:
            for packet in c.demux(st):
                if (
                    self._stop_dts is not None
                    and packet.size
                    and packet.dts is not None
                    and packet.dts > self._stop_dts
                ):
                    break
                yield from packet.decode()
            else:
                return  # the demuxer's last (empty) packet flushed the decoder
        except av.FFmpegError as e:
            self._decode_errors.append(_ffmpeg_reason(e, "decoding failed"))
        try:
            yield from cc.decode(None)  # flush: the frames already complete
        except av.FFmpegError:
            pass

    def _reopen(self) -> None:
        """A fresh container positioned at the first frame (after a failure or a late seek)."""
        self.close()
        self._container = _open(self.path)
        self._start()

    def _start(self) -> None:
        self.decoding.configure(self._container.streams.video[0])
        self._frames = self._decode()
        self._last = -1  # index of the last frame the decoder gave
