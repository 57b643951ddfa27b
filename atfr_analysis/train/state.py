"""Checkpoints of a training run: the folder, saving (atomic, the last K kept) and exact resume.

A run lives in a folder: ``<out>`` itself, or ``<stem>.run/`` beside ``<out>`` when ``out`` names
the final checkpoint file (``m.pyth``). Its ``checkpoints/`` hold training states in PySlowFast's
format (``model_state``, ``optimizer_state``, ``scaler_state``, ``epoch``, ``cfg``) plus
``train_state``: the global step, the epoch and the batch reached in it, the epoch's running
totals, the history so far, the settings that a resumed run must share
(``TrainConfig.resume_settings``) and every rank's RNG states (torch, CUDA, numpy, Python; the
loader's clips need none: each is drawn from its own seed, and the sampler is a function of
(seed, epoch) started at the batch reached). Everything loads with ``weights_only=True``.
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

from atfr_analysis.errors import InputError

__all__ = ["RunFolder", "rng_state", "set_rng_state", "settings_diff", "save_state", "load_state", "ResumeError"]

_NAME = re.compile(r"checkpoint_step_(\d{9})\.pyth$")
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


def save_state(folder: RunFolder, obj: dict, step: int, keep_last: int) -> Path:
    """Write a training state atomically (a temporary file, flushed to disk, renamed), then delete
    all but the newest ``keep_last``."""
    folder.checkpoints.mkdir(parents=True, exist_ok=True)
    path = folder.state_path(step)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    for old in folder.states()[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


def load_state(path: Path) -> dict:
    from atfr_analysis.checkpoint import CheckpointError

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:  # untrusted or truncated
        raise CheckpointError(f"cannot read the training state {path}: {' '.join(str(exc).split())[:200]}") from None
    if not isinstance(obj, dict) or "train_state" not in obj:
        raise CheckpointError(f"{path} is not a training state of atfr train (no train_state)")
    return obj
