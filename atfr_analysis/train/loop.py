"""The training run as named steps (like ``profile.run.run_profile``).

:func:`train` places the run (threads, device, torchrun's ranks, its folder), reads the data,
builds the model (``init_from``), makes the optimizer, resumes or starts, runs the epochs and
writes the final checkpoint. Deterministic on the CPU for a given seed and thread count: a CPU
reduction's order, and so its last bits, follows the intra-op thread count, which the run sets for
its duration (other code in the process may have changed it); every clip is drawn from its own
seed; the sampler is a function of (seed, epoch); the checkpoints hold every RNG state. So a run
killed at any point and resumed ends with the weights of an uninterrupted one, bit for bit.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from atfr_analysis.errors import AtfrError, EnvironmentFailure, InputError
from atfr_analysis.train.config import TrainConfig
from atfr_analysis.train.data import (
    EpochSampler,
    TrainClips,
    data_fingerprint,
    make_loader,
    probe_videos,
    split_validation,
    unique_failures,
)
from atfr_analysis.train.dist import World, all_mean, gather_objects, init_world, wrap_model
from atfr_analysis.train.recipe import (
    NonFinite,
    cosine_lr,
    make_record,
    nonfinite_guards,
    param_groups,
    plain,
    sgs_grad_clamp_hooks,
    temporal_difference_init,
)
from atfr_analysis.train.state import (
    ResumeError,
    RunFolder,
    data_changes,
    load_state,
    rng_state,
    save_state,
    set_rng_state,
    settings_diff,
)

__all__ = ["train", "TrainResult", "TrainDataError", "TrainingDiverged"]


class TrainDataError(InputError):
    """The training list cannot be trained on (too many undecodable videos, an empty split)."""


class TrainingDiverged(AtfrError):
    """The loss (or an activation that reaches an SGS layer) is not finite or explodes: the run stops."""


@dataclass
class TrainResult:
    checkpoint: Path
    epochs: int
    steps: int
    seconds: float
    losses: list[float]  # mean loss per epoch
    train_acc: list[float]  # per epoch, %
    val_acc: list[float]
    first_loss: float
    last_loss: float
    failed: int = 0  # undecodable videos skipped
    folder: Path | None = None  # the run's folder (training states, metrics.csv)


def train(cfg: TrainConfig, out: str | Path, command: Sequence[str] | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data``; the final checkpoint goes to ``out`` (a ``.pyth`` file,
    its run folder ``<stem>.run/`` beside it) or into the folder ``out`` (``model.pyth``)."""
    with _threads(cfg):
        run = _place(cfg, out, command)
        try:
            data = _read_data(cfg, run)
            model = _build_model(cfg, run, data)
            _check_validation(cfg, data, model)
            optim = _make_optimizer(cfg, run, data, model)
            state = _resume_or_start(cfg, run, model, optim)
            _run_epochs(cfg, run, data, model, optim, state)
            return _finish(cfg, run, data, model, optim, state)
        finally:
            if run.tensorboard is not None:
                run.tensorboard.close()
            run.world.close()


# ----------------------------------------------------------------------------- the steps
@contextlib.contextmanager
def _threads(cfg: TrainConfig):
    from atfr_analysis.tuning import local_cores

    before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads or local_cores())
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class _Run:
    cfg: TrainConfig
    folder: RunFolder
    device: torch.device
    world: World
    command: list[str]
    t0: float = field(default_factory=time.perf_counter)
    tensorboard: Any = None
    data_fingerprint: dict = field(default_factory=dict)  # what it trains on (in every state, compared on resume)

    def say(self, line: str) -> None:
        if self.world.main and not self.cfg.quiet:
            print(line, file=sys.stderr, flush=True)


