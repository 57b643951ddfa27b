"""The profiling log: a run folder of ``run.json`` plus Parquet part files.

Schema version 1: the columns of both tables, their dtypes and the row builders are in
``atfr_analysis.profile.schema`` (and the README's section "The log"):

``views-*.parquet`` — one row per (video, view): the video, the view's place and frames, its
    status and error, one ``bins.<layer>`` column per SGS layer, the three GMACs counts, its
    top-5 and its full softmax vector.
``videos-*.parquet`` — one row per video: the video, its status and error, ``views_ok``, the
    summed softmax ``scores_sum`` (PySlowFast's TestMeter) and ``top1_id``.

Part files are named ``{views,videos}-<shard i>of<n>-<start time>-<random>-<seq>.parquet`` and
written whole (to a hidden temporary name, then renamed), the views file before the videos file: a
killed run never leaves half a part, and a video counts as logged once its videos row is on disk
(views rows without one are ignored and redone by ``--resume``). ``load_run`` reads every part of
every shard, keeps the last copy of a (video_id, view) row and orders rows by (video_id, view).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from atfr_analysis.errors import InputError, environment_failure
from atfr_analysis.profile.schema import (
    SCHEMA_VERSION,
    conform,
    to_arrow,
    video_column_names,
    videos_frame,
    views_frame,
)

__all__ = [
    "SCHEMA_VERSION",
    "RUN_JSON",
    "RunError",
    "IncompleteRunError",
    "incomplete_run_message",
    "is_run",
    "read_meta",
    "write_meta",
    "create_meta",
    "write_parts",
    "load_run",
    "load_videos",
    "done_video_ids",
    "failed_video_ids",
]

RUN_JSON = "run.json"


class RunError(InputError):
    """A folder that is not a (readable) run; one-line message."""


class IncompleteRunError(InputError):
    """A run that has not logged every video of its list (a profile still writing, or interrupted)."""


def incomplete_run_message(name: str, logged: int, total: int) -> str:
    """The one line that refuses an unfinished run."""
    return (
        f"run {name} is not finished: {logged} of {total} videos logged (a profile still writing, or "
        "interrupted; `atfr profile --resume` finishes it); --allow-incomplete reports it marked INCOMPLETE"
    )


def is_run(path: str | Path) -> bool:
    return (Path(path) / RUN_JSON).is_file()


def read_meta(run_dir: str | Path) -> dict[str, Any]:
    p = Path(run_dir) / RUN_JSON
    if not Path(run_dir).is_dir():
        raise RunError(f"not a run folder: {run_dir} does not exist")
    if not p.is_file():
        raise RunError(f"not a run folder: {run_dir} has no {RUN_JSON}")
    try:
        meta = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{p} is not valid JSON: {e}") from None
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise RunError(f"{p}: schema_version {meta.get('schema_version')!r}, this version reads {SCHEMA_VERSION}")
    return meta


def _atomic_write_bytes(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:  # a full disk, a read-only file system: name the file (a write's error has no path)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise environment_failure(e, path) from e


def _dumps(meta: dict[str, Any]) -> str:
    return json.dumps(meta, indent=1, default=str)


def write_meta(run_dir: str | Path, meta: dict[str, Any], name: str = RUN_JSON) -> Path:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    p = run_dir / name
    _atomic_write_bytes(p, lambda t: t.write_text(_dumps(meta)))
    return p


def create_meta(run_dir: str | Path, meta: dict[str, Any]) -> bool:
    """Write ``run.json`` only if the folder has none (atomically, race-free between shards).

    Returns ``False`` when a ``run.json`` is already there (left untouched).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    p = run_dir / RUN_JSON
    tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(_dumps(meta))
    except OSError as e:
        raise environment_failure(e, p) from e
    try:
        os.link(tmp, p)  # fails if run.json exists: exactly one creator wins
        return True
    except FileExistsError:
        return False
    except OSError:  # pragma: no cover - a file system without hard links
        try:
            with open(p, "x") as f:
                f.write(_dumps(meta))
            return True
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)


