"""``ProfileConfig``: every setting of a profiling run, checked when it is made.

The command line builds one from its options, ``atfr_analysis.profile(ckpt, model, data, out,
**opts)`` from its keywords; ``run_profile(config)`` runs it. A bad value is a one-line
:class:`~atfr_analysis.errors.InputError` naming the option, raised before anything is read.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from atfr_analysis.errors import InputError
from atfr_analysis.models.base import BATCHING_MODES
from atfr_analysis.profile.classes import parse_class_subset
from atfr_analysis.runtime import resolve_shard

__all__ = ["ProfileConfig", "PRECISIONS", "CROPS"]

PRECISIONS = ("fp32", "bf16", "fp16")
CROPS = (1, 3)
#: fields that are no option of ``atfr profile`` (left out of the equivalent command line)
_NOT_OPTIONS = ("checkpoint", "model", "data", "out", "command", "stop_after", "flush_seconds")


@dataclass(frozen=True)
class ProfileConfig:
    """A profiling run: ``checkpoint`` (as registry model ``model``) on the videos of ``data``
        into the run folder ``out``.

        ``data``: a PySlowFast-style list (``path label`` or ``path,label`` per line; relative paths
        under ``data_root``) or a folder of class folders; ``labels``: a label map, which must name
        exactly the head's classes unless ``class_subset`` gives the head output of each of its
        entries (``"0,5,7"``, a file of indices, or a sequence). Each video gives ``views x crops``
        rows (PySlowFast's test protocol; ``None``: the model config's); each view's frames are scaled
    to ``short_side`` and cropped to ``crop`` (``None``: the model's protocol, see
    ``atfr_analysis.data.views.view_protocol``: 3 crops: both the test crop; 1 crop: PySlowFast's
    1-crop rule, X3D-S 182 and 160). Frames are used as decoded (PySlowFast); ``apply_rotation``
    turns them by their rotation metadata. Decoding runs in ``workers``
        DataLoader processes, inference on ``device`` in batches of ``batch_size`` views (``None``:
        the device's defaults of :mod:`atfr_analysis.tuning`, resolved by :meth:`for_device` when the
        run starts; ``cuda_graphs`` and ``cudnn_benchmark`` apply on CUDA)
        (``batching="exact"``: every view's result as if alone; ``"padded"``: the official code's
        padding), in ``precision`` (bf16/fp16 on CUDA only). Parts are flushed every ``flush_every``
        videos or ``flush_seconds`` seconds. ``skip_missing``: rows of the list (any format) whose
        file is missing are skipped (counted in ``run.json``) instead of refusing the list.

        ``resume`` continues the run in ``out`` (videos already logged are skipped; with
        ``retry_failed`` the videos logged as failed are tried again, their new rows replacing the
        failed ones); ``shard="i/n"`` (or torchrun's ``RANK``/``WORLD_SIZE``) profiles every n-th
        video from the i-th. ``max_failed_fraction``: the share of failed videos (of those logged)
        above which the run ends as a partial failure (exit status 3; all failed is always status 4).
        ``allow_nonfinite_weights``: load a checkpoint whose weights hold NaN or inf (refused by
        default); its views whose scores are not finite are then ``failed`` rows (never a result).
        ``cross_check``: count the first K signatures met again with fvcore (the reference counter)
        and record the comparison in ``run.json`` (``costs``). ``stop_after`` stops after that many videos of
        this call (tests of resumption);
        ``command``: the command line recorded in ``run.json`` (default: the equivalent
        ``atfr profile`` line of this config).
    """

    checkpoint: str | Path
    model: str
    data: str | Path
    out: str | Path
    data_root: str | Path | None = None
    labels: str | Path | None = None
    class_subset: str | Path | Sequence[int] | None = None
    skip_missing: bool = False
    views: int | None = None
    crops: int | None = None
    short_side: int | None = None
    crop: int | None = None
    apply_rotation: bool = False
    batching: str = "exact"
    batch_size: int | None = None
    workers: int | None = None
    device: str = "auto"
    precision: str = "fp32"
    resume: bool = False
    retry_failed: bool = False
    shard: str | None = None
    allow_missing: str | None = None
    allow_nonfinite_weights: bool = False
    max_failed_fraction: float = 0.0
    quiet: bool = False
    flush_every: int = 16
    flush_seconds: float = 30.0
    stop_after: int | None = None
    cross_check: int = 0
    cuda_graphs: bool = True
    cudnn_benchmark: bool = True
    command: Sequence[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> ProfileConfig:
        """Check every value (one-line ``InputError``); ``class_subset`` becomes a tuple of ints."""
        if self.batch_size is not None:
            _int_at_least("--batch-size", self.batch_size, 1)
        if self.workers is not None:
            _int_at_least("--workers", self.workers, 0)
        _int_at_least("flush_every", self.flush_every, 1)
        if self.views is not None:
            _int_at_least("--views", self.views, 1)
        if self.crops is not None and self.crops not in CROPS:
            raise InputError(f"--crops must be 1 or 3, got {self.crops}")
        if self.short_side is not None:
            _int_at_least("--short-side", self.short_side, 1)
        if self.crop is not None:
            _int_at_least("--crop", self.crop, 1)
        if self.short_side is not None and self.crop is not None and self.crop > self.short_side:
            raise InputError(f"--crop {self.crop} is larger than --short-side {self.short_side}")
        if self.batching not in BATCHING_MODES:
            raise InputError(f"--batching must be one of {', '.join(BATCHING_MODES)}, got {self.batching!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.retry_failed and not self.resume:
            raise InputError("--retry-failed needs --resume (it retries the failed videos of an existing run)")
        if self.allow_missing not in (None, "sgs"):
            raise InputError(f"--allow-missing (allow_missing) must be 'sgs', got {self.allow_missing!r}")
        try:
            f = float(self.max_failed_fraction)
        except (TypeError, ValueError):
            f = -1.0
        if not 0.0 <= f <= 1.0:
            raise InputError(f"--max-failed-fraction must be a number from 0 to 1, got {self.max_failed_fraction!r}")
        object.__setattr__(self, "max_failed_fraction", f)  # frozen: the checked value, as a float
        if not (isinstance(self.flush_seconds, (int, float)) and self.flush_seconds > 0):
            raise InputError(f"flush_seconds must be > 0, got {self.flush_seconds!r}")
        if self.stop_after is not None:
            _int_at_least("stop_after", self.stop_after, 0)
        _int_at_least("cross_check", self.cross_check, 0)
        if not isinstance(self.model, str) or not self.model:
            raise InputError(f"--model must be a registry name, got {self.model!r}")
        if not (
            isinstance(self.device, str) and (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"))
        ):
            raise InputError(f"--device must be one of auto, cpu, cuda (or cuda:K), got {self.device!r}")
        if self.shard:
            resolve_shard(self.shard)  # its spelling; RANK / WORLD_SIZE are read when the run starts
        object.__setattr__(self, "class_subset", parse_class_subset(self.class_subset))
        return self

    def for_device(self, device) -> ProfileConfig:
        """A copy with the batch size and loader workers that were left to the device filled in
        (``tuning.default_batch_size`` / ``default_workers``); what was asked for stays."""
        from atfr_analysis.tuning import default_batch_size, default_workers

        return self.replace(
            batch_size=default_batch_size(device) if self.batch_size is None else self.batch_size,
            workers=default_workers(device) if self.workers is None else self.workers,
        )

    def replace(self, **changes) -> ProfileConfig:
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    def command_line(self) -> list[str]:
        """The ``atfr profile`` command line equivalent to this config (for ``run.json``): the
        positional arguments and every option that differs from its default."""
        cmd = [
            "atfr",
            "profile",
            str(self.checkpoint),
            "--model",
            str(self.model),
            "--data",
            str(self.data),
            "--out",
            str(self.out),
        ]
        for f in dataclasses.fields(self):
            if f.name in _NOT_OPTIONS:
                continue
            v = getattr(self, f.name)
            if v == f.default or v is None:
                continue
            flag = "--" + f.name.replace("_", "-")
            if v is False:  # a switch that is on by default
                cmd.append("--no-" + flag[2:])
                continue
            if f.name == "class_subset":
                v = ",".join(map(str, v))
            cmd += [flag] if v is True else [flag, str(v)]
        return cmd


def _int_at_least(name: str, v, low: int) -> None:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
        raise InputError(f"{name} must be an integer >= {low}, got {v!r}")