def _place(cfg: TrainConfig, out, command) -> _Run:
    """The device (a CUDA rank takes its LOCAL_RANK's), the process group, the run folder (checked
    not to hold another run)."""
    from atfr_analysis.runtime import resolve_device

    dev = resolve_device(cfg.device)
    world = init_world(dev)
    if dev.type == "cuda" and world.size > 1:
        dev = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(dev)
    folder = RunFolder.of(out)
    if folder.final.exists():
        world.close()
        raise ResumeError(f"{folder.final} exists (a finished run): choose another --out; nothing was overwritten")
    if world.main:
        try:
            _check_writable(folder)
        except EnvironmentFailure:
            world.close()
            raise
    run = _Run(cfg, folder, dev, world, list(command) if command is not None else list(sys.argv))
    if cfg.tensorboard and world.main:
        from atfr_analysis.train.tensorboard import TensorBoard

        run.tensorboard = TensorBoard(cfg.tensorboard)
    return run


def _check_writable(folder: RunFolder) -> None:
    """The run folder can be written (made, a file created and removed in it), before anything is read."""
    from atfr_analysis.errors import environment_failure

    probe = folder.root / f".atfr-write-test.{os.getpid()}"
    try:
        folder.root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise environment_failure(e, folder.root) from None


@dataclass
class _Data:
    entries: list
    listed: int
    failed: list
    val: list | None
    held_out: list
    label_map: dict | None
    classes: int


def _read_data(cfg: TrainConfig, run: _Run) -> _Data:
    """The list (every header opened once: the unreadable are recorded and skipped, the run stops
    above ``max_failed_fraction``), the held-out split (refused when it holds out nothing) and the
    validation list; the fingerprint of what the run trains on."""
    from atfr_analysis.data.datasets import read_label_map, read_video_list

    label_map = read_label_map(cfg.labels) if cfg.labels else None
    entries = read_video_list(cfg.data, data_root=cfg.data_root, labels=label_map)
    classes = len(label_map) if label_map else max(e.label for e in entries) + 1
    listed, listed_entries = len(entries), list(entries)
    entries, failed = probe_videos(entries)
    if len(failed) > cfg.max_failed_fraction * listed or not entries:
        raise TrainDataError(
            f"{len(failed)} of {listed} training videos cannot be decoded (more than --max-failed-fraction "
            f"{cfg.max_failed_fraction:g}); first: {failed[0]['path']}: {failed[0]['reason']}"
        )
    if failed:
        run.say(
            f"warning: skipping {len(failed)} of {listed} training videos that cannot be decoded "
            f"(first: {failed[0]['path']}: {failed[0]['reason']})"
        )
    held_out: list = []
    if cfg.val_fraction:
        entries, held_out = split_validation(entries, cfg.val_fraction, cfg.seed)
        if not held_out:
            raise TrainDataError(
                f"--val-fraction {cfg.val_fraction:g} holds out no video: every label of --data has a single "
                "video, and the split keeps one of each label for training"
            )
    val = _read_val(cfg, label_map, classes)
    run.data_fingerprint = data_fingerprint(cfg, listed_entries, label_map, val)
    if held_out:
        val = (val or []) + held_out
    return _Data(entries, listed, failed, val, held_out, label_map, classes)


def _read_val(cfg: TrainConfig, label_map, classes: int) -> list | None:
    """The ``--val`` list (its relative paths under ``data_root`` if given, else under its own
    folder), every label one of the training classes."""
    from atfr_analysis.data.datasets import read_video_list

    if not cfg.val_data:
        return None
    val = read_video_list(cfg.val_data, data_root=cfg.data_root, labels=label_map)
    bad = [e for e in val if not 0 <= int(e.label) < classes]
    if bad:
        where = f"--labels {cfg.labels}" if label_map else "the labels of --data"
        raise TrainDataError(
            f"--val {cfg.val_data}: {len(bad)} videos have labels beyond the {classes} training classes of {where} "
            f"(first: {bad[0].path} label {bad[0].label}); the model's head cannot score them"
        )
    return val


@dataclass
class _Model:
    net: nn.Module  # the model itself (what checkpoints hold)
    step_net: nn.Module  # what the steps call: DDP over it with several ranks
    spec: Any
    init: dict  # what --init-from loaded and re-initialised