def write_parts(
    run_dir: str | Path, view_rows: list[dict], video_rows: list[dict], layers: list[str], tag: str
) -> None:
    """Append one part (views and videos of whole videos) to a run, atomically."""
    if not video_rows:
        return
    import pyarrow.parquet as pq

    run_dir = Path(run_dir)
    views = to_arrow(views_frame(view_rows, layers), "views")
    vids = to_arrow(videos_frame(video_rows), "videos")
    # videos part last: a video counts as done only once its views are on disk
    _atomic_write_bytes(run_dir / f"views-{tag}.parquet", lambda t: pq.write_table(views, t))
    _atomic_write_bytes(run_dir / f"videos-{tag}.parquet", lambda t: pq.write_table(vids, t))


def _part_order(path: Path) -> tuple[str, str]:
    """Parts in the order they were written: by the run's start time in the name, then the name
    (a later run's copy of a row -- a retried failure -- wins, whatever its shard layout)."""
    fields = path.stem.split("-")
    return (fields[2] if len(fields) > 2 else "", path.name)


def _read_parts(run_dir: Path, prefix: str) -> pd.DataFrame | None:
    files = sorted(run_dir.glob(f"{prefix}-*.parquet"), key=_part_order)
    if not files:
        return None
    frames = []
    for f in files:
        try:
            frames.append(pd.read_parquet(f))
        except Exception as e:  # noqa: BLE001 - a damaged part: name it in one line
            msg = " ".join(str(e).split())[:200]
            raise RunError(f"cannot read log part {f}: {type(e).__name__}: {msg}") from None
    frames = [f for f in frames if len(f)] or frames[:1]
    return pd.concat(frames, ignore_index=True)


def done_video_ids(run_dir: str | Path) -> set[int]:
    """Videos whose every view is written (their ``videos`` part exists)."""
    df = _read_parts(Path(run_dir), "videos")
    return set() if df is None else set(int(v) for v in df["video_id"])


def failed_video_ids(run_dir: str | Path) -> set[int]:
    """Videos whose latest videos row says ``failed`` (``profile(..., retry_failed=True)`` redoes them)."""
    df = _read_parts(Path(run_dir), "videos")
    if df is None:
        return set()
    last = df.drop_duplicates(subset=["video_id"], keep="last")
    return set(int(v) for v in last.loc[last["status"] != "ok", "video_id"])


def _finish(df: pd.DataFrame, meta: dict, run_dir: Path, keys: list[str]) -> pd.DataFrame:
    df = df.drop_duplicates(subset=keys, keep="last").sort_values(keys).reset_index(drop=True)
    df.attrs["meta"] = meta
    df.attrs["run_dir"] = str(run_dir)
    return df


def load_run(path: str | Path, require_complete: bool = False) -> pd.DataFrame:
    """The views table of a run (all parts of all shards), ordered by (video_id, view).

    ``df.attrs["meta"]`` holds ``run.json``; ``df.attrs["run_dir"]`` the folder. A run that has not
    logged every video of its list (``run.json``'s ``num_videos``) is read as far as it goes, or
    refused with :class:`IncompleteRunError` when ``require_complete``
    (``atfr_analysis.analysis.RunAnalysis(log).complete`` tells either way).
    """
    run_dir = Path(path)
    meta = read_meta(run_dir)
    done = done_video_ids(run_dir)
    df = _read_parts(run_dir, "views")
    if df is None:
        df = views_frame([], list(meta.get("sgs_layers", {})))
    else:
        # rows of a part whose videos part never landed (killed in between) are not part of the log
        df = conform(df[df["video_id"].isin(done)].copy(), "views")
    total = meta.get("num_videos")
    if require_complete and isinstance(total, int) and len(done) < total:
        raise IncompleteRunError(incomplete_run_message(run_dir.name, len(done), total))
    return _finish(df, meta, run_dir, ["video_id", "view"])


def load_videos(path: str | Path) -> pd.DataFrame:
    """The per-video table of a run (summed softmax scores per video), ordered by video_id."""
    run_dir = Path(path)
    meta = read_meta(run_dir)
    df = _read_parts(run_dir, "videos")
    df = pd.DataFrame(columns=video_column_names()) if df is None else conform(df, "videos")
    return _finish(df, meta, run_dir, ["video_id"])
