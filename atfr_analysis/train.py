"""Training: SGD with momentum, linear warm-up then cosine decay, cross-entropy only.

The recipe follows PySlowFast's (``SOLVER.LR_POLICY: cosine`` with ``WARMUP_EPOCHS``, momentum
0.9, weight decay 1e-4 not applied to BN, dropout before the projection) and the official ATFR
code (cross-entropy only: SGS adds no loss). Training clips: a random temporal window of
``frames x sampling_rate`` frames, random short-side scale jitter, random crop and horizontal
flip, PySlowFast's normalisation. Checkpoints are PySlowFast's format (``model_state`` plus a
``cfg`` YAML record of the model, its config and the training command), loadable with
``weights_only=True``.

Every listed video is decoded once before the first step: the ones that cannot be decoded are
recorded (path and reason, ``failed_videos`` / ``failed`` in the record) and skipped, and training
stops with a one-line error only when more than ``max_failed_fraction`` of the list fails.
``val_fraction`` holds out a stratified part of the list as a validation split (never trained on,
its centre-view top-1 recorded per epoch), so a recipe is measured without touching a test split.
"""
from __future__ import annotations

import dataclasses
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from atfr_analysis.checkpoint import save_checkpoint
from atfr_analysis.errors import AtfrError, InputError
from atfr_analysis.models import build_model
from atfr_analysis.models.registry import get_entry

__all__ = [
    "TrainConfig", "TrainResult", "TrainDataError", "TrainingDiverged", "train", "item_seed", "make_record", "cosine_lr", "precise_bn",
    "recalibrate_bn", "split_validation", "probe_videos", "temporal_difference_init",
]


class TrainDataError(InputError):
    """The training list cannot be trained on (too many undecodable videos, an empty split)."""


class TrainingDiverged(AtfrError):
    """The loss (or an activation that reaches an SGS layer) is not finite: the run stops at that step."""


class _NonFinite(Exception):
    """Raised by the guard hooks inside a forward; turned into :class:`TrainingDiverged` with the step."""


