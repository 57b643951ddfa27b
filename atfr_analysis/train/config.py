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
from typing import Annotated, Any, TypeVar, get_type_hints

from atfr_analysis.errors import InputError
from atfr_analysis.models.base import BATCHING_MODES

__all__ = ["TrainConfig", "PRECISIONS", "RESUME_SETTINGS", "Same", "Free", "resume_settings_of"]

PRECISIONS = ("fp32", "bf16", "fp16")
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

    model: Same[str]
    data: Same[str]  # PySlowFast list of training videos
    labels: Same[str | None] = None
    data_root: Same[str | None] = None  # prefix of the relative paths of data and val_data; None: each list's folder
    epochs: Same[int] = 30
    batch_size: Same[int] = 16  # global: split over the torchrun ranks (PySlowFast's TRAIN.BATCH_SIZE)
    lr: Same[float] = 0.1  # at batch size 64 (scaled linearly, as PySlowFast's BASE_LR is per 8 GPUs)
    momentum: Same[float] = 0.9
    weight_decay: Same[float] = 1e-4
    warmup_epochs: Same[float] = 2.0
    workers: Free[int] = 0
    device: Free[str] = "auto"
    seed: Same[int] = 0
    crop: Same[int | None] = None  # default: the model's train crop
    scale_jitter: Same[tuple[float, float]] = (1.0, 1.25)  # short side = crop x U(a, b)
    model_overrides: Same[dict[str, Any]] = field(default_factory=dict)
    #: optional validation list, evaluated (through the profile) every ``val_every`` epochs and after
    #: the last, ``val_views`` x ``val_crops`` views per video
    val_data: Free[str | None] = None
    max_steps: Free[int | None] = None  # stop early (tests); the schedule stays the one of ``epochs``
    #: keep decoded videos in memory (small data sets only; each loader worker keeps its own copy)
    cache: Free[bool] = False
    #: clip the gradients' global L2 norm (PySlowFast's SOLVER.CLIP_GRAD_L2NORM). SGS's gradient
    #: scales like 2B / max(Delta): on clips of near-identical frames it reaches 1e7 and more
    #: (see the SGS fixtures' README), which blows up training from scratch without clipping.
    clip_grad: Same[float | None] = None
    #: after training, recompute BatchNorm statistics as exact averages over this many training
    #: batches (PySlowFast's BN.USE_PRECISE_STATS / NUM_BATCHES_PRECISE); 0 = off
    precise_bn: Free[int] = 0
    #: SGS models: how batches run after SGS while training: "exact" (each clip at its own B', as
    #: `atfr profile` does by default) or "padded" (the official code's)
    batching: Same[str] = "exact"
    #: start from these weights (any format `atfr profile` reads; a baseline's for an _atfr model:
    #: only the SGS parameters may be missing)
    init_from: Same[str | None] = None
    #: with ``init_from``: re-initialise the classification head when its class count differs
    reset_head: Same[bool] = False
    #: keep BatchNorm layers in eval mode (running statistics frozen, as mmaction2's norm_eval)
    freeze_bn: Same[bool] = False
    #: torchrun: SyncBatchNorm (batch statistics over all ranks)
    sync_bn: Same[bool] = False
    #: hold out this stratified fraction of the training list (drawn with ``seed``) as a validation
    #: split, evaluated as ``val_data`` is. 0 = off
    val_fraction: Same[float] = 0.0
    #: videos that cannot be opened are recorded and skipped; the run stops only above this fraction
    max_failed_fraction: Free[float] = 0.1
    #: SGS models: clamp the gradient into the SGS embedding to [-c, c]; 0 stops it
    sgs_grad_clamp: Same[float | None] = None
    #: from scratch only: this fraction of each temporal conv's output channels starts zero-sum in time
    temporal_diff_init: Same[float] = 0.0
    #: before the first step (after ``init_from``), recompute BN statistics over this many batches
    precise_bn_first: Same[int] = 0
    fp16_checkpoint: Free[bool] = False
    quiet: Free[bool] = False
    #: CPU intra-op threads for the run (restored afterwards). A CPU reduction's order, and so its
    #: last bits, depends on the thread count: a seeded run is bit-reproducible at a given count.
    #: None = this process's share of the cores it may run on (``tuning.local_cores``)
    threads: Free[int | None] = None
    #: stop (one line naming the step) when a step's loss exceeds this: it is exploding. None = 100 x
    #: ln(classes), a hundred times the cross-entropy of a uniform guess, where an untrained model starts
    max_loss: Free[float | None] = None
    precision: Same[str] = "fp32"
    #: save the training state every this many steps (0: only after each epoch)
    checkpoint_every: Free[int] = 0
    #: keep the newest this many training states (older ones are deleted once a newer one is written)
    keep_last: Free[int] = 2
    #: continue the run in the output folder (also automatic when the folder holds a state)
    resume: Free[bool] = False
    #: validate (through the profile, into ``<run>/val/epoch_NNN/``) every this many epochs and after the last
    val_every: Free[int] = 1
    #: the validation's test protocol: temporal views x spatial crops (1 x 1: the centre view)
    val_views: Free[int] = 1
    val_crops: Free[int] = 1
    #: also write the epoch's scalars and the bins' histogram to this TensorBoard log folder (rank 0)
    tensorboard: Free[str | None] = None

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
