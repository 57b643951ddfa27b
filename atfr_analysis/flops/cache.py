"""A persistent, file-level cache of counted costs, shared by processes, ranks and shards.

One JSON file per key (``<dir>/costs/<model>/<sha256 of the key>.json``), written atomically
(a temporary file in the same folder, then ``os.replace``): concurrent writers of one key write the
same content and a reader sees a whole file or none; no lock, no server. A file whose stored key
differs from the asked one, or that does not parse, is a miss (and is overwritten).

``CostCache(dirs=[run_dir, user_dir])`` looks the folders up in order; an entry found in a later
folder is also written to the earlier ones (the run folder keeps every count it used), a new
count goes to all of them. A folder that cannot be written is used read-only (``stats``).

The key holds everything a cost depends on: model name, its dataclass config, a fingerprint of its
parameter shapes and of the source code of the model and of the counter, the input shapes, the
part and signature counted, the conventions, the counter backend and its version (with torch's or
fvcore's version).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CostCache", "user_cache_dir", "key_digest", "code_fingerprint"]

CACHE_SCHEMA = 1
_OFF = {"", "0", "off", "none", "no", "false"}


def user_cache_dir() -> Path | None:
    """``$ATFR_CACHE_DIR`` (``off`` / ``none`` / ``0`` / empty: no user cache), else
    ``$XDG_CACHE_HOME/atfr-analysis``, else ``~/.cache/atfr-analysis``."""
    env = os.environ.get("ATFR_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in _OFF else Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "atfr-analysis"


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def key_digest(key: dict) -> str:
    return hashlib.sha256(_canonical(key).encode()).hexdigest()


_CODE_CACHE: dict[tuple[str, ...], str] = {}


def code_fingerprint(extra_files: Iterable[str | Path] = ()) -> str:
    """sha256 (16 hex) of the package's architecture and counting code (``models/``, ``sgs/``,
    ``flops/count.py``, ``flops/meta.py``, ``flops/cost.py``) and of ``extra_files``."""
    here = Path(__file__).resolve().parent
    pkg = here.parent
    files = sorted(
        set(
            [
                *pkg.joinpath("models").glob("*.py"),
                *pkg.joinpath("sgs").glob("*.py"),
                here / "count.py",
                here / "meta.py",
                here / "cost.py",
            ]
            + [Path(f).resolve() for f in extra_files]
        )
    )
    k = tuple(str(f) for f in files)
    hit = _CODE_CACHE.get(k)
    if hit is None:
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode())
            try:
                h.update(f.read_bytes())
            except OSError:
                h.update(b"?")
        hit = _CODE_CACHE[k] = h.hexdigest()[:16]
    return hit


@dataclass
class CostCache:
    """File-level cost cache over ``dirs`` (looked up in order; ``None`` entries are skipped)."""

    dirs: Sequence[str | Path | None] = ()
    stats: dict = field(default_factory=lambda: {"loaded": 0, "stored": 0, "missed": 0, "write_errors": 0})

    def __post_init__(self) -> None:
        self.dirs = [Path(d) for d in self.dirs if d is not None]
        self._readonly: set[Path] = set()
        self._held: dict[Path, list] = {}

    def defer(self, base: str | Path) -> None:
        """Keep what would be written into ``base`` in memory until :meth:`release` (a run folder
        that is not known yet to be this run's: nothing is written into a folder it refuses)."""
        self._held.setdefault(Path(base), [])

    def release(self) -> None:
        """Write what :meth:`defer` held, and write into those folders from now on."""
        held, self._held = self._held, {}
        for base, items in held.items():
            for key, value in items:
                self._write(base, key, value)

    @classmethod
    def user(cls, run_dir: str | Path | None = None) -> CostCache:
        """``[run_dir, user_cache_dir()]`` (either may be absent)."""
        return cls(dirs=[run_dir, user_cache_dir()])

    def _path(self, base: Path, key: dict) -> Path:
        model = str(key.get("model") or "model").replace(os.sep, "_") or "model"
        return base / "costs" / model / f"{key_digest(key)}.json"

    @staticmethod
    def _read(path: Path, key: dict):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(rec, dict) or rec.get("key") != json.loads(_canonical(key)):
            return None
        return rec.get("value")

    def _write(self, base: Path, key: dict, value: Any) -> None:
        if base in self._readonly:
            return
        if base in self._held:
            self._held[base].append((key, value))
            return
        path = self._path(base, key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(_canonical({"schema": CACHE_SCHEMA, "key": key, "value": value}))
            os.replace(tmp, path)
            self.stats["stored"] += 1
        except OSError:
            self._readonly.add(base)
            self.stats["write_errors"] += 1
            try:
                tmp.unlink()
            except OSError:
                pass

    def get(self, key: dict):
        """The stored value of ``key`` or ``None``; copied into the folders before the one it was found in."""
        for i, base in enumerate(self.dirs):
            value = self._read(self._path(base, key), key)
            if value is not None:
                for earlier in self.dirs[:i]:
                    self._write(earlier, key, value)
                self.stats["loaded"] += 1
                return value
        self.stats["missed"] += 1
        return None

    def put(self, key: dict, value: Any) -> None:
        for base in self.dirs:
            self._write(base, key, value)