@dataclass
class TrainConfig:
    model: str
    data: str  # PySlowFast list of training videos
    labels: str | None = None
    data_root: str | None = None
    epochs: int = 30
    batch_size: int = 16
    lr: float = 0.1  # at batch size 64 (scaled linearly, as PySlowFast's BASE_LR is per 8 GPUs)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 2.0
    workers: int = 0
    device: str = "auto"
    seed: int = 0
    crop: int | None = None  # default: the model's train crop
    scale_jitter: tuple[float, float] = (1.0, 1.25)  # short side = crop x U(a, b)
    model_overrides: dict[str, Any] = field(default_factory=dict)
    val_data: str | None = None  # optional list, evaluated on the centre view after each epoch
    max_steps: int | None = None  # stop early (tests)
    cache: bool = True  # keep decoded videos in memory (small datasets)
    #: clip the gradients' global L2 norm (PySlowFast's SOLVER.CLIP_GRAD_L2NORM). SGS's gradient
    #: scales like 2B / max(Delta): on clips of near-identical frames it reaches 1e7 and more
    #: (see the SGS fixtures' README), which blows up training from scratch without clipping.
    clip_grad: float | None = None
    #: after training, recompute BatchNorm statistics as exact averages over this many training
    #: batches (PySlowFast's BN.USE_PRECISE_STATS / NUM_BATCHES_PRECISE); 0 = off
    precise_bn: int = 0
    #: SGS models: how batches run after SGS while training. "exact" (default) runs every clip at
    #: its own B', as `atfr profile` does by default; "padded" is the official code's (the rest
    #: of the network then learns from zero-padded bins, and a clip's prediction depends on its
    #: batch, so profile such a model with --batching padded)
    batching: str = "exact"
    #: start from these weights (e.g. the baseline's, to fine-tune an _atfr model with SGS:
    #: only the SGS parameters may be missing)
    init_from: str | None = None
    #: keep BatchNorm layers in eval mode (running statistics frozen, as mmaction2's norm_eval):
    #: with exact batching the groups after SGS can be a single clip, too few for batch statistics
    freeze_bn: bool = False
    #: hold out this fraction of the training list (stratified by label, drawn with ``seed``) as a
    #: validation split, evaluated on the centre view after each epoch; the held-out videos are
    #: not trained on. 0 = off (``val_data`` is another way to validate)
    val_fraction: float = 0.0
    #: videos that cannot be decoded are recorded (path and reason, in the checkpoint's record)
    #: and skipped; training stops with an error only when more than this fraction of the list fails
    max_failed_fraction: float = 0.1
    #: SGS models: clamp each element of the gradient that reaches the SGS embedding (the output of
    #: its BatchNorm1d) to [-c, c]. The official backward (default: None, untouched) scales like
    #: 2B / max(Delta) and explodes on near-still clips; this tames it without changing the forward.
    #: 0 stops that gradient: the embedding keeps its weights (the frames still get their gradient
    #: through the bins' aggregation)
    sgs_grad_clamp: float | None = None
    #: from scratch only: make the temporal kernels (every Conv3d whose temporal size is > 1) of
    #: this fraction of each layer's output channels zero-sum over time at initialisation, so
    #: that those channels start as temporal-difference detectors (they see only what changes
    #: between frames; frame-to-frame changes of real footage are a few % of the pixel range and
    #: a randomly initialised kernel is dominated by appearance). 0 = the model's own init
    temporal_diff_init: float = 0.0
    #: before the first step (after ``init_from``), recompute the BatchNorm statistics over this
    #: many training batches (precise BN): inserting SGS into a trained baseline changes the
    #: statistics of everything after it (each bin aggregates several frames), and with
    #: ``freeze_bn`` the stale ones stay. 0 = off
    precise_bn_first: int = 0
    fp16_checkpoint: bool = False
    quiet: bool = False
    #: CPU intra-op threads for the run (restored afterwards). A CPU reduction's order, and so its
    #: last bits, depends on the thread count: a seeded run is bit-reproducible at a given count.
    #: None = the cores this process may run on (its affinity set), whatever torch was set to before
    threads: int | None = None
    #: stop (one line naming the step) when a step's loss exceeds this: it is exploding. None = 100 x
    #: ln(classes), a hundred times the cross-entropy of a uniform guess, where an untrained model starts
    max_loss: float | None = None


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


