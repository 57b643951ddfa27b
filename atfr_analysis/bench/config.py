"""Settings of one bench run (``BenchConfig``) and the keys of its result."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from atfr_analysis.errors import InputError
from atfr_analysis.settings import option

if TYPE_CHECKING:
    import torch

__all__ = ["BenchConfig", "RESULT_KEYS", "DEFAULT_MODEL", "CPU_CROP", "PRECISIONS", "parse_workers"]

DEFAULT_MODEL = "slowfast_4x16_r50_atfr"
CPU_CROP = 112
PRECISIONS = ("fp32", "bf16", "fp16")

#: keys every result holds (``--json`` prints one object with them)
RESULT_KEYS = (
    "device",
    "device_name",
    "torch",
    "model",
    "batch_size",
    "clips",
    "crop",
    "frames",
    "precision",
    "overhead",
    "speedup_exact_vs_baseline",
    "flop_ratio",
    "efficiency",
    "speedup_exact_vs_padded",
    "gmacs_lookup_vs_fvcore_trace",
    "decoding",
    "bins",
    "gmacs",
    "times",
    "phases",
    "exact_check",
    "settings",
    "notes",
    "date",
    "command",
)


def parse_workers(s: str, option: str = "--decode-workers") -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``; ``""`` -> ``()`` (the phase is skipped)."""
    try:
        w = tuple(int(v) for v in str(s).split(",") if v.strip() != "")
    except ValueError:
        raise InputError(f"{option} must be comma-separated integers, got {s!r}") from None
    if any(v < 0 for v in w) or (not w and str(s).strip()):
        raise InputError(f"{option} must be comma-separated integers >= 0, got {s!r}")
    return w


