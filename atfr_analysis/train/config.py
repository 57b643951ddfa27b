"""``TrainConfig``: every setting of a training run, checked when it is made (like ``ProfileConfig``).

A bad value is a one-line :class:`~atfr_analysis.errors.InputError` naming the option, raised
before anything is read. :meth:`TrainConfig.resume_settings` are the settings a resumed run must
share with the run it continues (model, data, global batch, precision, schedule, seed).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

from atfr_analysis.errors import InputError
from atfr_analysis.settings import REQUIRED, argument, option

__all__ = ["TrainConfig", "PRECISIONS", "RESUME_SETTINGS", "Same", "Free", "resume_settings_of"]

PRECISIONS = ("fp32", "bf16", "fp16")
#: a path on the command line, a string in the config
_PATH = dict(cli_type=Path, parse=str)

T = TypeVar("T")
#: the two kinds of setting, as each field of ``TrainConfig`` declares it in its type:
#: ``Same[X]`` a resumed run must share with the run it continues (model, data, global batch,
#: precision, schedule, seed, ...): a difference is a one-line error naming it; ``Free[X]`` may
#: change on resume (workers, device, threads, how often it checkpoints, how many it keeps, the
#: validation's protocol, the display)
SAME, FREE = "resume: same", "resume: free"
Same = Annotated[T, SAME]
Free = Annotated[T, FREE]


@dataclass(frozen=True)
class TrainConfig:
    """A training run of ``model`` on the PySlowFast list ``data`` (``path label`` per line).

    The recipe is PySlowFast's: SGD with Nesterov momentum, ``lr`` given per 64 clips and scaled
    linearly with the global ``batch_size`` (split over the torchrun ranks), linear warm-up for
    ``warmup_epochs`` then half a cosine, weight decay not applied to BN and biases, cross-entropy
    only (SGS adds no loss). ``precision``: ``fp32``, or autocast to ``bf16`` / ``fp16`` (fp16 with
    a gradient scaler); SGS's distances and kernel stay in fp32. ``checkpoint_every`` steps and
    after every epoch the full training state is saved (the last ``keep_last`` kept); a run
    continues from the newest one in its folder. See the field comments for the rest.
    """

    model: Same[str] = argument(help="registry name, e.g. slow_tiny_atfr")
    data: Same[str] = option(REQUIRED, "--data", help="PySlowFast list of training videos ('path label')", **_PATH)
    labels: Same[str | None] = option(None, "--labels", help="label map (JSON or one name per line)", **_PATH)
    data_root: Same[str | None] = option(
        None,
        "--data-root",
        help="prefix for the relative paths of --data and --val (default: each list's own folder)",
        **_PATH,
    )
    epochs: Same[int] = option(30, "--epochs", help="epochs of the schedule")
    #: global: split over the torchrun ranks (PySlowFast's TRAIN.BATCH_SIZE)
    batch_size: Same[int] = option(16, "--batch-size", help="global batch size, split over the torchrun ranks")
    #: at batch size 64 (scaled linearly, as PySlowFast's BASE_LR is per 8 GPUs)
    lr: Same[float] = option(0.1, "--lr", help="base learning rate at batch size 64 (scaled linearly)")
    momentum: Same[float] = 0.9
    weight_decay: Same[float] = option(1e-4, "--weight-decay", help="L2 weight decay (not on BN and biases)")
    warmup_epochs: Same[float] = option(2.0, "--warmup-epochs", help="linear warm-up epochs before the cosine")
    workers: Free[int] = option(0, "--workers", help="loader processes decoding the clips")
    device: Free[str] = option("auto", "--device", help="auto, cpu or cuda")
    seed: Same[int] = option(0, "--seed", help="seed of the weights, the clips and the validation split")
    crop: Same[int | None] = option(None, "--crop", help="training crop (default: the model's train crop)")
    scale_jitter: Same[tuple[float, float]] = (1.0, 1.25)  # short side = crop x U(a, b)
    model_overrides: Same[dict[str, Any]] = field(default_factory=dict)  # e.g. --frames's
    val_data: Free[str | None] = option(
        None,
        "--val",
        help="validation list, profiled (--val-views x --val-crops) every --val-every epochs into <run>/val/epoch_NNN",
        **_PATH,
    )
    #: stop early (tests); the schedule stays the one of ``epochs``
    max_steps: Free[int | None] = option(None, "--max-steps", help="stop after this many steps")
    #: small data sets only; each loader worker keeps its own copy
    cache: Free[bool] = option(False, "--cache", help="keep decoded videos in memory (small data sets)")
    #: PySlowFast's SOLVER.CLIP_GRAD_L2NORM. SGS's gradient scales like 2B / max(Delta): on clips of
    #: near-identical frames it reaches 1e7 and more (see the SGS fixtures' README), which blows up
    #: training from scratch without clipping.
    clip_grad: Same[float | None] = option(
        None, "--clip-grad", help="clip the gradients' global L2 norm (recommended with SGS)"
    )
    #: exact averages over this many training batches (PySlowFast's BN.USE_PRECISE_STATS /
    #: NUM_BATCHES_PRECISE); 0 = off
    precise_bn: Free[int] = option(
        0, "--precise-bn", help="after training, recompute BN statistics over this many batches"
    )
    #: "exact" as `atfr profile` does by default, "padded" the official code's
    batching: Same[str] = option(
        "exact", "--batching", help="SGS models: exact (each clip at its own B') or padded (official)"
    )
    #: any format `atfr profile` reads
    init_from: Same[str | None] = option(
        None,
        "--init-from",
        help="start from a checkpoint (a baseline's, for an _atfr model: only SGS weights may be missing)",
        **_PATH,
    )
    reset_head: Same[bool] = option(
        False, "--reset-head", help="with --init-from: re-initialise a head with another class count"
    )
    #: as mmaction2's norm_eval
    freeze_bn: Same[bool] = option(
        False, "--freeze-bn", help="keep BatchNorm statistics frozen (eval mode) while training"
    )
    sync_bn: Same[bool] = option(False, "--sync-bn", help="torchrun: SyncBatchNorm over the ranks")
    #: 0 = off; evaluated as ``val_data`` is
    val_fraction: Same[float] = option(
        0.0, "--val-fraction", help="hold out this fraction of --data (stratified, seeded) as a validation split"
    )
    max_failed_fraction: Free[float] = option(
        0.1,
        "--max-failed-fraction",
        help="undecodable videos are recorded and skipped; stop only when more than this fraction fails",
    )
    sgs_grad_clamp: Same[float | None] = option(
        None,
        "--sgs-grad-clamp",
        help="SGS models: clamp the gradient into the SGS embedding to [-c, c]; 0 stops it (the embedding "
        "keeps its weights); default: the official backward",
    )
    temporal_diff_init: Same[float] = option(
        0.0,
        "--temporal-diff-init",
        help="from scratch: this fraction of each temporal conv's output channels starts as a zero-sum "
        "(temporal-difference) kernel",
    )
    precise_bn_first: Same[int] = option(
        0,
        "--precise-bn-first",
        help="before training (after --init-from), recompute BN statistics over this many batches",
    )
    fp16_checkpoint: Free[bool] = option(False, "--fp16-checkpoint", help="store weights in fp16 (loaded back to fp32)")
    quiet: Free[bool] = option(False, "--quiet", help="no progress and no epoch lines")
    #: restored afterwards. A CPU reduction's order, and so its last bits, depends on the thread
    #: count. None = this process's share of the cores it may run on (``tuning.local_cores``)
    threads: Free[int | None] = option(
        None,
        "--threads",
        help="CPU intra-op threads (default: the cores this process may use); a seeded run is "
        "bit-reproducible at a given count",
    )
    #: None = 100 x ln(classes), a hundred times the cross-entropy of a uniform guess, where an
    #: untrained model starts
    max_loss: Free[float | None] = option(
        None, "--max-loss", help="stop when a step's loss exceeds this (default 100 x ln classes)"
    )
    precision: Same[str] = option(
        "fp32",
        "--precision",
        help="fp32, or autocast to bf16 / fp16 (fp16 with a gradient scaler); SGS's distances stay fp32",
    )
    checkpoint_every: Free[int] = option(
        0,
        "--checkpoint-every",
        help="save the training state every this many steps (it is saved after every epoch too)",
    )
    #: older ones are deleted once a newer one is written
    keep_last: Free[int] = option(2, "--keep-last", help="keep the newest this many training states")
    resume: Free[bool] = option(
        False, "--resume", help="continue the run in the output folder (automatic when it holds a state)"
    )
    val_every: Free[int] = option(1, "--val-every", help="validate every this many epochs (and after the last)")
    val_views: Free[int] = option(1, "--val-views", help="validation: temporal views per video")
    val_crops: Free[int] = option(1, "--val-crops", help="validation: spatial crops per view (1 or 3)")
    #: rank 0 writes it
    tensorboard: Free[str | None] = option(
        None,
        "--tensorboard",
        help="also log the scalars and the bins' histogram for TensorBoard here (extra: tensorboard)",
        **_PATH,
    )

    def __post_init__(self) -> None:
        _check_name(self.model)
        for name, low in (
            ("epochs", 1),
            ("batch_size", 1),
            ("workers", 0),
            ("seed", 0),
            ("precise_bn", 0),
            ("precise_bn_first", 0),
            ("checkpoint_every", 0),
            ("keep_last", 1),
            ("val_every", 1),
            ("val_views", 1),
        ):
            _int_at_least(name, getattr(self, name), low)
        for name in ("crop", "max_steps", "threads"):
            if getattr(self, name) is not None:
                _int_at_least(name, getattr(self, name), 1)
        _number("lr", self.lr, positive=True)
        _number("momentum", self.momentum, low=0.0, high=1.0)
        _number("weight_decay", self.weight_decay, low=0.0)
        _number("warmup_epochs", self.warmup_epochs, low=0.0)
        _number("max_failed_fraction", self.max_failed_fraction, low=0.0, high=1.0)
        _number("val_fraction", self.val_fraction, low=0.0, high=1.0, high_open=True)
        _number("temporal_diff_init", self.temporal_diff_init, low=0.0, high=1.0)
        for name in ("clip_grad", "max_loss"):
            if getattr(self, name) is not None:
                _number(name, getattr(self, name), positive=True)
        if self.sgs_grad_clamp is not None:
            _number("sgs_grad_clamp", self.sgs_grad_clamp, low=0.0)
        self._check_choices()

    def _check_choices(self) -> None:
        from atfr_analysis.models.base import BATCHING_MODES

        if self.batching not in BATCHING_MODES:
            raise InputError(f"--batching must be one of {', '.join(BATCHING_MODES)}, got {self.batching!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        lo, hi = _pair("scale_jitter", self.scale_jitter)
        if not 0 < lo <= hi:
            raise InputError(f"scale_jitter must be (a, b) with 0 < a <= b, got {self.scale_jitter!r}")
        dev = self.device
        if not (isinstance(dev, str) and (dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:"))):
            raise InputError(f"--device must be one of auto, cpu, cuda (or cuda:K), got {self.device!r}")
        if self.val_crops not in (1, 3):
            raise InputError(f"--val-crops must be 1 or 3, got {self.val_crops!r}")
        if self.model_overrides and (self.val_data or self.val_fraction):
            raise InputError(
                "validation runs through the profile, which builds the registry model as it is: "
                f"it cannot validate a model with overrides ({', '.join(self.model_overrides)}); "
                "drop --val / --val-fraction or the override"
            )
        if self.reset_head and not self.init_from:
            raise InputError("--reset-head needs --init-from (it re-initialises the head of the weights read)")
        if self.freeze_bn and self.sync_bn:
            raise InputError("--freeze-bn and --sync-bn exclude each other (frozen BN computes no batch statistics)")

    def replace(self, **changes) -> TrainConfig:
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    def resume_settings(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it continues (plain values)."""
        out = {}
        for k in resume_settings_of(type(self)):
            v = getattr(self, k)
            out[k] = list(v) if isinstance(v, tuple) else (dict(v) if isinstance(v, dict) else v)
        return out