def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    """PySlowFast's schedule: linear warm-up from base/100 to base, then half a cosine down to 0."""
    if warmup > 0 and step < warmup:
        start = base * 0.01
        return start + (base - start) * step / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def make_record(model: nn.Module, name: str, extra: dict | None = None) -> dict:
    """A PySlowFast-like ``cfg`` record, so our checkpoints are checked like PySlowFast's."""
    spec = model.spec
    cfg = model.config
    arch = getattr(cfg, "arch", None) or ("x3d" if name.startswith("x3d") else None)
    arch = {"resnet3d": "3dresnet"}.get(arch, arch)
    rec: dict[str, Any] = {
        "MODEL": {"ARCH": arch, "MODEL_NAME": name, "NUM_CLASSES": int(cfg.num_classes)},
        "DATA": {
            "NUM_FRAMES": int(spec.clip_frames),
            "SAMPLING_RATE": int(spec.sampling_rate),
            "TRAIN_CROP_SIZE": int(spec.train_crop),
            "TEST_CROP_SIZE": int(spec.test_crop),
        },
        "TEST": {"NUM_ENSEMBLE_VIEWS": spec.num_views, "NUM_SPATIAL_CROPS": spec.num_crops},
        "ATFR_ANALYSIS": {
            "model": name,
            "config": _plain(dataclasses.asdict(cfg)) if dataclasses.is_dataclass(cfg) else None,
        },
    }
    if spec.alpha is not None:
        rec["SLOWFAST"] = {"ALPHA": int(spec.alpha)}
    if extra:
        rec["ATFR_ANALYSIS"].update(_plain(extra))
    return rec


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (Path, str)):
        return str(obj)  # also str subclasses such as torch's version string
    return obj


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one training clip's augmentation: a function of (run seed, epoch, item) only, so
    a clip is the same whichever loader worker draws it, in whatever order."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1, np.uint64)[0] >> 1)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class TrainClips(torch.utils.data.Dataset):
    """Random training clips of a video list (decoded once and cached when ``cache``)."""

    def __init__(self, entries, spec, crop: int, scale_jitter=(1.0, 1.25), cache: bool = True, seed: int = 0):
        self.entries = list(entries)
        self.spec = spec
        self.crop = crop
        self.scale_jitter = scale_jitter
        self.cache = cache
        self.seed = seed
        self.epoch = 0
        self._frames: dict[int, tuple[torch.Tensor, float]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def _video(self, i: int):
        from atfr_analysis.data.video import decode_video

        if i in self._frames:
            return self._frames[i]
        frames, fps = decode_video(self.entries[i].path)
        if self.cache:
            self._frames[i] = (frames, fps)
        return frames, fps

    def __getitem__(self, i: int):
        from atfr_analysis.data.transforms import normalize, pack_pathways, temporal_indices

        g = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, i))
        frames, fps = self._video(i)  # uint8 [T, H, W, 3]
        spec = self.spec
        idx = temporal_indices(frames.shape[0], fps, spec, clip_idx=-1, num_clips=1, generator=g)
        clip = frames.index_select(0, idx).permute(3, 0, 1, 2).float()  # [3, T, H, W]
        lo, hi = self.scale_jitter
        short = int(round(self.crop * (lo + (hi - lo) * torch.rand(1, generator=g).item())))
        short = max(short, self.crop)
        h, w = clip.shape[-2:]
        if h <= w:
            size = (short, max(short, int(round(w * short / h))))
        else:
            size = (max(short, int(round(h * short / w))), short)
        clip = F.interpolate(clip, size=size, mode="bilinear", align_corners=False)
        y0 = int(torch.randint(0, clip.shape[-2] - self.crop + 1, (1,), generator=g))
        x0 = int(torch.randint(0, clip.shape[-1] - self.crop + 1, (1,), generator=g))
        clip = clip[..., y0 : y0 + self.crop, x0 : x0 + self.crop]
        if torch.rand(1, generator=g).item() < 0.5:
            clip = clip.flip(-1)
        clip = normalize(clip)
        return pack_pathways(clip, spec), self.entries[i].label


def split_validation(entries, fraction: float, seed: int = 0):
    """``(train, val)``: a stratified hold-out of ``fraction`` of each label's videos (at least one
    per label when ``fraction > 0`` and the label has two or more), drawn with ``seed``; both keep
    the list's order."""
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"the validation fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return list(entries), []
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, e in enumerate(entries):
        by_label.setdefault(int(e.label), []).append(i)
    held: set[int] = set()
    for label in sorted(by_label):
        idx = by_label[label]
        k = min(len(idx) - 1, max(1, int(round(fraction * len(idx)))))
        held.update(rng.sample(idx, k))
    return [e for i, e in enumerate(entries) if i not in held], [e for i, e in enumerate(entries) if i in held]


def probe_videos(entries, cache: dict | None = None):
    """Decode every video once: ``(ok, failed)``, ``failed`` a list of ``{"path", "reason"}``. The
    decoded frames of the good ones go into ``cache`` (keyed by their position in ``ok``)."""
    from atfr_analysis.data import DataError
    from atfr_analysis.data.video import decode_video

    ok, failed = [], []
    for e in entries:
        try:
            frames, fps = decode_video(e.path)
        except (DataError, OSError, RuntimeError, ValueError) as exc:
            failed.append({"path": str(e.path), "reason": " ".join(str(exc).split())})
            continue
        if cache is not None:
            cache[len(ok)] = (frames, fps)
        ok.append(e)
    return ok, failed


def _collate(batch):
    paths = list(zip(*[b[0] for b in batch]))
    return [torch.stack(p) for p in paths], torch.tensor([b[1] for b in batch])


