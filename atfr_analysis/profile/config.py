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
from atfr_analysis.profile.classes import parse_class_subset
from atfr_analysis.runtime import resolve_shard
from atfr_analysis.settings import REQUIRED, argument, option, options_of

__all__ = ["ProfileConfig", "PRECISIONS", "CROPS"]

PRECISIONS = ("fp32", "bf16", "fp16")
CROPS = (1, 3)
#: the settings the equivalent command line writes first, whatever their value
_NOT_OPTIONS = ("checkpoint", "model", "data", "out")


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

    checkpoint: str | Path = argument(help="PySlowFast .pyth/.pt checkpoint, a state dict, or ours", cli_type=Path)
    model: str = option(REQUIRED, "--model", help="registry name, e.g. slowfast_4x16_r50_atfr")
    data: str | Path = option(
        REQUIRED, "--data", help="PySlowFast list ('path label' per line) or a folder of class folders", cli_type=Path
    )
    out: str | Path = option(REQUIRED, "--out", help="run folder to write (run.json + Parquet parts)", cli_type=Path)
    data_root: str | Path | None = option(
        None, "--data-root", help="prefix for the list's relative paths", cli_type=Path
    )
    labels: str | Path | None = option(
        None,
        "--labels",
        help='label map: JSON {"name": id} or one name per line; it must name every output of the head, unless '
        "--class-subset says which ones its entries are",
        cli_type=Path,
    )
    class_subset: str | Path | Sequence[int] | None = option(
        None,
        "--class-subset",
        help="the head output of each label-map entry, in map order: a comma list (e.g. 0,5,7) or a file of "
        "indices; scores and predictions are then over those outputs only",
        cli_type=str,
    )
    skip_missing: bool = option(
        False,
        "--skip-missing",
        help="skip the list's rows whose file is missing (recorded in run.json) instead of refusing the list",
    )
    views: int | None = option(
        None, "--views", help="temporal clips per video (default: the model config's, 10 for Kinetics models)"
    )
    crops: int | None = option(None, "--crops", help="spatial crops per clip: 3 or 1 (default: the model config's)")
    short_side: int | None = option(
        None,
        "--short-side",
        help="scale each frame's short side to S (default: the model's protocol: 3 crops: the test crop; 1 crop: "
        "PySlowFast's 1-crop rule, X3D-S 182)",
    )
    crop: int | None = option(
        None,
        "--crop",
        help="square crop size C of each view (default: the model's protocol: 3 crops: the test crop; 1 crop: "
        "PySlowFast's 1-crop test size, X3D-S 160); the GMACs follow it",
    )
    apply_rotation: bool = option(
        False,
        "--apply-rotation",
        help="turn frames by their rotation metadata (default: as decoded, as PySlowFast; rotated videos are "
        "counted in the summary)",
    )
    batching: str = option("exact", "--batching", help="exact (per-clip results) or padded (official)")
    batch_size: int | None = option(
        None,
        "--batch-size",
        help="views per forward pass (default: 8 on CUDA, 1 on the CPU, where bench measures batch 1 as fast as any)",
    )
    workers: int | None = option(
        None,
        "--workers",
        help="DataLoader decoding processes (default: on CUDA this rank's cores less one, at most 8; on the CPU 0: "
        "decoding and the model share the cores)",
    )
    device: str = option("auto", "--device", help="auto, cpu or cuda")
    precision: str = option("fp32", "--precision", help="fp32, or on CUDA bf16/fp16 (GMACs do not change)")
    resume: bool = option(False, "--resume", help="continue the run in --out: videos already logged are skipped")
    retry_failed: bool = option(False, "--retry-failed", help="with --resume: try the videos logged as failed again")
    shard: str | None = option(
        None,
        "--shard",
        help="i/n: profile the videos at list positions k with k % n == i (job arrays; torchrun sets it from "
        "RANK/WORLD_SIZE)",
    )
    allow_missing: str | None = option(None, "--allow-missing", help="'sgs': baseline weights into an _atfr model")
    allow_nonfinite_weights: bool = option(
        False,
        "--allow-nonfinite-weights",
        help="load a checkpoint whose weights hold NaN or inf (refused by default), e.g. to inspect a diverged "
        "model; views with non-finite scores are then failed rows",
    )
    max_failed_fraction: float = option(
        0.0,
        "--max-failed-fraction",
        help="share of the logged videos allowed to fail (0..1) before the run exits with status 3; a run where "
        "every video failed exits with 4",
    )
    quiet: bool = option(False, "--quiet", help="no progress display (for logs); the summary is still printed")
    flush_every: int = option(
        16, "--flush-every", help="write a part file every N videos (and every 30 s)", hidden=True
    )
    flush_seconds: float = 30.0
    stop_after: int | None = None
    cross_check: int = option(
        0,
        "--cross-check",
        help="count the first K signatures met again with fvcore (the reference counter) and record the comparison "
        "in run.json",
    )
    cuda_graphs: bool = option(
        True,
        "--cuda-graphs/--no-cuda-graphs",
        help="CUDA: exact batching replays one CUDA graph per signature and group size",
    )
    cudnn_benchmark: bool = option(
        True, "--cudnn-benchmark/--no-cudnn-benchmark", help="CUDA: cuDNN autotuning of the convolutions"
    )
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
        from atfr_analysis.models.base import BATCHING_MODES

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
        for f, opt in options_of(type(self)):  # each option as the command line spells it
            if f.name in _NOT_OPTIONS:
                continue
            v = getattr(self, f.name)
            if v == f.default or v is None:
                continue
            flag, _, off = opt.flags[0].partition("/")
            if v is False:  # a switch that is on by default
                cmd.append(off or "--no-" + flag[2:])
                continue
            if f.name == "class_subset":
                v = ",".join(map(str, v))
            cmd += [flag] if v is True else [flag, str(v)]
        return cmd


def _int_at_least(name: str, v, low: int) -> None:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
        raise InputError(f"{name} must be an integer >= {low}, got {v!r}")