def resume_settings_of(cls: type) -> tuple[str, ...]:
    """The fields of the config dataclass ``cls`` that a resume compares (``Same[...]``), in field
    order; a field declared neither ``Same`` nor ``Free`` is refused (every new setting says)."""
    hints = get_type_hints(cls, include_extras=True)
    out, unsaid = [], []
    for f in dataclasses.fields(cls):
        marks = getattr(hints[f.name], "__metadata__", ())
        if SAME in marks:
            out.append(f.name)
        elif FREE not in marks:
            unsaid.append(f.name)
    if unsaid:
        raise TypeError(
            f"{cls.__name__}: declare {', '.join(unsaid)} as Same[...] or Free[...] (must a resume compare it?)"
        )
    return tuple(out)


def _check_name(model) -> None:
    from atfr_analysis.models.registry import get_entry

    if not isinstance(model, str) or not model:
        raise InputError(f"the model must be a registry name, got {model!r}")
    get_entry(model)


def _int_at_least(name: str, v, low: int) -> None:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
        raise InputError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {v!r}")


def _number(
    name: str, v, positive: bool = False, low: float | None = None, high: float | None = None, high_open: bool = False
) -> None:
    flag = "--" + name.replace("_", "-")
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
    if ok and positive:
        ok = v > 0
    if ok and low is not None:
        ok = v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        if positive:
            want = "> 0"
        else:
            want = f"in [{low:g}, {high:g}{')' if high_open else ']'}" if high is not None else f">= {low:g}"
        raise InputError(f"{flag} must be a finite number {want}, got {v!r}")


def _pair(name: str, v) -> tuple[float, float]:
    try:
        a, b = v
        return float(a), float(b)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a pair of numbers, got {v!r}") from None


#: what a resumed run must share with the run it continues: the fields declared ``Same[...]``
RESUME_SETTINGS = resume_settings_of(TrainConfig)