def _build_model(cfg: TrainConfig, run: _Run, data: _Data) -> _Model:
    """Built from the seed (the same on every rank), ``init_from`` read, batching set, on the device."""
    from atfr_analysis.models import build_model
    from atfr_analysis.train.init import init_from

    _seed_all(cfg.seed)
    net = build_model(cfg.model, num_classes=data.classes, **cfg.model_overrides)
    if cfg.temporal_diff_init:
        temporal_difference_init(net, cfg.temporal_diff_init)
    init = init_from(net, cfg.init_from, cfg.reset_head, say=run.say) if cfg.init_from else {}
    if net.sgs_layer_names():
        net.set_batching(cfg.batching)
        if cfg.sync_bn and run.world.size > 1 and cfg.batching == "exact":
            raise InputError(
                "--sync-bn with exact batching: ranks run different groups after SGS; "
                "use --freeze-bn or --batching padded"
            )
    net.to(run.device)
    _seed_all(cfg.seed + run.world.rank)  # dropout draws differ per rank
    return _Model(net, wrap_model(net, run.world, run.device, cfg.sync_bn), net.spec, init)


def _check_validation(cfg: TrainConfig, data: _Data, model: _Model) -> None:
    """Before the first step: the validation's test views can be made for this model (one's own
    model needs a 1-crop rule in its input spec for ``--val-crops 1``)."""
    from atfr_analysis.data.views import view_protocol

    if data.val is None:
        return
    if cfg.val_crops == 1 and model.spec.one_crop is None:
        raise InputError(
            f"cannot validate {cfg.model} on 1 crop: its input spec has no one_crop (the short side and crop "
            "of PySlowFast's 1-crop test); validate with --val-crops 3, or give the spec a one_crop"
        )
    try:
        view_protocol(model.spec, cfg.val_views, cfg.val_crops)
    except InputError as exc:
        raise InputError(f"cannot validate {cfg.model} with --val-views {cfg.val_views}: {exc}") from None


def _seed_all(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class _Optim:
    opt: torch.optim.Optimizer
    scaler: Any
    base_lr: float
    steps_per_epoch: int
    total: int
    warmup: int
    max_loss: float
    sampler: EpochSampler
    loader: Any
    amp_dtype: torch.dtype | None


def _make_optimizer(cfg: TrainConfig, run: _Run, data: _Data, model: _Model) -> _Optim:
    """SGD (Nesterov momentum; no weight decay on BN and biases), the lr scaled by the global
    batch, the schedule's length in steps, the gradient scaler (fp16), the sampler and loader."""
    ds = TrainClips(
        data.entries, model.spec, cfg.crop or model.spec.train_crop, cfg.scale_jitter, cache=cfg.cache, seed=cfg.seed
    )
    sampler = EpochSampler(len(ds), cfg.batch_size, cfg.seed, run.world.rank, run.world.size)
    loader = make_loader(ds, sampler, cfg.workers)
    lr = cfg.lr * cfg.batch_size / 64
    opt = torch.optim.SGD(param_groups(model.net, cfg.weight_decay), lr=lr, momentum=cfg.momentum, nesterov=True)
    per_epoch = sampler.batches_per_epoch()
    amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision]
    scaler = torch.amp.GradScaler(run.device.type, enabled=cfg.precision == "fp16")
    max_loss = cfg.max_loss if cfg.max_loss is not None else 100 * math.log(max(data.classes, 2))
    return _Optim(
        opt,
        scaler,
        lr,
        per_epoch,
        cfg.epochs * per_epoch,
        int(cfg.warmup_epochs * per_epoch),
        max_loss,
        sampler,
        loader,
        amp,
    )


