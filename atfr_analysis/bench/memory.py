"""Peak memory: the process's peak resident set (``getrusage``) after each phase, and on CUDA the
peak of ``torch.cuda.max_memory_allocated`` within each phase."""

from __future__ import annotations

import resource
import sys
from pathlib import Path
from typing import Any

import torch

__all__ = ["peak_rss_mib", "own_peak_rss_mib", "PeakMemory"]

#: ru_maxrss is in KiB on Linux, in bytes on macOS
_RSS_UNIT = 1 if sys.platform == "darwin" else 1024


def peak_rss_mib(children: bool = False) -> float:
    """Peak resident set size in MiB of this process (or of its largest waited-for child)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss * _RSS_UNIT / 2**20


def own_peak_rss_mib() -> float:
    """Peak RSS in MiB of this process's own memory image since it started its program.

    Linux keeps ``ru_maxrss`` across ``execve``: a child started from a large parent reports at
    least the parent's size. ``VmHWM`` of ``/proc/self/status`` belongs to the current image; it is
    used where it exists, ``getrusage`` elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        pass
    return peak_rss_mib()


class PeakMemory:
    """``start(phase)`` / ``stop()`` around each phase; ``result()`` for the result's ``memory``."""

    def __init__(self, dev: torch.device):
        self.dev = dev
        self.rss_after: dict[str, float] = {}
        self.cuda_peak: dict[str, float] = {}
        self._phase: str | None = None
        self.rss_start = peak_rss_mib()

    def start(self, phase: str) -> None:
        self._phase = phase
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
            torch.cuda.reset_peak_memory_stats(self.dev)

    def stop(self) -> None:
        if self._phase is None:
            return
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
            self.cuda_peak[self._phase] = torch.cuda.max_memory_allocated(self.dev) / 2**20
        self.rss_after[self._phase] = peak_rss_mib()
        self._phase = None

    def result(self) -> dict[str, Any]:
        return {
            "peak_rss_mib": peak_rss_mib(),
            "peak_rss_mib_at_start": self.rss_start,
            "peak_rss_mib_after": dict(self.rss_after),
            "children_peak_rss_mib": peak_rss_mib(children=True),
            "cuda_max_allocated_mib": dict(self.cuda_peak) if self.dev.type == "cuda" else None,
            "method": "peak resident set (getrusage ru_maxrss) of the bench process, a high-water mark read "
            "after each phase; children: the largest child process waited for (loader workers, the profile "
            "runs); CUDA: torch.cuda.max_memory_allocated within each phase",
        }
