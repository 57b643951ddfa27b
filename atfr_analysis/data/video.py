"""Video decoding with PyAV: probe a file, decode its frames into uint8 ``[T, H, W, 3]`` (RGB).

Frames are converted as PySlowFast's PyAV decoder does (``rgb24`` through FFmpeg's swscale).
Decoding is sequential from the first frame and stops after the last frame asked for; only the
frames asked for are converted to RGB (every frame up to the last one must still be decoded, as
inter-coded frames depend on each other).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import numpy as np
import torch

from atfr_analysis.data import EmptyVideoError, VideoDecodeError, VideoNotFoundError

__all__ = ["VideoInfo", "DecodedVideo", "FrameSet", "probe", "decode_video", "read_frames", "DEFAULT_THREAD_TYPE"]

#: FFmpeg's decoder threading used by default ("AUTO": frame and slice threads, as many as cores)
DEFAULT_THREAD_TYPE = "AUTO"


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
    size: tuple[int, int] | None = None,
    transform: Callable[[np.ndarray], torch.Tensor] | None = None,
    thread_type: str | None = DEFAULT_THREAD_TYPE,
    thread_count: int = 0,
    stack: bool = True,
    check_count: bool = True,
) -> FrameSet:
    """Decode ``path`` from its first frame and keep the frames asked for.

    ``indices``: video frame numbers to keep (any order, duplicates allowed; kept once each, in
    ascending order); ``None`` keeps every frame; a callable gets the header's ``VideoInfo`` once the
    file is open and returns either (no second open to probe). Decoding stops after ``max(indices)`` or before
    frame ``stop``, whichever comes first; frames beyond the video's end are simply absent (compare
    ``index``); with ``indices=None``, ``start`` skips the conversion of the frames before it.
    ``size=(width, height)`` has FFmpeg's swscale resize each kept frame as it converts it to RGB
    (area interpolation). ``transform`` maps each kept frame (uint8 ``[H, W, 3]`` ndarray) to a tensor as it
    is decoded (e.g. a resize), so that full-size frames need not be held; ``stack`` stacks the
    kept frames into one tensor ``[K, ...]``.

    Raises ``VideoError`` when the file is missing, not a video, fails to decode before the last
    frame needed, or has no frame at all; and, with ``check_count``, when the stream ends clearly
    short of the frame count its header lists (a truncated file whose index survived; the
    tolerance, ``count_tolerance``, allows for the frames an edit list may drop).
    """
    import av

    path = Path(path)
    container = _open(path)
    kept: list = []
    index: list[int] = []
    n = 0
    eof = False
    to_rgb = {"format": "rgb24"}
    if size is not None:
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
        if thread_type:
            st.codec_context.thread_type = thread_type
            st.codec_context.thread_count = int(thread_count)
        if last is not None and last < 0:
            return FrameSet(_stack(kept, stack), index, info.fps, 0, False, info)
        try:
            for frame in container.decode(st):
                if (n in wanted) if wanted is not None else n >= start:
                    arr = frame.to_ndarray(**to_rgb)
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
    if eof and check_count and info.frames_known and n < info.frames - count_tolerance(info.frames):
        raise VideoDecodeError(
            path, f"truncated or corrupt: the stream ends after {n} of the {info.frames} frames its header lists"
        )
    try:
        frames = _stack(kept, stack)
    except RuntimeError as e:  # frames of different sizes
        raise VideoDecodeError(path, f"frame size changes within the stream ({e})") from None
    return FrameSet(frames, index, info.fps, n, eof, info)


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
        path, None, stop, start=start, thread_type=thread_type, thread_count=thread_count, stack=False
    )
    frames = fs.frames
    if not frames:
        raise EmptyVideoError(path, f"no frame at or after {start} (the video has {fs.num_decoded})")
    return DecodedVideo(torch.stack(frames), fs.fps)
