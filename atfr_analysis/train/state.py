"""Checkpoints of a training run: the folder, saving (atomic, the last K kept) and exact resume.

A run lives in a folder: ``<out>`` itself, or ``<stem>.run/`` beside ``<out>`` when ``out`` names
the final checkpoint file (``m.pyth``). Its ``checkpoints/`` hold training states in PySlowFast's
format (``model_state``, ``optimizer_state``, ``scaler_state``, ``epoch``, ``cfg``) plus
``train_state``: the global step, the epoch and the batch reached in it, the epoch's running
totals, the history so far, the settings that a resumed run must share
(``TrainConfig.resume_settings``) and every rank's RNG states (torch, CUDA, numpy, Python; the
loader's clips need none: each is drawn from its own seed, and the sampler is a function of
(seed, epoch) started at the batch reached), and the fingerprint of the data it trains on (its
lists and label map: :func:`data_changes` compares them on resume). Each state has its sha256
beside it (``<state>.sha256``, written before the state is renamed into place) and is verified
before it loads: a corrupted state is refused, naming the newest earlier one that is intact.
Everything loads with ``weights_only=True``.
"""

from __future__ import annotations

import os
import pickle
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atfr_analysis.checkpoint import CheckpointError, save_torch_atomic, sha256sum
from atfr_analysis.errors import InputError, environment_failure

__all__ = [
    "RunFolder",
    "rng_state",
    "set_rng_state",
    "settings_diff",
    "save_state",
    "load_state",
    "verify_state",
    "checksum_path",
    "data_changes",
    "ResumeError",
]

_NAME = re.compile(r"checkpoint_step_(\d{9})\.pyth$")
_TMP = re.compile(r"\.tmp\d+$")  # a write in progress (or killed): ``<name>.tmp<pid>``
_FINAL_SUFFIXES = (".pyth", ".pth", ".pt")


class ResumeError(InputError):
    """The output folder holds another run (other settings, or a finished one)."""


@dataclass(frozen=True)
class RunFolder:
    root: Path  # the run's folder
    final: Path  # the final checkpoint

    @classmethod
    def of(cls, out: str | Path) -> RunFolder:
        out = Path(out)
        if out.suffix in _FINAL_SUFFIXES:
            return cls(out.parent / f"{out.stem}.run", out)
        return cls(out, out / "model.pyth")

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def states(self) -> list[Path]:
        """The training states, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(p for p in self.checkpoints.iterdir() if _NAME.match(p.name))

    def latest(self) -> Path | None:
        s = self.states()
        return s[-1] if s else None

    def state_path(self, step: int) -> Path:
        return self.checkpoints / f"checkpoint_step_{step:09d}.pyth"


def rng_state() -> dict[str, Any]:
    """This process's RNG states, as tensors and plain values (``weights_only`` loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    st = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state(st["cuda"])


def settings_diff(saved: dict, now: dict) -> list[str]:
    """``name saved -> now`` for each resume setting that differs."""
    return [f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in now if saved.get(k) != now.get(k)]


def checksum_path(state: Path) -> Path:
    """The file beside a training state that holds its sha256 (``sha256sum`` format)."""
    return state.with_name(state.name + ".sha256")


def _digests(side: Path) -> list[str] | None:
    """The sha256 digests a checksum file accepts; ``None`` when it is missing."""
    try:
        text = side.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise environment_failure(e, side, "read") from None
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def _write_checksum(path: Path, digest: str) -> None:
    """Before ``path`` is replaced: its checksum file accepts the new digest, and the one of the
    file it replaces (if that one verifies), so that a kill between the two renames leaves a state
    its checksum file accepts."""
    side = checksum_path(path)
    digests = [digest]
    if path.exists():
        old = sha256sum(path)
        if old != digest and old in (_digests(side) or []):
            digests.append(old)
    tmp = side.with_name(side.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write("".join(f"{d}  {path.name}\n" for d in digests))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, side)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def _tidy(folder: RunFolder, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` states (each with its checksum file), the checksum
    files of states that are gone and the temporary files a killed write left."""
    for old in folder.states()[:-keep_last]:
        old.unlink(missing_ok=True)
        checksum_path(old).unlink(missing_ok=True)
    states = {p.name for p in folder.states()}
    for p in folder.checkpoints.iterdir():
        if _TMP.search(p.name) or (p.name.endswith(".sha256") and p.name[: -len(".sha256")] not in states):
            p.unlink(missing_ok=True)


def save_state(folder: RunFolder, obj: dict, step: int, keep_last: int) -> Path:
    """Write a training state atomically (a temporary file, flushed to disk, renamed) with its
    sha256 beside it (written before the rename), then delete all but the newest ``keep_last``.
    A full disk is an ``EnvironmentFailure`` naming the state, and no temporary file remains."""
    try:
        folder.checkpoints.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise environment_failure(e, folder.checkpoints) from None
    path = folder.state_path(step)
    save_torch_atomic(obj, path, before_replace=lambda digest: _write_checksum(path, digest))
    _tidy(folder, keep_last)
    return path


def verify_state(path: Path) -> None:
    """Refuse (``CheckpointError``, one line) a training state whose sha256 is not the one written
    beside it, naming the newest earlier state that verifies."""
    side = checksum_path(path)
    want = _digests(side)
    if want is None:
        problem = f"has no checksum file {side.name} beside it (atfr train writes one with every state)"
    else:
        try:
            if sha256sum(path) in want:
                return
        except OSError as e:
            raise environment_failure(e, path, "read") from None
        problem = f"is corrupted: its sha256 is not the one written beside it in {side.name}"
    raise CheckpointError(f"the training state {path} {problem}; {_previous_good(path)}")


def _previous_good(path: Path) -> str:
    older = sorted((p for p in path.parent.iterdir() if _NAME.match(p.name) and p.name < path.name), reverse=True)
    for p in older:
        try:
            if sha256sum(p) in (_digests(checksum_path(p)) or []):
                return f"the previous state {p} is intact: delete {path.name} to resume from it"
        except OSError:
            continue
    return "no earlier intact state is kept: choose another --out"


def load_state(path: Path) -> dict:
    """A training state, its checksum verified first (:func:`verify_state`), ``weights_only``."""
    verify_state(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:  # untrusted or truncated
        raise CheckpointError(f"cannot read the training state {path}: {' '.join(str(exc).split())[:200]}") from None
    if not isinstance(obj, dict) or "train_state" not in obj:
        raise CheckpointError(f"{path} is not a training state of atfr train (no train_state)")
    return obj


#: what a run trains on (:func:`atfr_analysis.train.data.data_fingerprint`): the option, the count it holds
_FINGERPRINTED = {"data": ("--data", "videos"), "labels": ("--labels", "classes"), "val_data": ("--val", "videos")}


def data_changes(saved: dict | None, now: dict) -> list[str]:
    """What the data of a resumed run changed since the run started (its lists and label map under
    the same settings): one phrase per file. A validation list added or dropped is no change."""
    out = []
    for key, (flag, unit) in _FINGERPRINTED.items():
        a, b = (saved or {}).get(key), now.get(key)
        if a is None or b is None or a.get("sha256") == b.get("sha256"):
            continue
        what = "other videos or labels" if unit == "videos" else "other class names or ids"
        out.append(f"{flag} {b['path']} holds {what} than when the run started ({a[unit]} {unit} then, {b[unit]} now)")
    return out
