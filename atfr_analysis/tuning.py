"""How inference runs on a device: the settings ``atfr profile`` and ``atfr bench`` share.

One home for the choices that make a run fast and lean, so that what ``bench`` measures is what
``profile`` does:

- ``default_batch_size(device)``: views per forward pass when none is asked for. On CUDA 8
  (PySlowFast's test batch per GPU). On the CPU 1: ``atfr bench`` measures the exact forward's
  seconds per clip by batch size at the profile's crop (its "batch sizes" line): on the CPU batch 1
  was the fastest or within a few per cent of it (SlowFast 4x16 at 256, X3D-S at 160) and batch 8
  the slowest, while every extra view in a batch holds its activations at once (the profile's
  peak memory).
- ``default_workers(device)``: DataLoader decoding processes: on CUDA this local rank's share of the
  node's cores less one for the main process, at most 8; on the CPU none: there decoding and the
  model share the same cores, and ``atfr bench``'s profile runs measured a loader worker as
  slower than none on a 2-core machine (the decode and model CPU seconds exceed what the cores
  can overlap: the bench's "CPU bound").
- ``ffmpeg_threads(workers)``: FFmpeg's decoder threads per decoding process, a share of the local
  rank's cores (torchrun's ``LOCAL_WORLD_SIZE``), never the whole node's count per rank.
- ``decoder_niceness(device)``: on the CPU the decoding processes share the cores with the
  model's intra-op threads; a decoder that preempts one of them stalls the whole parallel operator
  (the other threads wait for it). The loader workers therefore run at a lower priority there
  (niceness ``DECODER_NICENESS_CPU``): they take the cores the model leaves idle, and the model
  wins when both want one. On CUDA (the model waits on the device) they keep the normal priority.
  ``lower_priority`` is the workers' init function.
- ``configure_inference(model, device)``: cuDNN autotuning and CUDA-graph replay of exact
  batching on CUDA (both on by default, as in ``bench``; nothing changes on the CPU).
- ``HeapRelease``: on the CPU, glibc keeps memory freed by PyTorch's worker threads in per-thread
  arenas, so a long run's resident set ratchets up batch after batch; ``HeapRelease.after_video()``
  hands the free pages back (``malloc_trim``), at most once every ``min_interval`` seconds. A no-op
  where there is no glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from collections.abc import Mapping

import torch

__all__ = [
    "default_batch_size",
    "default_workers",
    "local_cores",
    "affinity_cores",
    "ffmpeg_threads",
    "configure_inference",
    "HeapRelease",
    "CUDA_BATCH_SIZE",
    "CPU_BATCH_SIZE",
    "MAX_CUDA_WORKERS",
    "decoder_niceness",
    "lower_priority",
    "DECODER_NICENESS_CPU",
]

CUDA_BATCH_SIZE = 8
CPU_BATCH_SIZE = 1
MAX_CUDA_WORKERS = 8
DECODER_NICENESS_CPU = 10


def _local_ranks(env: Mapping[str, str]) -> int:
    try:
        return max(1, int(env.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def affinity_cores() -> int:
    """The cores this process may run on (its affinity set; the CPU count where there is none)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def local_cores(env: Mapping[str, str] | None = None, cores: int | None = None) -> int:
    """This process's share of the cores it may run on: the node's (its affinity set) divided
    among torchrun's ``LOCAL_WORLD_SIZE`` ranks on the node; at least 1."""
    env = os.environ if env is None else env
    cores = affinity_cores() if cores is None else cores
    return max(1, cores // _local_ranks(env))


def default_batch_size(device: torch.device | str) -> int:
    """Views per forward pass when ``--batch-size`` is not given (see the module's text)."""
    return CUDA_BATCH_SIZE if torch.device(device).type == "cuda" else CPU_BATCH_SIZE


def default_workers(device: torch.device | str, env: Mapping[str, str] | None = None, cores: int | None = None) -> int:
    """DataLoader decoding workers when ``--workers`` is not given (see the module's text)."""
    mine = local_cores(env, cores)
    if torch.device(device).type == "cuda":
        return max(1, min(MAX_CUDA_WORKERS, mine - 1))
    return 0


def ffmpeg_threads(workers: int, env: Mapping[str, str] | None = None, cores: int | None = None) -> int:
    """FFmpeg decoder threads per decoding process: this local rank's share of the node's cores
    (``LOCAL_WORLD_SIZE`` ranks on the node, torchrun's variable), split over its ``workers``
    loader processes. 0 (FFmpeg's choice: every core) for a lone process without workers."""
    env = os.environ if env is None else env
    if _local_ranks(env) == 1 and workers == 0:
        return 0
    return max(1, local_cores(env, cores) // max(1, workers))


def decoder_niceness(device: torch.device | str) -> int:
    """How much lower the loader workers' priority is (``os.nice`` increment; 0: unchanged)."""
    return DECODER_NICENESS_CPU if torch.device(device).type == "cpu" else 0


def lower_priority(niceness: int, worker_id: int = 0) -> None:
    """A loader worker's init function (``functools.partial(lower_priority, n)``): its own
    priority lowered by ``niceness``; where that is refused, the worker runs on unchanged."""
    if niceness > 0 and hasattr(os, "nice"):
        try:
            os.nice(niceness)
        except OSError:  # pragma: no cover - a platform that refuses it
            pass


def configure_inference(
    model, device: torch.device | str, cuda_graphs: bool = True, cudnn_benchmark: bool = True
) -> dict:
    """The CUDA settings of an inference run (``bench`` and ``profile`` both call this): cuDNN
    autotuning and, for exact batching, one CUDA graph per signature and group size. Nothing
    changes on other devices. Returns what was set (for ``run.json`` and the bench report)."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
    if hasattr(model, "exact_cuda_graphs"):
        model.exact_cuda_graphs = bool(cuda_graphs and cuda)
    return {
        "cuda_graphs": bool(cuda_graphs and cuda),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if cuda else None,
    }


def _malloc_trim():
    if os.name != "posix":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapRelease:
    """Hands freed heap pages back to the system after a video (glibc's ``malloc_trim(0)``).

    ``enabled``: by default on the CPU only (on CUDA the activations live in the device's caching
    allocator). A call costs tens of milliseconds on a SlowFast-sized heap; it runs at most once
    every ``min_interval`` seconds, so its share of a run stays small. ``stats`` counts the calls
    and their seconds."""

    def __init__(self, device: torch.device | str, enabled: bool | None = None, min_interval: float = 2.0):
        if enabled is None:
            enabled = torch.device(device).type == "cpu"
        self._trim = _malloc_trim() if enabled else None
        self.min_interval = float(min_interval)
        self._last = time.monotonic()
        self.stats = {"calls": 0, "seconds": 0.0}

    @property
    def active(self) -> bool:
        return self._trim is not None

    def after_video(self, force: bool = False) -> bool:
        """Release now if enabled and ``min_interval`` has passed (or ``force``); True if it ran."""
        if self._trim is None:
            return False
        now = time.monotonic()
        if not force and now - self._last < self.min_interval:
            return False
        self._trim(0)
        done = time.monotonic()
        self.stats["calls"] += 1
        self.stats["seconds"] += done - now
        self._last = done
        return True
