"""Video lists and folders, label maps, and the per-video test-view dataset.

Reading (``read_video_list``, ``read_folder``, ``read_label_map``) checks everything that can be
checked without touching the videos and raises a one-line ``ListError``/``LabelMapError`` (both
``DataError``) naming the offending line or path: an empty list, a malformed line, an unknown
label, a duplicate path, a label map with gaps or duplicates, video files that do not exist (one
error for all of them, in every list format, or skipped and recorded with ``skip_missing``). A
video that fails to decode is not an error here: ``ViewDataset`` reports it as a failed item and
the profiler records it.

``ViewDataset`` yields one item per video: the video is decoded once (up to the last frame a view
needs), and all ``views x crops`` test views are produced from it, in the order
``view = temporal_index * crops + spatial_index`` (see ``atfr_analysis.data.transforms``). A video
that fails (missing, truncated, not a video, no frames, ...) gives ``status='failed'`` and the
reason in ``error`` instead of an exception, so a ``DataLoader`` with workers keeps going.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from atfr_analysis.data import DataError, LabelMapError, ListError, one_line
from atfr_analysis.data.lists import VIDEO_EXTENSIONS, is_empty_name, is_int
from atfr_analysis.data.video import Decoding
from atfr_analysis.data.views import ViewProtocol
from atfr_analysis.errors import InputError

__all__ = [
    "VIDEO_EXTENSIONS",
    "VideoEntry",
    "read_video_list",
    "VideoList",
    "read_folder",
    "read_label_map",
    "load_views",
    "ViewDataset",
    "collate_videos",
]


@dataclass(frozen=True)
class VideoEntry:
    """One video of a list: its position in the list (``video_id``), path, class id and name."""

    video_id: int
    path: Path
    label: int
    class_name: str


# ----------------------------------------------------------------------------- label maps
def read_label_map(path: str | Path) -> dict[str, int]:
    """``{class name: id}`` from PySlowFast's JSON (``{"name": id}``, or a JSON list of names) or a
    text file with one name per line (mmaction2; line ``k`` is class ``k``).

    Ids must be exactly ``0 .. K-1``; a gap, a repeated id or a repeated name is a ``LabelMapError``.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelMapError(f"label map not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise LabelMapError(f"cannot read label map {path}: {e}") from None
    stripped = text.strip()
    if not stripped:
        raise LabelMapError(f"label map {path} is empty")
    if stripped[0] in "{[":
        return _label_map_json(path, stripped)
    return _label_map_lines(path, text)


def _label_map_json(path: Path, text: str) -> dict[str, int]:
    def pairs_hook(pairs):
        seen: dict[str, Any] = {}
        for k, v in pairs:
            if k in seen:
                raise LabelMapError(f"label map {path}: class name {k!r} appears twice")
            seen[k] = v
        return seen

    try:
        obj = json.loads(text, object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as e:
        raise LabelMapError(f"label map {path} is not valid JSON: {e}") from None
    if isinstance(obj, list):
        names = obj
        if not all(isinstance(n, str) and n.strip() for n in names):
            raise LabelMapError(f"label map {path}: a JSON list must hold class names (non-empty strings)")
        return _check_names(path, [n.strip() for n in names], [f"item {i}" for i in range(len(names))])
    if not isinstance(obj, dict):
        raise LabelMapError(f'label map {path}: expected a JSON object {{"name": id}} or a list of names')
    out: dict[str, int] = {}
    for name, v in obj.items():
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, str) and re.fullmatch(r"\d+", v.strip()):
                v = int(v)
            else:
                raise LabelMapError(f"label map {path}: class {name!r} has id {v!r}, expected an integer")
        if v < 0:
            raise LabelMapError(f"label map {path}: class {name!r} has a negative id {v}")
        if is_empty_name(name):
            at = re.search(re.escape(json.dumps(name)) + r"\s*:", text)
            line = f" line {text.count(chr(10), 0, at.start()) + 1}" if at else ""
            raise LabelMapError(f"label map {path}{line}: class id {v} has an empty name ({name!r})")
        out[name] = v
    return _check_ids(path, out)


def _label_map_lines(path: Path, text: str) -> dict[str, int]:
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    names, where = [], []
    for no, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            raise LabelMapError(f"label map {path} line {no}: empty line (one class name per line; a gap in the ids)")
        names.append(name)
        where.append(f"line {no}")
    return _check_names(path, names, where)


def _check_names(path: Path, names: list[str], where: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    first: dict[str, str] = {}
    for i, (n, w) in enumerate(zip(names, where)):
        if isinstance(n, str) and is_empty_name(n):
            raise LabelMapError(f"label map {path} {w}: an empty class name ({n!r})")
        if n in out:
            raise LabelMapError(f"label map {path} {w}: class name {n!r} repeats {first[n]}")
        out[n] = i
        first[n] = w
    if not out:
        raise LabelMapError(f"label map {path} is empty")
    return out


def _check_ids(path: Path, m: dict[str, int]) -> dict[str, int]:
    if not m:
        raise LabelMapError(f"label map {path} is empty")
    by_id: dict[int, str] = {}
    for n, i in m.items():
        if isinstance(n, str) and is_empty_name(n):
            raise LabelMapError(f"label map {path}: class id {i} has an empty name ({n!r})")
        if i in by_id:
            raise LabelMapError(f"label map {path}: id {i} is given to both {by_id[i]!r} and {n!r}")
        by_id[i] = n
    missing = [i for i in range(len(m)) if i not in by_id]
    if missing:
        raise LabelMapError(
            f"label map {path}: ids must be 0..{len(m) - 1} without gaps; missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''} (largest id {max(by_id)})"
        )
    return dict(sorted(m.items(), key=lambda kv: kv[1]))


def _as_label_map(labels) -> dict[str, int] | None:
    if labels is None:
        return None
    if isinstance(labels, (str, Path)):
        return read_label_map(labels)
    if isinstance(labels, Mapping):
        return _check_ids(Path("<labels>"), dict(labels))
    if isinstance(labels, Sequence):
        return _check_names(Path("<labels>"), list(labels), [f"item {i}" for i in range(len(labels))])
    raise TypeError(
        f"labels must be a label-map path, a {{name: id}} mapping or a list of names, got {type(labels).__name__}"
    )


# ----------------------------------------------------------------------------- lists
class VideoList(list):
    """The entries of a video list (a ``list`` of ``VideoEntry``), with the ``format`` it was read
    in (``"space"``, ``"csv"``, ``"kinetics"``; see ``atfr_analysis.data.lists``) and the rows
    ``skipped`` because their file is missing (``[(line, file name or path as written)]``, with
    ``skip_missing=True``)."""

    def __init__(self, entries=(), format: str = "space", skipped=()) -> None:
        super().__init__(entries)
        self.format = format
        self.skipped = list(skipped)


def read_video_list(
    list_path: str | Path,
    data_root: str | Path | None = None,
    labels: Mapping[str, int] | Sequence[str] | str | Path | None = None,
    skip_missing: bool = False,
) -> VideoList:
    """Entries of a video list, its format detected from the first line and every line checked
    against it before any video is opened (formats: ``atfr_analysis.data.lists``):

    * ``path label`` separated by whitespace (PySlowFast, mmaction2 video lists): exactly two
      fields, the label a class id or a class name; with a label map, a class name of it may hold
      spaces;
    * CSV ``path,label`` (a real CSV reader: quoted paths may hold commas), optional header;
    * Kinetics' annotation CSV (``label,youtube_id,time_start,time_end,split``): files
      ``{youtube_id}_{start:06d}_{end:06d}.mp4`` found under ``data_root`` (or in its class
      folder).

    In every format, rows whose file does not exist are one ``ListError`` (counted, with
    examples), raised before any video is opened, or skipped and recorded in ``.skipped`` with
    ``skip_missing=True``.

    Relative paths are taken relative to ``data_root`` (PySlowFast's ``PATH_PREFIX``), or to the
    list's own folder when ``data_root`` is ``None``. With ``labels`` (a label map: ``{name: id}``,
    a path to one, or a list of names) every label must be in it; without, integer labels are
    taken as they are (class name = the id's digits) and class names are numbered in sorted order
    (mixing ids and names is an error then).

    Raises ``ListError`` (one line, naming the line and the formats we read) for a missing or
    empty list, a line with more fields than its format allows (an mmaction2 rawframe line, a
    multi-label line, a class name with spaces without ``labels``), an unknown label, a
    duplicate path or missing video files.
    """
    from atfr_analysis.data.lists import parse_list

    list_path = Path(list_path)
    if not list_path.is_file():
        raise ListError(f"video list not found: {list_path}")
    label_map = _as_label_map(labels)
    root = Path(data_root) if data_root is not None else list_path.parent
    try:
        text = list_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ListError(f"cannot read video list {list_path}: {e}") from None

    fmt, parsed, skipped = parse_list(list_path, text, label_map, root, skip_missing=skip_missing)
    rows = [(r.line, r.path, r.label) for r in parsed]
    if not rows:
        more = f" ({len(skipped)} rows skipped: their files are missing)" if skipped else ""
        raise ListError(f"video list {list_path} is empty{more}")

    ids = _resolve_labels(list_path, rows, label_map)
    names = {v: k for k, v in label_map.items()} if label_map else None

    found: list[tuple[Path, int, str]] = []
    missing: list[tuple[int, str, Path]] = []
    seen: dict[str, int] = {}
    for (no, p, lab), cid in zip(rows, ids):
        path = Path(p).expanduser()
        if not path.is_absolute():
            path = root / path
        key = _norm(path)
        if key in seen:
            raise ListError(f"{list_path} line {no}: duplicate path {p!r} (first on line {seen[key]})")
        seen[key] = no
        cname = names[cid] if names is not None else (lab if not is_int(lab) else str(cid))
        if os.path.lexists(path):
            found.append((path, cid, cname))
        else:
            missing.append((no, p, path))
    if missing and not skip_missing:
        raise _missing_files_error(list_path, missing, len(rows), root)
    if not found:
        raise ListError(f"video list {list_path}: none of its {len(rows)} video files exists (all skipped)")
    entries = [VideoEntry(i, path, cid, cname) for i, (path, cid, cname) in enumerate(found)]
    return VideoList(entries, format=fmt, skipped=skipped + [(no, p) for no, p, _ in missing])


def _missing_files_error(list_path: Path, missing: list[tuple[int, str, Path]], total: int, root: Path) -> ListError:
    """One line for the files of a list that do not exist, before any video is opened (as the
    Kinetics reader says it of its rows): how many, the first few, what to do."""
    eg = ", ".join(
        f"line {no}: {p}" + ("" if Path(p).expanduser().is_absolute() else f" ({os.path.abspath(path)})")
        for no, p, path in missing[:3]
    )
    return ListError(
        f"{list_path}: {len(missing)} of {total} video files of the list do not exist (relative paths are taken "
        f"under {os.path.abspath(root)}), e.g. {eg}{', ...' if len(missing) > 3 else ''}; pass the right "
        "--data-root, or --skip-missing to profile the others (the skipped rows are recorded)"
    )


def _resolve_labels(list_path: Path, rows, label_map) -> list[int]:
    out: list[int] = []
    if label_map is not None:
        ids = set(label_map.values())
        for no, _p, lab in rows:
            if lab in label_map:
                out.append(label_map[lab])
            elif is_int(lab) and int(lab) in ids:
                out.append(int(lab))
            else:
                kind = "class id" if is_int(lab) else "class name"
                raise ListError(
                    f"{list_path} line {no}: unknown label {lab!r} (not a {kind} of the label map, "
                    f"{len(label_map)} classes)"
                )
        return out
    kinds = {is_int(lab) for _no, _p, lab in rows}
    if kinds == {True}:
        for no, _p, lab in rows:
            v = int(lab)
            if v < 0:
                raise ListError(f"{list_path} line {no}: negative label {lab!r}")
            out.append(v)
        return out
    if kinds == {False}:
        order = {n: i for i, n in enumerate(sorted({lab for _no, _p, lab in rows}))}
        return [order[lab] for _no, _p, lab in rows]
    no, _p, lab = next(r for r in rows if not is_int(r[2]))
    raise ListError(
        f"{list_path} line {no}: label {lab!r} is a class name while other lines give class ids; "
        "pass a label map (--labels) to mix them"
    )


def _norm(p: Path) -> str:
    import os

    return os.path.normcase(os.path.abspath(p))


def read_folder(
    root: str | Path,
    labels: Mapping[str, int] | Sequence[str] | str | Path | None = None,
) -> list[VideoEntry]:
    """Entries of a folder of class folders (Kinetics layout: ``root/<class>/<video>``; videos may
    sit deeper inside a class folder). Video extensions: mp4, avi, mkv, webm, mov (any case).

    Without ``labels`` the class folders, sorted by name, are classes ``0 .. K-1`` (empty ones
    included); with ``labels`` every class folder holding videos must be a class name of the map.
    Entries are sorted by class folder, then path. Raises ``ListError`` for a missing root, no
    video at all, a video directly in ``root``, or an unknown class folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise ListError(f"video folder not found: {root}")
    label_map = _as_label_map(labels)
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if loose:
        raise ListError(
            f"{root}: video {loose[0]!r} lies directly in the folder; expected one sub-folder per class "
            f"(root/<class>/<video>)"
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    videos: dict[str, list[Path]] = {}
    for c in classes:
        vs = sorted(
            p
            for p in (root / c).rglob("*")
            if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".")
        )
        videos[c] = vs
    if not any(videos.values()):
        raise ListError(f"video folder {root} holds no video ({', '.join(VIDEO_EXTENSIONS)}) in class folders")
    if label_map is not None:
        for c in classes:
            if videos[c] and c not in label_map:
                raise ListError(f"{root / c}: class folder {c!r} is not a class name of the label map")
        ids = label_map
    else:
        ids = {c: i for i, c in enumerate(classes)}
    entries: list[VideoEntry] = []
    for c in classes:
        for p in videos[c]:
            entries.append(VideoEntry(len(entries), p, ids[c], c))
    return entries


# ----------------------------------------------------------------------------- views
def load_views(
    path: str | Path,
    spec: Any,
    protocol: ViewProtocol | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    checksums: bool = False,
    decoding: Decoding = Decoding(),
) -> tuple[list[torch.Tensor], dict[str, list], dict[str, Any]]:
    """The test views of ``path`` as PySlowFast's PyAV test path takes them
    (``atfr_analysis.data.views.sample_views``: only the frames the views need are decoded).

    ``spec``: an ``InputSpec``, a model of the zoo or a registry name; ``protocol``: views, crops,
    short side and crop (``None``: the model's, ``ViewProtocol.of``). ``dtype``: float32
    (normalised) or uint8 (to be normalised on the device with ``transforms.normalize_views``).
    ``decoding``: FFmpeg threads and rotation.

    Returns the pathway tensors ``[V_ok, 3, T_p, crop, crop]`` of the views that decoded, their
    metadata lists in row order (``SampledViews.meta``: ``view``, ``temporal_index``,
    ``spatial_index``, ``crop_position``, ``frame_start``, ``frame_end``, ``clip_start``,
    ``clip_end``, ``frame_indices``, ``resized_hw``, ``crop_box``; plus ``checksum`` with
    ``checksums``) and facts about the video: ``num_frames``, ``fps``, ``width``, ``height``,
    ``decoded``, ``decode_s``, ``transform_s``, ``rotation``, ``rotated``, ``partial``, ``error``,
    ``failed_views`` (``[(view, reason)]`` of the views that did not decode), ``protocol``
    (``{views, crops, short_side, crop}``). Raises ``VideoError`` when no view decodes.
    """
    from atfr_analysis.data.views import sample_views

    got = sample_views(path, spec, protocol, dtype=dtype, checksums=checksums, decoding=decoding)
    meta = got.meta()
    if checksums:
        meta["checksum"] = [v.checksum for v in got.ok_views]
    v = got.video
    facts = {
        "num_frames": v.num_frames,
        "fps": v.fps,
        "width": v.width,
        "height": v.height,
        "decoded": v.decoded,
        "decode_s": v.seconds.get("decode"),
        "transform_s": v.seconds.get("views", 0.0) + v.seconds.get("checksum", 0.0),
        "rotation": v.rotation,
        "rotated": v.rotated,
        "partial": v.partial,
        "error": v.error,
        "failed_views": [(x.view, x.error) for x in got.views if not x.ok],
        "protocol": v.protocol.to_dict(),
    }
    return got.pathways, meta, facts


#: the video facts of ``load_views`` an item of ``ViewDataset`` carries (``None`` when failed)
_ITEM_FACTS = (
    "num_frames",
    "fps",
    "decode_s",
    "transform_s",
    "rotation",
    "rotated",
    "partial",
    "failed_views",
    "protocol",
)


class ViewDataset(torch.utils.data.Dataset):
    """One item per video with all its test views (PySlowFast's ``views x crops`` protocol, as
    ``load_views`` / ``sample_views`` take them).

    ``spec``: an ``InputSpec``, a model of the zoo or a registry name; ``protocol``: views, crops,
    short side and crop (``None``: the model's, ``ViewProtocol.of``). ``dtype``: float32
    (normalised) or uint8 (a quarter of the memory, normalised on the device by the consumer). An
    item is a dict:

    ``index``, ``video_id``, ``path``, ``label``, ``class_name``
        the entry;
    ``status``, ``error``
        ``'ok'`` and ``None``, or ``'failed'`` and a one-line reason (the item is returned, never
        raised);
    ``pathways``
        list of tensors ``[V_ok, 3, T_p, S, S]`` (one per pathway, slow first) of the views that
        decoded (all ``views * crops`` unless the video is partial), or ``None`` when failed;
    ``views``
        per-view metadata lists of those views, in row order: ``view`` (``temporal_index * crops
        + spatial_index``), ``temporal_index``, ``spatial_index`` (0 .. crops-1), ``crop_position``
        (PySlowFast's spatial_idx: 0, 1 = centre, 2), ``frame_start``, ``frame_end`` (first and last
        sampled frame), ``clip_start``, ``clip_end`` (PySlowFast's float window),
        ``frame_indices`` (fastest pathway), ``resized_hw``, ``crop_box`` (``[y0, x0, y1, x1]``);
        ``None`` when failed;
    ``num_frames``, ``fps``, ``decode_s``, ``transform_s``, ``rotation``, ``rotated``, ``partial``,
    ``failed_views`` (``[(view, reason)]``), ``protocol``
        facts about the video (``None`` when failed).

    Use ``collate_videos`` as the ``DataLoader``'s ``collate_fn`` (batches stay lists of items).
    ``decoding``: FFmpeg decoder threading (``Decoding(thread_type=None)`` decodes on one thread,
    advisable with many loader workers) and rotation.
    """

    def __init__(
        self,
        entries: Sequence[VideoEntry],
        spec: Any,
        protocol: ViewProtocol | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        decoding: Decoding = Decoding(),
    ) -> None:
        from atfr_analysis.data.views import model_spec

        self.entries = list(entries)
        self.spec = model_spec(spec)  # workers need the InputSpec only
        self.protocol = ViewProtocol.of(self.spec) if protocol is None else protocol
        if dtype not in (torch.float32, torch.uint8):
            raise InputError(f"dtype must be torch.float32 or torch.uint8, got {dtype}")
        self.dtype = dtype
        self.decoding = decoding

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        e = self.entries[i]
        item: dict[str, Any] = {
            "index": i,
            "video_id": e.video_id,
            "path": str(e.path),
            "label": e.label,
            "class_name": e.class_name,
            "status": "ok",
            "error": None,
            "pathways": None,
            "views": None,
        }
        item.update({k: None for k in _ITEM_FACTS})
        try:
            pathways, meta, facts = load_views(
                e.path, self.spec, self.protocol, dtype=self.dtype, decoding=self.decoding
            )
        except DataError as err:
            item.update(status="failed", error=str(err))
        except Exception as err:  # noqa: BLE001 - a broken video must not stop the run
            item.update(status="failed", error=one_line(f"{type(err).__name__}: {err} ({e.path})"))
        else:
            item.update(pathways=pathways, views=meta, **{k: facts[k] for k in _ITEM_FACTS})
            if facts["partial"] and facts["error"]:
                item["error"] = one_line(str(facts["error"]))
        return item


def collate_videos(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``DataLoader`` collate function of ``ViewDataset``: the items as they are, in a list."""
    return list(batch)


def loader_context(workers: int):
    """The multiprocessing context of the decoding workers: ``forkserver`` (a fresh process forks
    them), never a fork of this process. A fork of a process whose threads (FFmpeg's frame
    threads, exact batching's pool, BLAS) hold a lock at that moment can hang in the child: seen
    here as a DataLoader worker stuck in PyAV's decode."""
    if workers <= 0:
        return None
    import multiprocessing

    return multiprocessing.get_context("forkserver")
