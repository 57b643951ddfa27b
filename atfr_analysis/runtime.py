"""Where a run executes: the torch device, and this process's shard of a video list.

``resolve_device`` is the one parser of ``--device`` (profile, bench, train); ``resolve_shard``
the one parser of ``--shard i/n`` and of torchrun's ``RANK`` / ``WORLD_SIZE``. Both raise a
one-line :class:`~atfr_analysis.errors.InputError`. ``sigterm_as_interrupt`` lets a long run
flush what it holds when a scheduler stops it.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from atfr_analysis.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["Shard", "resolve_shard", "parse_shard", "resolve_device", "sigterm_as_interrupt"]


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` takes the videos at list positions ``k % count == index``.

    ``distributed``: a torchrun rank (a rendezvous to wait for the other ranks at the end), as
    opposed to one task of a job array.
    """

    index: int = 0
    count: int = 1
    distributed: bool = False

    def takes(self, position: int) -> bool:
        return position % self.count == self.index


def resolve_shard(shard: str | None) -> Shard:
    """``"i/n"``; else the torchrun environment (``RANK``, ``WORLD_SIZE``); else the whole list."""
    if shard:
        try:
            i, n = (int(v) for v in str(shard).split("/"))
        except ValueError:
            raise InputError(f"--shard must look like i/n (e.g. 0/4), got {shard!r}") from None
        if not (n >= 1 and 0 <= i < n):
            raise InputError(f"--shard i/n needs 0 <= i < n, got {shard!r}")
        return Shard(i, n, False)
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        try:
            i, n = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        except ValueError:
            raise InputError(
                f"RANK / WORLD_SIZE must be integers, got {os.environ['RANK']!r} / {os.environ['WORLD_SIZE']!r}"
            ) from None
        if not (n >= 1 and 0 <= i < n):
            raise InputError(f"RANK={i} WORLD_SIZE={n}: need 0 <= RANK < WORLD_SIZE")
        # a rendezvous (torchrun) to wait for the other ranks at the end; else shards of a job array
        return Shard(i, n, n > 1 and "MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ)
    return Shard()


def parse_shard(shard: str | None) -> tuple[int, int]:
    """``(i, n)`` of :func:`resolve_shard`."""
    s = resolve_shard(shard)
    return s.index, s.count


def resolve_device(device: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:K``; under torchrun ``cuda``
    means this rank's GPU (``LOCAL_RANK``)."""
    import torch

    device = str(device)
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise InputError(f"--device must be one of auto, cpu, cuda (or cuda:K), got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not device.startswith("cuda"):
        return torch.device(device)
    if not torch.cuda.is_available():
        raise InputError(f"--device {device} asked for, but no CUDA device is available")
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"--device must be one of auto, cpu, cuda (or cuda:K), got {device!r}") from None
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM (a scheduler's kill, torchrun stopping its workers) raises KeyboardInterrupt in the
    main thread, so that a run flushes what it buffered before the process ends; the previous
    handler is restored on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"terminated by signal {signum}")

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):  # pragma: no cover
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
