"""Video list formats: detected from the file's first line, then every line checked against it.

Formats read (``LIST_FORMATS``; a list holds one video per line, blank lines and ``#`` comments
are skipped):

``space``
    PySlowFast's and mmaction2's video lists: ``path label``, separated by whitespace, exactly two
    fields (as PySlowFast reads them: paths hold no spaces; use a CSV list for those). The label
    is a class id (an integer) or a class name; a class name that holds spaces needs a label map
    (``--labels``: in ``a.mp4 air drumming`` all that follows the path must then be a class name
    of the map); without one such a line has too many fields.
``csv``
    ``path,label`` read by a real CSV reader (quotes, commas and spaces in paths), exactly two
    fields, an optional header line (``path,label``, ``video,class``, ...). Labels are class ids
    or class names.
``kinetics``
    Kinetics' own annotation CSV (header ``label,youtube_id,time_start,time_end,split``; other
    columns such as ``is_cc`` are ignored): each row is the file
    ``{youtube_id}_{time_start:06d}_{time_end:06d}.mp4`` that the Kinetics downloaders write,
    looked up under the data root, then in its class folder ``<label>/`` (the ActivityNet
    crawler's layout), then ``<label with spaces as _>/`` (a variant of it); another video
    extension with the same stem is accepted. The class is the ``label`` column. Rows whose file
    is found nowhere are one error (counted, with examples), or skipped and recorded.

Not read, with an error that says so: mmaction2 rawframe lists (``frame_dir total_frames label``:
frame folders, not videos) and multi-label lines (``a.mp4 1 4 7``).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from atfr_analysis.data import ListError

__all__ = ["LIST_FORMATS", "FORMATS_WE_READ", "ListRow", "parse_list", "kinetics_file_name", "is_empty_name"]

LIST_FORMATS = ("space", "csv", "kinetics")
FORMATS_WE_READ = (
    "we read 'path label' (space-separated, as PySlowFast and mmaction2 video lists), "
    "CSV 'path,label' (optional header), and Kinetics annotation CSVs (label,youtube_id,time_start,time_end,split)"
)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov")
HEADER_PATH = {"path", "video", "video_path", "filename", "file", "name", "clip"}
HEADER_LABEL = {"label", "labels", "label_id", "class", "class_name", "class_id", "target"}
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")
_INT = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class ListRow:
    """One video of a list: its line number, the path as written (or as found, for Kinetics) and
    the label as written."""

    line: int
    path: str
    label: str


def is_empty_name(name: str) -> bool:
    """A class name of nothing but spaces and quotes (``""``: how many tools write an empty one)."""
    return not name.strip().strip("\"'").strip()


def is_int(s: str) -> bool:
    return bool(_INT.fullmatch(s))


def _short(s: str, n: int = 80) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


def _data_lines(text: str) -> list[tuple[int, str]]:
    return [(no, raw) for no, raw in enumerate(text.splitlines(), 1) if raw.strip() and not raw.strip().startswith("#")]


def _csv_fields(line: str) -> list[str]:
    try:
        return [f.strip() for f in next(csv.reader([line], skipinitialspace=True))]
    except (csv.Error, StopIteration):
        return [line]


def detect_format(first: str) -> str:
    """The format of a list from its first data line (see the module's docstring)."""
    fields = [f.lower() for f in _csv_fields(first)]
    if set(KINETICS_COLUMNS) <= set(fields):
        return "kinetics"
    if len(fields) >= 2:
        # a comma in a space-separated line's path: 'a,b.mp4 3' ends in an integer as a space
        # list, but not as a CSV one
        tokens = first.split()
        if len(tokens) >= 2 and is_int(tokens[-1]) and not is_int(fields[-1]):
            return "space"
        return "csv"
    return "space"


def parse_list(
    list_path: Path,
    text: str,
    label_map: Mapping[str, int] | None,
    root: Path,
    skip_missing: bool = False,
) -> tuple[str, list[ListRow], list[tuple[int, str]]]:
    """``(format, rows, skipped)`` of a list's text; ``skipped``: Kinetics rows whose file is
    missing (line, file name), when ``skip_missing``. Raises ``ListError`` naming the line."""
    lines = _data_lines(text)
    if not lines:
        return "space", [], []
    fmt = detect_format(lines[0][1])
    if fmt == "kinetics":
        rows, skipped = _kinetics_rows(list_path, text, label_map, root, skip_missing)
        return fmt, rows, skipped
    parse = _csv_row if fmt == "csv" else _space_row
    rows = []
    for i, (no, raw) in enumerate(lines):
        row = parse(list_path, no, raw.strip(), label_map)
        if i == 0 and row.path.lower() in HEADER_PATH and row.label.lower() in HEADER_LABEL:
            continue  # a header line
        if is_empty_name(row.label):
            raise ListError(f"{list_path} line {no}: an empty class name ({row.label!r})")
        rows.append(row)
    return fmt, rows, []


def _space_row(list_path: Path, no: int, line: str, label_map) -> ListRow:
    tokens = line.split()
    where = f"{list_path} line {no}"
    if len(tokens) < 2:
        raise ListError(
            f"{where}: malformed line {_short(line)!r} (expected 'path label' or 'path,label'; {FORMATS_WE_READ})"
        )
    path, rest = tokens[0], tokens[1:]
    if len(rest) == 1:
        return ListRow(no, path, rest[0])
    if label_map is not None:
        name = " ".join(rest)
        if name in label_map:
            return ListRow(no, path, name)
    ints = all(is_int(t) for t in rest)
    if ints and len(rest) == 2 and Path(path).suffix.lower() not in VIDEO_EXTENSIONS:
        raise ListError(
            f"{where}: {_short(line)!r} looks like an mmaction2 rawframe list line (frame_dir total_frames label): "
            f"frame folders are not videos; {FORMATS_WE_READ}"
        )
    if ints:
        raise ListError(
            f"{where}: {_short(line)!r} gives {len(rest)} labels; multi-label lists are not read (one class per "
            f"video); {FORMATS_WE_READ}"
        )
    hint = "" if label_map is not None else "; a class name with spaces needs --labels"
    raise ListError(
        f"{where}: {len(tokens)} fields in {_short(line)!r}, a space-separated list has 2 (path label): "
        f"a path with spaces needs a CSV list{hint}; {FORMATS_WE_READ}"
    )


def _csv_row(list_path: Path, no: int, line: str, label_map) -> ListRow:
    fields = _csv_fields(line)
    where = f"{list_path} line {no}"
    if len(fields) != 2:
        raise ListError(
            f"{where}: {len(fields)} field(s) in {_short(line)!r}, a CSV list has 2 (path,label; quote a path "
            f"that holds a comma); {FORMATS_WE_READ}"
        )
    path, label = fields
    if not path or not label:
        raise ListError(f"{where}: malformed line {_short(line)!r} (an empty path or label)")
    return ListRow(no, path, label)


# ----------------------------------------------------------------------------- Kinetics
def kinetics_file_name(youtube_id: str, start: int, end: int, ext: str = ".mp4") -> str:
    """The file name the Kinetics downloaders write for a row: ``{id}_{start:06d}_{end:06d}.mp4``."""
    return f"{youtube_id}_{start:06d}_{end:06d}{ext}"


def _seconds(list_path: Path, no: int, col: str, v: str) -> int:
    try:
        f = float(v)
    except ValueError:
        f = float("nan")
    if not f == f or f != int(f) or f < 0:
        raise ListError(f"{list_path} line {no}: {col} {v!r} is not a whole number of seconds")
    return int(f)


def _find(root: Path, label: str, name: str) -> Path | None:
    folders = [root, root / label]
    if " " in label:
        folders.append(root / label.replace(" ", "_"))
    stem = name[: -len(".mp4")]
    for ext in VIDEO_EXTENSIONS:  # .mp4 first
        for d in folders:
            p = d / (stem + ext)
            if p.is_file():
                return p
    return None


def _kinetics_rows(list_path: Path, text: str, label_map, root: Path, skip_missing: bool):
    # line numbers of the CSV records (a quoted field may span lines: count them as the reader does)
    reader = csv.reader(io.StringIO(text))
    header = None
    rows: list[ListRow] = []
    missing: list[tuple[int, str, str]] = []
    for rec in reader:
        no = reader.line_num
        if not rec or not "".join(rec).strip() or rec[0].lstrip().startswith("#"):
            continue
        rec = [f.strip() for f in rec]
        if header is None:
            header = [h.lower() for h in rec]
            col = {h: i for i, h in enumerate(header)}
            continue
        if len(rec) != len(header):
            raise ListError(
                f"{list_path} line {no}: {len(rec)} fields, the header names {len(header)} "
                f"({','.join(header)}); quote a class name that holds a comma"
            )
        label = rec[col["label"]]
        yid = rec[col["youtube_id"]]
        if not label or not yid:
            raise ListError(f"{list_path} line {no}: an empty label or youtube_id")
        start = _seconds(list_path, no, "time_start", rec[col["time_start"]])
        end = _seconds(list_path, no, "time_end", rec[col["time_end"]])
        name = kinetics_file_name(yid, start, end)
        found = _find(root, label, name)
        if found is None:
            missing.append((no, name, label))
            continue
        rows.append(ListRow(no, os.path.abspath(found), label))
    if missing and not skip_missing:
        total = len(rows) + len(missing)
        eg = ", ".join(f"line {no}: {lab}/{name}" for no, name, lab in missing[:3])
        raise ListError(
            f"{list_path}: {len(missing)} of {total} videos of the Kinetics list are not under {root} "
            f"(looked for <root>/<file>, <root>/<label>/<file>, <root>/<label_with_underscores>/<file>), e.g. {eg}; "
            "pass the right --data-root, or --skip-missing to profile the others (the skipped rows are recorded)"
        )
    return rows, [(no, name) for no, name, _lab in missing]
