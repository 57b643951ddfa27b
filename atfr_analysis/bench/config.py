"""Settings of one bench run (``BenchConfig``) and the keys of its result."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from atfr_analysis.errors import InputError

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

    model: str | None = None  # default: the checkpoint's model, else DEFAULT_MODEL
    device: str = "auto"
    batch_size: int | None = None  # cpu 8, cuda 32
    clips: int | None = None  # cpu 2 batches, cuda 2 batches
    crop: int | None = None  # cpu 112, cuda the model's test crop
    frames: int | None = None  # clip frames (fast pathway); default the model's
    precision: str = "fp32"
    checkpoint: str | None = None  # a checkpoint file, or "demo": the shipped slow_tiny_atfr
    data: str | None = None  # a video list or class folder (its test views as clips), or "demo"
    data_root: str | None = None
    reps: int | None = None  # timed rounds (None: enough for min_time seconds per mode, see resolved)
    min_time: float | None = None  # with reps=None: timed seconds per mode at least (cpu 10, cuda 3)
    min_reps: int | None = None  # with reps=None: at least this many rounds (cpu 5, cuda 10)
    max_reps: int = 50  # with reps=None: at most this many rounds
    warmup: int | None = None  # untimed rounds first: cpu 1, cuda 3
    trace_clips: int = 2  # clips re-traced with fvcore
    check_clips: int = 4  # clips compared with their batch-1 output
    decode_videos: int | None = None  # videos per decoding pass: cpu 4, cuda 8
    decode_workers: tuple[int, ...] = (0, 1, 2)  # () skips the decoding phase
    decode_reps: int = 1  # timed passes per worker count
    decode_names: tuple[str, ...] | None = None  # sample videos to decode (default all four)
    cuda_graphs: bool | None = None  # exact batching with CUDA graphs (cuda default: on)
    cudnn_benchmark: bool = True
    threads: int | None = None  # torch intra-op threads (default: torch's)
    profile_videos: int | None = (
        None  # profile throughput: sample videos profiled (cpu 5, cuda 8; the first is the warm-up)
    )
    profile_batch_size: int | None = None  # profile throughput: views per batch (default: the profile's for the device)
    profile_views: int | None = None  # temporal views per video (default: the model's)
    profile_crops: int | None = None  # spatial crops per view (cpu 1, cuda the model's)
    profile_workers: tuple[int, ...] | None = (
        None  # a profile run per loader worker count (cpu 0,1; cuda 0,4); () skips
    )
    #: the profile runs' short side and crop (default: the model's protocol; smaller: a quicker run, e.g. tests)
    profile_crop: int | None = None
    profile_timeout: float = 600.0  # seconds one profile run may take
    profile_ops: int = 0  # >0: torch.profiler table of the top ops of one exact and one baseline pass
    train_processes: int = 2  # training phase on the CPU: also time 2 gloo processes (DDP) when >= 2; 0 skips the phase
    train_steps: int | None = None  # training phase: timed steps (after one untimed): cpu 3, cuda 10
    seed: int = 0
    quiet: bool = False

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