@dataclass
class _State:
    """Where the run is: what a checkpoint holds besides the weights and the optimizer."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches done in ``epoch``
    totals: list = field(default_factory=lambda: [0.0, 0.0, 0])  # loss x n, correct, n of the epoch
    losses: list = field(default_factory=list)
    accs: list = field(default_factory=list)
    val_accs: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    first_loss: float | None = None
    seconds: float = 0.0  # before this process started
    saved: Path | None = None
    saved_epoch: float | None = None
    epoch_t0: float = field(default_factory=time.perf_counter)  # when this process started the epoch

    def plain(self) -> dict:
        keys = ("step", "epoch", "batch", "totals", "losses", "accs", "val_accs", "failures", "first_loss")
        return {k: getattr(self, k) for k in keys}


def _resume_or_start(cfg: TrainConfig, run: _Run, model: _Model, optim: _Optim) -> _State:
    """Continue from the newest training state in the folder (same settings, else a one-line error
    naming what differs), or start at step 0."""
    latest = run.folder.latest()
    if latest is None:
        if cfg.resume:
            raise ResumeError(f"--resume: {run.folder.checkpoints} holds no training state")
        if cfg.precise_bn_first:
            _precise_bn(run, model, optim, cfg.precise_bn_first, epoch=0)  # the first epoch's batches
        return _State()
    obj = load_state(latest)
    ts = obj["train_state"]
    diff = settings_diff(ts["settings"], cfg.resume_settings())
    if diff:
        raise ResumeError(
            f"{run.folder.root} holds a run with other settings ({'; '.join(diff)}): "
            "resume with its settings or choose another --out"
        )
    changed = data_changes(ts.get("data"), run.data_fingerprint)
    if changed:
        raise ResumeError(
            f"{run.folder.root} holds a run on other data ({'; '.join(changed)}): "
            "resume with the data it trained on or choose another --out"
        )
    model.net.load_state_dict(obj["model_state"])
    optim.opt.load_state_dict(obj["optimizer_state"])
    if obj.get("scaler_state"):
        optim.scaler.load_state_dict(obj["scaler_state"])
    rngs = ts["rng"]
    set_rng_state(rngs[run.world.rank] if run.world.rank < len(rngs) else rngs[0])
    state = _State(**{k: ts[k] for k in _State().plain()}, seconds=ts.get("seconds", 0.0))
    state.saved, state.saved_epoch = latest, state.epoch + state.batch / optim.steps_per_epoch
    run.say(f"resuming {run.folder.root} at step {state.step} (epoch {state.epoch + 1}, batch {state.batch})")
    return state


def _run_epochs(cfg: TrainConfig, run: _Run, data: _Data, model: _Model, optim: _Optim, state: _State) -> None:
    from atfr_analysis.train.progress import TrainProgress

    hooks = sgs_grad_clamp_hooks(model.net, cfg.sgs_grad_clamp) if cfg.sgs_grad_clamp is not None else []
    hooks += nonfinite_guards(model.net)
    stop = cfg.max_steps if cfg.max_steps is not None else optim.total
    try:
        with TrainProgress(run, optim.total, min(stop, optim.total), state.step) as bar:
            while state.epoch < cfg.epochs and state.step < stop:
                _run_epoch(cfg, run, data, model, optim, state, bar, stop)
    finally:
        for h in hooks:
            h.remove()


def _run_epoch(cfg, run: _Run, data: _Data, model: _Model, optim: _Optim, state: _State, bar, stop: int) -> None:
    """From ``state.batch`` to the end of ``state.epoch`` (or ``stop``); a state every
    ``checkpoint_every`` steps and at the end of the epoch; validation and the epoch's line."""
    model.step_net.train()
    if cfg.freeze_bn:
        from atfr_analysis.train.bn import freeze_bn_layers

        freeze_bn_layers(model.net)
    optim.sampler.set_epoch(state.epoch, state.batch)
    for batch in optim.loader:
        _count_failures(cfg, run, data, model, optim, state, batch)
        _one_step(cfg, run, model, optim, state, batch)
        bar.step(state, optim.opt.param_groups[0]["lr"], batch.labels.shape[0] * run.world.size)
        if state.batch < optim.steps_per_epoch and cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
            _save(cfg, run, model, optim, state)
        if state.step >= stop:
            break
    if state.batch < optim.steps_per_epoch:
        return  # stopped early (max_steps): no epoch end
    _end_epoch(cfg, run, data, model, optim, state)
    if state.epoch < cfg.epochs and state.step < stop:  # the last epoch's weights are the final checkpoint
        _save(cfg, run, model, optim, state)
    bar.epoch_line(state, cfg.epochs)