def _param_groups(model: nn.Module, wd: float):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if (p.ndim <= 1 or ".bn" in n or "bn." in n) else decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def train(cfg: TrainConfig, out: str | Path, command: Sequence[str] | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data`` and write a checkpoint to ``out`` (after every epoch, so
    a run that diverges keeps the last good one).

    Deterministic on the CPU for a given seed and thread count: the run sets torch's intra-op
    thread count (``cfg.threads``) for its duration, since a CPU reduction's order follows it
    (another test or command in the same process may have changed it), and every clip's
    augmentation is drawn from its own seed (:func:`item_seed`)."""
    from atfr_analysis.tuning import affinity_cores

    if cfg.threads is not None and cfg.threads < 1:
        raise InputError(f"--threads must be >= 1, got {cfg.threads}")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise InputError(f"--lr must be a finite number > 0, got {cfg.lr}")
    before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads or affinity_cores())
    try:
        return _train(cfg, out, command)
    finally:
        torch.set_num_threads(before)


def _nonfinite_guards(model: nn.Module) -> list:
    """Hooks on every SGS layer that stop the step when its input or its embedding is not finite
    (a finite but huge input overflows in the embedding's MLP): SGS would keep no bin and the next
    pooling fail on an empty tensor. Returns the handles."""
    from atfr_analysis.sgs import SimilarityGuidedSampling

    def check(t: torch.Tensor, what: str) -> None:
        if not bool(torch.isfinite(t.detach()).all()):
            raise _NonFinite(what)

    handles = []
    for name, m in model.named_modules():
        if isinstance(m, SimilarityGuidedSampling):
            handles.append(m.register_forward_pre_hook(
                lambda _m, inp, n=name: check(inp[0], f"the input of SGS layer {n} is not finite")))
            handles.append(m.bn.register_forward_hook(
                lambda _m, _i, z, n=name: check(z, f"the embedding of SGS layer {n} is not finite")))
    return handles


def _diverged(step: int, epoch: int, what: str, out: Path, saved_epoch: int | None) -> TrainingDiverged:
    kept = (f"the last good checkpoint {out} (epoch {saved_epoch}) is kept" if saved_epoch is not None
            else "no checkpoint was written (it diverged in the first epoch)")
    return TrainingDiverged(f"training diverged at step {step + 1} (epoch {epoch + 1}): {what}; {kept}; "
                            "lower --lr or set --clip-grad")


def _train(cfg: TrainConfig, out: str | Path, command: Sequence[str] | None = None) -> TrainResult:
    from atfr_analysis.data.datasets import loader_context, read_label_map, read_video_list
    from atfr_analysis.runtime import resolve_device

    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise InputError("--epochs and --batch-size must be >= 1")
    get_entry(cfg.model)
    _seed_all(cfg.seed)
    dev = resolve_device(cfg.device)
    label_map = read_label_map(cfg.labels) if cfg.labels else None
    if not 0.0 <= cfg.max_failed_fraction <= 1.0:
        raise InputError(f"--max-failed-fraction must be in [0, 1], got {cfg.max_failed_fraction}")
    entries = read_video_list(cfg.data, data_root=cfg.data_root, labels=label_map)
    ncls = len(label_map) if label_map else max(e.label for e in entries) + 1
    model = build_model(cfg.model, num_classes=ncls, **cfg.model_overrides)
    spec = model.spec
    crop = cfg.crop or spec.train_crop
    use_cache = cfg.cache and cfg.workers == 0
    frames_cache: dict = {}
    listed = len(entries)
    entries, failed = probe_videos(entries, frames_cache if use_cache else None)
    if len(failed) > cfg.max_failed_fraction * listed or not entries:
        raise TrainDataError(
            f"{len(failed)} of {listed} training videos cannot be decoded (more than --max-failed-fraction "
            f"{cfg.max_failed_fraction:g}); first: {failed[0]['path']}: {failed[0]['reason']}"
        )
    if failed and not cfg.quiet:
        print(f"warning: skipping {len(failed)} of {listed} training videos that cannot be decoded "
              f"(first: {failed[0]['path']}: {failed[0]['reason']})", file=sys.stderr)
    held_out: list = []
    if cfg.val_fraction:
        train_entries, held_out = split_validation(entries, cfg.val_fraction, cfg.seed)
        keep = {id(e): i for i, e in enumerate(entries)}
        frames_cache = {j: frames_cache[keep[id(e)]] for j, e in enumerate(train_entries) if keep[id(e)] in frames_cache}
        entries = train_entries
    ds = TrainClips(entries, spec, crop, cfg.scale_jitter, cache=use_cache, seed=cfg.seed)
    ds._frames.update(frames_cache)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=cfg.batch_size, shuffle=True, drop_last=len(ds) > cfg.batch_size,
        num_workers=cfg.workers, collate_fn=_collate, generator=gen, multiprocessing_context=loader_context(cfg.workers),
    )
    if cfg.temporal_diff_init:
        temporal_difference_init(model, cfg.temporal_diff_init)
    if cfg.init_from:
        from atfr_analysis.checkpoint import load_checkpoint, load_state_into

        load_state_into(model, load_checkpoint(cfg.init_from).state_dict, allow_missing="sgs")
    if model.sgs_layer_names():
        model.set_batching(cfg.batching)
    model.to(dev)
    if cfg.precise_bn_first:
        precise_bn(model, loader, cfg.precise_bn_first, dev)
    lr = cfg.lr * cfg.batch_size / 64
    opt = torch.optim.SGD(_param_groups(model, cfg.weight_decay), lr=lr, momentum=cfg.momentum, nesterov=True)
    steps_per_epoch = len(loader)
    total = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    val = None
    if cfg.val_data:
        val = read_video_list(cfg.val_data, data_root=cfg.data_root, labels=label_map)
    if held_out:
        val = (val or []) + held_out
    hooks = _sgs_grad_clamp_hooks(model, cfg.sgs_grad_clamp) if cfg.sgs_grad_clamp is not None else []
    hooks += _nonfinite_guards(model)
    max_loss = cfg.max_loss if cfg.max_loss is not None else 100 * math.log(max(ncls, 2))
    out = Path(out)
    saved_epoch = None

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    losses, accs, val_accs = [], [], []
    first_loss = None
    step = 0
    t0 = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]train {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
        disable=cfg.quiet,
    )
    with progress:
        task = progress.add_task("train", total=total if cfg.max_steps is None else min(total, cfg.max_steps), epoch="", stats="")
        for epoch in range(cfg.epochs):
            ds.epoch = epoch
            model.train()
            if cfg.freeze_bn:
                for mod in model.modules():
                    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                        mod.eval()
            tot_loss = tot_correct = tot_n = 0.0
            for xs, y in loader:
                for gr in opt.param_groups:
                    gr["lr"] = cosine_lr(step, total, lr, warmup)
                xs = [x.to(dev, non_blocking=True) for x in xs]
                y = y.to(dev)
                try:
                    logits = model(xs)
                except _NonFinite as exc:
                    raise _diverged(step, epoch, str(exc), out, saved_epoch) from None
                loss = F.cross_entropy(logits, y)
                if not torch.isfinite(loss) or float(loss.detach()) > max_loss:
                    raise _diverged(step, epoch, f"loss {float(loss.detach())}", out, saved_epoch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip_grad:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                opt.step()
                step += 1
                lv = float(loss.detach())
                if first_loss is None:
                    first_loss = lv
                n = y.shape[0]
                tot_loss += lv * n
                tot_correct += float((logits.argmax(1) == y).sum())
                tot_n += n
                progress.update(
                    task, advance=1, epoch=f"{epoch + 1}/{cfg.epochs}",
                    stats=f"loss {tot_loss / tot_n:.3f} acc {100 * tot_correct / tot_n:.1f}% lr {opt.param_groups[0]['lr']:.4f}",
                )
                if cfg.max_steps is not None and step >= cfg.max_steps:
                    break
            losses.append(tot_loss / max(tot_n, 1))
            accs.append(100 * tot_correct / max(tot_n, 1))
            if val is not None:
                val_accs.append(evaluate_centre(model, val, spec, dev))
            if cfg.quiet:  # one line per epoch for logs
                print(
                    f"epoch {epoch + 1}/{cfg.epochs} step {step} loss {losses[-1]:.4f} train-acc {accs[-1]:.1f}%"
                    + (f" val-acc {val_accs[-1]:.1f}%" if val_accs else "")
                    + f" {time.perf_counter() - t0:.0f}s",
                    flush=True,
                )
            stop = cfg.max_steps is not None and step >= cfg.max_steps
            if epoch + 1 < cfg.epochs and not stop:  # the last epoch's checkpoint is written below
                _save(out, model, cfg, command, {"steps": step, "losses": losses, "accs": accs}, epoch + 1)
                saved_epoch = epoch + 1
            if stop:
                break
    for h in hooks:
        h.remove()
    if cfg.precise_bn:
        precise_bn(model, loader, cfg.precise_bn, dev)
    seconds = time.perf_counter() - t0
    record = make_record(
        model, cfg.model,
        {
            "train": _plain(dataclasses.asdict(cfg)),
            "command": list(command) if command is not None else sys.argv,
            "epochs_run": len(losses),
            "steps": step,
            "seconds": round(seconds, 1),
            "final_train_loss": losses[-1] if losses else None,
            "final_train_acc": accs[-1] if accs else None,
            "val_acc": val_accs,
            "val_videos": len(val) if val is not None else 0,
            "val_split": {"fraction": cfg.val_fraction, "videos": len(held_out), "seed": cfg.seed} if held_out else None,
            "videos_listed": listed,
            "videos_trained": len(entries),
            "failed_videos": len(failed),
            "failed": failed[:20],
            "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
            "class_names": sorted(label_map, key=label_map.get) if label_map else None,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
    )
    model.cpu()
    path = save_checkpoint(out, model, record, epoch=len(losses), half=cfg.fp16_checkpoint)
    return TrainResult(path, len(losses), step, seconds, losses, accs, val_accs, first_loss or float("nan"), losses[-1] if losses else float("nan"), len(failed))


def _save(out: Path, model: nn.Module, cfg: TrainConfig, command, progress: dict, epoch: int) -> Path:
    """The checkpoint of a finished epoch that is not the last (written atomically over ``out``)."""
    record = make_record(model, cfg.model, {
        "train": _plain(dataclasses.asdict(cfg)),
        "command": list(command) if command is not None else sys.argv,
        "epochs_run": epoch, "steps": progress["steps"], "finished": False,
        "final_train_loss": progress["losses"][-1] if progress["losses"] else None,
        "final_train_acc": progress["accs"][-1] if progress["accs"] else None,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
    })
    return save_checkpoint(out, model, record, epoch=epoch, half=cfg.fp16_checkpoint)


@torch.no_grad()
def temporal_difference_init(model: nn.Module, fraction: float) -> int:
    """Make the temporal kernel of the first ``fraction`` of the output channels of every Conv3d
    with a temporal extent > 1 zero-sum over time (its mean over the temporal taps subtracted), so
    that those channels respond only to change between frames. Returns the number of layers."""
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"the temporal-difference fraction must be in (0, 1], got {fraction}")
    n = 0
    for m in model.modules():
        if isinstance(m, nn.Conv3d) and m.kernel_size[0] > 1:
            k = int(round(fraction * m.out_channels))
            w = m.weight[:k]
            w -= w.mean(dim=2, keepdim=True)
            n += 1
    return n


def _sgs_grad_clamp_hooks(model: nn.Module, clamp: float) -> list:
    """Forward hooks on every SGS layer's embedding BatchNorm that clamp the gradient flowing back
    into the embedding to [-clamp, clamp] (the forward is unchanged). Returns the hook handles."""
    from atfr_analysis.sgs import SimilarityGuidedSampling

    if clamp < 0:
        raise InputError(f"--sgs-grad-clamp must be >= 0, got {clamp}")

    def hook(_mod, _inp, out):
        if out.requires_grad:
            out.register_hook(lambda g: g.clamp(-clamp, clamp) if clamp > 0 else torch.zeros_like(g))

    handles = [m.bn.register_forward_hook(hook) for m in model.modules() if isinstance(m, SimilarityGuidedSampling)]
    if not handles:
        raise InputError("--sgs-grad-clamp needs a model with an SGS layer (an _atfr model)")
    return handles


@torch.no_grad()
def precise_bn(model: nn.Module, loader, num_batches: int, dev: torch.device | str = "cpu") -> int:
    """Recompute every BatchNorm's running statistics over ``num_batches`` training batches
    (PySlowFast's precise BN): the running averages kept during training lag behind the weights,
    and inserting SGS into a trained model changes the statistics of everything after it.

    The statistics are those of the population: the sum and the sum of squares of every BN's input
    over all the samples seen (the forward itself normalises with batch statistics, as in
    training). With exact batching an SGS model runs each group of clips of one B' on its own, so
    an average of per-call statistics would weight a one-clip group like a full batch and miss the
    variance between groups; the population statistics do neither. Returns the batches used."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    acc: dict[int, list] = {}

    def pre_hook(mod, inp):
        x = inp[0].detach()
        dims = [d for d in range(x.dim()) if d != 1]
        n = x.numel() // max(x.shape[1], 1)
        a = acc.setdefault(id(mod), [0, 0.0, 0.0])
        a[0] += n
        a[1] = a[1] + x.sum(dim=dims, dtype=torch.float64)
        a[2] = a[2] + x.double().pow(2).sum(dim=dims)

    handles = [bn.register_forward_pre_hook(pre_hook) for bn in bns]
    was_training = model.training
    model.train()
    used = 0
    try:
        while used < num_batches:
            for xs, _y in loader:
                model([x.to(dev) for x in xs])
                used += 1
                if used >= num_batches:
                    break
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for bn in bns:
        a = acc.get(id(bn))
        if not a or a[0] < 2:
            continue
        n, s1, s2 = a
        mean = s1 / n
        var = (s2 / n - mean * mean).clamp_min(0) * (n / (n - 1))
        bn.running_mean.copy_(mean.to(bn.running_mean.dtype))
        bn.running_var.copy_(var.to(bn.running_var.dtype))
        if bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(used)
    return used


def recalibrate_bn(
    checkpoint: str | Path, out: str | Path, model_name: str, data: str, labels: str | None = None,
    num_batches: int = 200, batch_size: int = 16, seed: int = 0, device: str = "cpu",
) -> Path:
    """Precise BN on an existing checkpoint (same training clips and augmentation); the record of
    the new checkpoint notes it."""
    from atfr_analysis.checkpoint import load_checkpoint
    from atfr_analysis.data.datasets import read_label_map, read_video_list
    from atfr_analysis.loading import load_model_from_checkpoint
    from atfr_analysis.runtime import resolve_device

    dev = resolve_device(device)
    model, ck, _ = load_model_from_checkpoint(checkpoint, model_name)
    _seed_all(seed)
    label_map = read_label_map(labels) if labels else None
    entries = read_video_list(data, labels=label_map)
    spec = model.spec
    ds = TrainClips(entries, spec, spec.train_crop, cache=True, seed=seed)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=_collate,
        generator=torch.Generator().manual_seed(seed),
    )
    model.to(dev)
    used = precise_bn(model, loader, num_batches, dev)
    model.cpu()
    record = dict(ck.cfg or {})
    rec = dict(record.get("ATFR_ANALYSIS", {}))
    rec["precise_bn"] = {"batches": used, "batch_size": batch_size, "seed": seed, "data": str(data)}
    record["ATFR_ANALYSIS"] = rec
    half = any(v.dtype == torch.float16 for v in torch.load(checkpoint, weights_only=True)["model_state"].values())
    return save_checkpoint(out, model, record, epoch=int(ck.meta.get("epoch", 0)), half=half)


@torch.no_grad()
def evaluate_centre(model: nn.Module, entries, spec, dev) -> float:
    """Top-1 (%) on the centre view of each video (one temporal clip, centre crop)."""
    from atfr_analysis.data.datasets import ViewDataset

    model.eval()
    ds = ViewDataset(entries, spec, views=1, crops=1)
    correct = n = 0
    for k in range(len(ds)):
        item = ds[k]
        if item["status"] != "ok":
            continue
        xs = [p.to(dev) for p in item["pathways"]]
        pred = int(model(xs).argmax(1)[0])
        correct += int(pred == entries[k].label)
        n += 1
    model.train()
    return 100.0 * correct / max(n, 1)