@dataclass(frozen=True)
class BenchConfig:
    """Settings of one bench run, checked when built; ``None`` means the device's default (see
    ``resolved``)."""

    model: str | None = option(
        None, "--model", help="an _atfr registry name (default: the checkpoint's, else slowfast_4x16_r50_atfr)"
    )
    device: str = option("auto", "--device", help="auto, cpu or cuda")
    batch_size: int | None = option(None, "--batch-size", help="clips per forward (default: cpu 8, cuda 32)")
    clips: int | None = option(None, "--clips", help="clips measured (default: 2 batches)")
    crop: int | None = option(None, "--crop", help="spatial size (default: cpu 112, cuda the model's test crop)")
    frames: int | None = option(None, "--frames", help="clip frames (fast pathway); default the model's")
    precision: str = option("fp32", "--precision", help="fp32, or on CUDA bf16/fp16 (GMACs do not change)")
    checkpoint: str | None = option(
        None, "--checkpoint", help="trained weights (default: random weights); 'demo': the shipped slow_tiny_atfr"
    )
    data: str | None = option(
        None, "--data", help="a video list or class folder: its test views as the clips; 'demo': the demo's test split"
    )
    data_root: str | None = option(
        None, "--data-root", help="prefix for the list's relative paths", cli_type=Path | None, parse=str
    )
    reps: int | None = option(
        None, "--reps", help="timed rounds (default: enough for --min-time, at least cpu 5 / cuda 10, at most 50)"
    )
    min_time: float | None = option(
        None, "--min-time", help="with the default --reps: timed seconds per mode at least (cpu 10, cuda 3)"
    )
    min_reps: int | None = None  # with reps=None: at least this many rounds (cpu 5, cuda 10)
    max_reps: int = 50  # with reps=None: at most this many rounds
    warmup: int | None = option(None, "--warmup", help="untimed rounds first (default: cpu 1, cuda 3)")
    trace_clips: int = option(2, "--trace-clips", help="clips re-traced with fvcore")
    check_clips: int = option(4, "--check-clips", help="clips compared with their batch-1 outputs")
    decode_videos: int | None = option(
        None, "--decode-videos", help="videos per decoding pass (default: cpu 4, cuda 8)"
    )
    decode_workers: tuple[int, ...] = option(
        (0, 1, 2),
        "--decode-workers",
        help="loader worker counts, comma-separated ('' skips decoding)",
        cli_type=str,
        parse=parse_workers,
        shown="0,1,2",
    )
    decode_reps: int = option(1, "--decode-reps", help="timed decoding passes per worker count")
    decode_names: tuple[str, ...] | None = None  # sample videos to decode (default all four)
    cuda_graphs: bool | None = option(
        None, "--cuda-graphs/--no-cuda-graphs", help="exact batching replays CUDA graphs (default: on with CUDA)"
    )
    cudnn_benchmark: bool = option(True, "--cudnn-benchmark/--no-cudnn-benchmark", help="cuDNN autotuning (CUDA)")
    threads: int | None = option(None, "--threads", help="torch intra-op threads")
    profile_videos: int | None = option(
        None,
        "--profile-videos",
        help="profile throughput: sample videos profiled (default: cpu 5, cuda 8; the first is the steady state's "
        "warm-up)",
    )
    profile_batch_size: int | None = option(
        None,
        "--profile-batch-size",
        help="profile throughput: views per batch (default: the profile's default on the device)",
    )
    profile_views: int | None = option(
        None, "--profile-views", help="profile throughput: temporal views per video (default: the model's)"
    )
    profile_crops: int | None = option(
        None, "--profile-crops", help="profile throughput: spatial crops, 1 or 3 (default: cpu 1, cuda the model's)"
    )
    profile_workers: tuple[int, ...] | None = option(
        None,
        "--profile-workers",
        help="a profile run per loader worker count, comma-separated (default: cpu 0,1, cuda 0,4; '' skips)",
        cli_type=str | None,
        parse=lambda s: parse_workers(s, "--profile-workers"),
    )
    #: the profile runs' short side and crop (default: the model's protocol; smaller: a quicker run, e.g. tests)
    profile_crop: int | None = None
    profile_timeout: float = 600.0  # seconds one profile run may take
    profile_ops: int = option(0, "--profile-ops", help="add the top N operators of an exact and a baseline pass")
    train_processes: int = 2  # training phase on the CPU: also time 2 gloo processes (DDP) when >= 2; 0 skips the phase
    train_steps: int | None = None  # training phase: timed steps (after one untimed): cpu 3, cuda 10
    seed: int = option(0, "--seed", help="seed of the weights and the clips")
    quiet: bool = option(False, "--quiet", help="no progress on stderr")

    def __post_init__(self) -> None:
        """One-line errors for settings no run can use, when the config is built (the device's
        own rule, bf16/fp16 on CUDA only, is :meth:`validate`'s)."""
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in (
            "batch_size",
            "clips",
            "reps",
            "min_reps",
            "max_reps",
            "decode_videos",
            "decode_reps",
            "profile_videos",
            "profile_views",
            "profile_batch_size",
            "profile_crop",
            "train_steps",
        ):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise InputError(f"{name} must be >= 1, got {v}")
        if self.min_reps is not None and self.min_reps > self.max_reps:
            raise InputError(f"min_reps ({self.min_reps}) must not exceed max_reps ({self.max_reps})")
        if self.min_time is not None and not self.min_time > 0:
            raise InputError(f"min_time must be > 0 seconds, got {self.min_time}")
        if any(v is not None and v < 0 for v in (self.warmup, self.trace_clips, self.check_clips)):
            raise InputError("warmup, trace_clips and check_clips must be >= 0")
        if any(w < 0 for w in self.decode_workers) or any(w < 0 for w in self.profile_workers or ()):
            raise InputError("decode and profile workers must be >= 0")
        if self.profile_crops not in (None, 1, 3):
            raise InputError(f"--profile-crops must be 1 or 3, got {self.profile_crops}")
        if self.train_processes < 0:
            raise InputError(f"train_processes must be >= 0, got {self.train_processes}")
        if not self.profile_timeout > 0:
            raise InputError(f"profile_timeout must be > 0 seconds, got {self.profile_timeout}")

    def resolved(self, dev: torch.device) -> BenchConfig:
        """A copy with every device default filled in (checked again)."""
        cuda = dev.type == "cuda"
        batch = self.batch_size or (32 if cuda else 8)
        defaults = {
            "batch_size": batch,
            "clips": 2 * batch,
            "min_time": 3.0 if cuda else 10.0,
            "min_reps": 10 if cuda else 5,
            "warmup": 3 if cuda else 1,
            "decode_videos": 8 if cuda else 4,
            "cuda_graphs": cuda,
            "profile_videos": 8 if cuda else 5,
            "profile_crops": None if cuda else 1,
            "profile_workers": (0, 4) if cuda else (0, 1),
            "train_steps": 10 if cuda else 3,
        }
        return dataclasses.replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def validate(self, dev: torch.device) -> None:
        """The device's rule: bf16 / fp16 are offered on CUDA only (the rest is checked when built)."""
        if self.precision != "fp32" and dev.type != "cuda":
            raise InputError("--precision bf16/fp16 is offered on CUDA only")