def _one_step(cfg, run: _Run, model: _Model, optim: _Optim, state: _State, batch) -> None:
    """One SGD step: lr from the schedule, forward under autocast, every rank agrees the loss is
    finite (else :class:`TrainingDiverged` naming the step), backward (scaled in fp16), clip, update."""
    for gr in optim.opt.param_groups:
        gr["lr"] = cosine_lr(state.step, optim.total, optim.base_lr, optim.warmup)
    xs = [x.to(run.device, non_blocking=True) for x in batch.pathways]
    y = batch.labels.to(run.device)
    bad, loss, logits = None, None, None
    try:
        amp = optim.amp_dtype
        with torch.autocast(run.device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            logits = model.step_net(xs)
        loss = F.cross_entropy(logits.float(), y)
        lv = float(loss.detach())
        if not math.isfinite(lv) or lv > optim.max_loss:
            bad = f"loss {lv:g}" + ("" if not math.isfinite(lv) else f" above {optim.max_loss:g} (exploding)")
    except NonFinite as exc:
        bad = str(exc)
    if all_mean([0.0 if bad is None else 1.0], run.world)[0] > 0:
        raise _diverged(state, run, bad or "another rank's loss is not finite")
    optim.opt.zero_grad(set_to_none=True)
    optim.scaler.scale(loss).backward()
    if cfg.clip_grad:
        optim.scaler.unscale_(optim.opt)
        nn.utils.clip_grad_norm_(model.net.parameters(), cfg.clip_grad)
    if not optim.scaler.is_enabled():  # fp16's scaler skips a step with inf/NaN gradients itself
        _check_gradients(state, run, model, optim)
    optim.scaler.step(optim.opt)
    optim.scaler.update()
    state.step += 1
    state.batch += 1
    n = y.shape[0]
    correct = float((logits.argmax(1) == y).sum())
    state.totals = [state.totals[0] + lv * n, state.totals[1] + correct, state.totals[2] + n]
    state.first_loss = lv if state.first_loss is None else state.first_loss


def _count_failures(cfg, run: _Run, data: _Data, model: _Model, optim: _Optim, state: _State, batch) -> None:
    """The videos of this batch (every rank's) that failed to decode when drawn join the run's
    failures; above ``max_failed_fraction`` of the list (with those its header check skipped) the
    run stops before the batch, its training state saved, so that it resumes once they are back."""
    new = batch.failures
    if run.world.size > 1 and all_mean([float(len(new))], run.world)[0] > 0:
        new = [f for part in gather_objects(new, run.world) for f in part]
    failed = unique_failures(data.failed, state.failures, new)
    if len(failed) <= cfg.max_failed_fraction * data.listed:
        state.failures = unique_failures(state.failures, new)
        return
    if state.step and state.saved != run.folder.state_path(state.step):
        _save(cfg, run, model, optim, state)
    kept = f"the training state at step {state.step} is kept ({state.saved})" if state.saved else "no step was trained"
    known = {f["path"] for f in data.failed + state.failures}
    first = ([f for f in new if f["path"] not in known] or failed)[0]
    raise TrainDataError(
        f"{len(failed)} of {data.listed} training videos cannot be decoded (more than --max-failed-fraction "
        f"{cfg.max_failed_fraction:g}), {len(failed) - len(data.failed)} of them while training, at step "
        f"{state.step + 1}; first: {first['path']}: {first['reason']}; {kept}: restore the videos and run "
        "the same command to resume"
    )


def _failed(data: _Data, state: _State) -> list:
    """Every video that could not be decoded: at the header check, or when drawn (once each)."""
    return unique_failures(data.failed, state.failures)


def _check_gradients(state: _State, run: _Run, model: _Model, optim: _Optim) -> None:
    """Every gradient finite before the update (every rank agrees): an SGD step with a NaN
    gradient makes the weights NaN at any learning rate, and the next state written would keep
    them. On the CPU, PyTorch's bf16 convolutions (oneDNN; seen with torch 2.13.0) return
    non-finite weight gradients for a temporal kernel of 3 over 2 steps, a length SGS leaves
    after merging: the error says so."""
    grads = [(n, p.grad) for n, p in model.net.named_parameters() if p.grad is not None]
    bad = None
    if grads:
        finite = torch.stack([torch.isfinite(g).all() for _, g in grads])
        if not bool(finite.all()):
            bad = grads[int((~finite).nonzero()[0])][0]
    if all_mean([0.0 if bad is None else 1.0], run.world)[0] > 0:
        hint = None
        if run.device.type == "cpu" and optim.amp_dtype == torch.bfloat16:
            hint = (
                "PyTorch's bf16 convolutions on the CPU can return non-finite weight gradients (a temporal kernel "
                "of 3 over 2 steps, as SGS leaves them): use --precision fp32 on the CPU"
            )
        what = f"the gradient of {bad} is not finite" if bad else "another rank's gradient is not finite"
        raise _diverged(state, run, what, hint)


def _diverged(state: _State, run: _Run, what: str, hint: str | None = None) -> TrainingDiverged:
    kept = (
        f"the last good checkpoint {state.saved} (epoch {state.saved_epoch:g}) is kept"
        if state.saved is not None
        else "no checkpoint was written yet"
    )
    return TrainingDiverged(
        f"training diverged at step {state.step + 1} (epoch {state.epoch + 1}): {what}; {kept}; "
        + (hint or "lower --lr or set --clip-grad")
    )


def _end_epoch(cfg, run: _Run, data: _Data, model: _Model, optim: _Optim, state: _State) -> None:
    """The epoch's mean loss and top-1 over all ranks, validation (rank 0, through the profile),
    the metrics row and plot; on to the next epoch."""
    s = all_mean(list(state.totals), run.world)
    state.losses.append(s[0] / max(s[2], 1))
    state.accs.append(100 * s[1] / max(s[2], 1))
    val = _validate(cfg, run, data, model, state.epoch + 1)
    if val is not None:
        state.val_accs.append(val["val_top1"])
    seconds = state.seconds + time.perf_counter() - run.t0
    row = {
        "epoch": state.epoch + 1,
        "step": state.step,
        "loss": state.losses[-1],
        "lr": optim.opt.param_groups[0]["lr"],
        "train_top1": state.accs[-1],
        **(val or {}),
        "clips_per_s": s[2] * run.world.size / max(time.perf_counter() - state.epoch_t0, 1e-9),
        "seconds": seconds,
    }
    state.epoch, state.batch, state.totals = state.epoch + 1, 0, [0.0, 0.0, 0]
    state.epoch_t0 = time.perf_counter()
    if run.world.main:
        from atfr_analysis.train.metrics import append_metrics, plot_metrics

        rows = append_metrics(run.folder.root / "metrics.csv", row)
        plot_metrics(rows, run.folder.root / "metrics.png")
        if run.tensorboard is not None:
            run.tensorboard.epoch(row)


def _validate(cfg, run: _Run, data: _Data, model: _Model, epoch: int) -> dict | None:
    """Every ``val_every`` epochs and after the last: every rank profiles its shard of the
    validation list into the epoch's folder (rank 0 merges); the metrics on every rank."""
    if data.val is None or not (epoch % cfg.val_every == 0 or epoch == cfg.epochs):
        return None
    from atfr_analysis.errors import NonFiniteError
    from atfr_analysis.train.validate import validate_epoch

    try:
        out = validate_epoch(model.net, cfg, run.folder.root, data.val, epoch, run.device, run.world)
    except (NonFinite, NonFiniteError) as exc:
        raise TrainingDiverged(
            f"the weights of epoch {epoch} diverged (validation: {exc}); lower --lr or set --clip-grad"
        ) from None
    model.step_net.train()
    if cfg.freeze_bn:
        from atfr_analysis.train.bn import freeze_bn_layers

        freeze_bn_layers(model.net)
    return out


def _save(cfg: TrainConfig, run: _Run, model: _Model, optim: _Optim, state: _State) -> None:
    """Every rank's RNG states gathered; rank 0 writes the training state (atomically, the last
    ``keep_last`` kept); every rank stops when it could not (a full disk: one line naming the file)."""
    rngs = gather_objects(rng_state(), run.world)
    failure = None
    if run.world.main:
        ts = state.plain() | {
            "settings": cfg.resume_settings(),
            "data": run.data_fingerprint,
            "rng": rngs,
            "world_size": run.world.size,
            "seconds": state.seconds + time.perf_counter() - run.t0,
        }
        obj = {
            "epoch": state.epoch,
            "model_state": {k: v.detach().cpu().clone() for k, v in model.net.state_dict().items()},
            "optimizer_state": optim.opt.state_dict(),
            "scaler_state": optim.scaler.state_dict() if optim.scaler.is_enabled() else None,
            "cfg": _yaml(make_record(model.net, cfg.model, {"train": plain(_asdict(cfg)), "command": run.command})),
            "train_state": ts,
        }
        try:
            save_state(run.folder, obj, state.step, cfg.keep_last)
        except EnvironmentFailure as exc:
            failure = exc
    if run.world.size > 1 and all_mean([float(failure is not None)], run.world)[0] > 0 and failure is None:
        failure = EnvironmentFailure(f"rank 0 could not write the training state {run.folder.state_path(state.step)}")
    if failure is not None:
        raise failure
    state.saved = run.folder.state_path(state.step)
    state.saved_epoch = state.epoch + state.batch / optim.steps_per_epoch


def _asdict(cfg: TrainConfig) -> dict:
    import dataclasses

    return dataclasses.asdict(cfg)


def _yaml(record: dict) -> str:
    import yaml

    return yaml.safe_dump(dict(record), sort_keys=True)


def _precise_bn(run: _Run, model: _Model, optim: _Optim, batches: int, epoch: int) -> None:
    """Precise BN over the first ``batches`` training batches of ``epoch``: a function of (seed,
    epoch) and the weights alone, never of where the loader stopped (a run resumed mid-epoch, or
    killed during precise BN, recomputes the statistics an uninterrupted run does)."""
    from atfr_analysis.train.bn import precise_bn

    optim.sampler.set_epoch(epoch, 0)
    precise_bn(model.net, optim.loader, batches, run.device)


def _finish(cfg: TrainConfig, run: _Run, data: _Data, model: _Model, optim: _Optim, state: _State) -> TrainResult:
    """The last training state, precise BN (optional), then rank 0 writes the final checkpoint with
    the run's record."""
    from atfr_analysis.checkpoint import save_checkpoint
    from atfr_analysis.train.progress import last_loss

    _save(cfg, run, model, optim, state)  # the last training state (with the scaler's)
    if cfg.precise_bn:
        _precise_bn(run, model, optim, cfg.precise_bn, epoch=cfg.epochs)  # the batches of the epoch after the last
    seconds = state.seconds + time.perf_counter() - run.t0
    if run.world.main:
        record = make_record(model.net, cfg.model, _record_extra(cfg, run, data, model, state, seconds))
        save_checkpoint(run.folder.final, model.net, record, epoch=len(state.losses), half=cfg.fp16_checkpoint)
    if run.world.size > 1:
        torch.distributed.barrier()
    last = last_loss(state.losses, all_mean(list(state.totals), run.world))  # a --max-steps stop: its epoch so far
    return TrainResult(
        run.folder.final,
        len(state.losses),
        state.step,
        seconds,
        state.losses,
        state.accs,
        state.val_accs,
        state.first_loss if state.first_loss is not None else float("nan"),
        last,
        len(_failed(data, state)),
        run.folder.root,
    )


def _record_extra(cfg, run: _Run, data: _Data, model: _Model, state: _State, seconds: float) -> dict:
    dev = run.device
    failed = _failed(data, state)
    gone = {f["path"] for f in state.failures} & {str(e.path) for e in data.entries}  # failed when drawn
    return {
        "train": plain(_asdict(cfg)),
        "command": run.command,
        "epochs_run": len(state.losses),
        "steps": state.step,
        "seconds": round(seconds, 1),
        "final_train_loss": state.losses[-1] if state.losses else None,
        "final_train_acc": state.accs[-1] if state.accs else None,
        "val_acc": state.val_accs,
        "val_videos": len(data.val) if data.val is not None else 0,
        "val_split": (
            {"fraction": cfg.val_fraction, "videos": len(data.held_out), "seed": cfg.seed} if data.held_out else None
        ),
        "videos_listed": data.listed,
        "videos_trained": len(data.entries) - len(gone),
        "failed_videos": len(failed),
        "failed": failed[:20],
        "init_from": model.init or None,
        "processes": run.world.size,
        "global_batch": cfg.batch_size,
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
        "class_names": sorted(data.label_map, key=data.label_map.get) if data.label_map else None,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
