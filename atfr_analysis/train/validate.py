"""Validation into the profile's own log: the epoch's weights through ``run_profile`` with the
test protocol asked for (``val_views`` x ``val_crops``; 1 x 1 centre view by default), written as
a run folder ``<run>/val/epoch_NNN/`` that ``atfr report`` and ``atfr table`` open, with the
checkpoint it profiled beside it (``epoch_NNN.pyth``).

Under torchrun every rank profiles its shard of the list (``rank/size``, passed explicitly: the
profile never reads the trainer's ``RANK`` / ``WORLD_SIZE`` itself) into the one folder; rank 0
then summarises the whole folder and stamps its ``run.json``. An error on any rank is raised on
every rank (none waits for a rank that stopped). A folder left by an earlier attempt of this run
(killed during the validation) is continued when its settings match (the same weights and
protocol); otherwise (other weights, as after ``--threads`` changed, or another ``--val-views``)
it is the trainer's own output for weights it no longer has, and is profiled again from scratch.
The validation leaves the training's RNG states as it found them."""

from __future__ import annotations

import contextlib
import pickle
import shutil
import time
from pathlib import Path

from torch import nn

from atfr_analysis.errors import AtfrError, InputError

__all__ = ["validate_epoch", "write_val_list", "VALIDATION_COMMAND"]

#: how a validation folder's ``run.json`` names its command (what marks it as the trainer's own)
VALIDATION_COMMAND = ["atfr", "train", "(validation of epoch"]


def write_val_list(entries, path: Path) -> Path:
    """The validation videos as a PySlowFast list (absolute paths), for the profile to read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{Path(e.path).resolve()} {int(e.label)}\n" for e in entries))
    return path


def validate_epoch(net: nn.Module, cfg, root: Path, entries, epoch: int, device, world) -> dict:
    """Every rank calls it: profile the weights of ``epoch`` on the validation ``entries`` (sharded
    over the ranks); the metrics of the whole folder's summary, the same on every rank."""
    from atfr_analysis.train.dist import barrier, gather_objects

    t0 = time.perf_counter()
    out = root / "val" / f"epoch_{epoch:03d}"
    with _rng_kept():
        if world.main:
            write_val_list(entries, root / "val" / "videos.txt")
            _write_checkpoint(net, cfg, root / "val" / f"epoch_{epoch:03d}.pyth", epoch)
        barrier(world)  # the list and the checkpoint are on disk
        pc = _profile_config(cfg, root / "val" / "videos.txt", out, epoch, device, world)
        _profile_on_every_rank(pc, out, world)
        metrics = _merge(out, time.perf_counter() - t0) if world.main else None
    return gather_objects(metrics, world)[0]


def _write_checkpoint(net: nn.Module, cfg, path: Path, epoch: int) -> Path:
    from atfr_analysis.checkpoint import save_checkpoint
    from atfr_analysis.train.recipe import make_record

    was_training = net.training
    try:
        return save_checkpoint(path, net, make_record(net, cfg.model, {"validation_of_epoch": epoch}), epoch=epoch)
    finally:
        net.train(was_training)


def _profile_config(cfg, val_list: Path, out: Path, epoch: int, device, world):
    from atfr_analysis.profile.config import ProfileConfig

    return ProfileConfig(
        out.parent / f"epoch_{epoch:03d}.pyth",
        cfg.model,
        val_list,
        out,
        labels=cfg.labels,
        views=cfg.val_views,
        crops=cfg.val_crops,
        batching=cfg.batching,
        device=str(device),
        workers=cfg.workers,
        batch_size=1,
        max_failed_fraction=1.0,
        quiet=True,
        resume=True,  # a folder of an earlier attempt is continued (when its settings match)
        shard=f"{world.rank}/{world.size}",
        command=[*VALIDATION_COMMAND, f"{epoch})"],
    )


def _profile_on_every_rank(pc, out: Path, world) -> None:
    """Each rank's shard; a folder that cannot be continued and is this trainer's own is removed
    (rank 0) and profiled again from scratch; else the first rank's error, on every rank."""
    from atfr_analysis.profile.log import RunError
    from atfr_analysis.profile.run import run_profile
    from atfr_analysis.train.dist import barrier, gather_objects

    err = _on_every_rank(lambda: run_profile(pc), world)
    if err is None:
        return
    redo = gather_objects(world.main and isinstance(err, RunError) and _trainers_own(out), world)[0]
    if not redo:
        if isinstance(err, RunError) and _is_run(out):
            raise InputError(f"{out} holds a run that atfr train did not write: move it away ({err})") from None
        raise err
    if world.main:
        shutil.rmtree(out)
    barrier(world)
    err = _on_every_rank(lambda: run_profile(pc), world)
    if err is not None:
        raise err


def _on_every_rank(fn, world) -> BaseException | None:
    """Run ``fn`` on every rank: ``None`` when every rank succeeded, else this rank's error (or the
    first failed rank's), the same outcome on every rank."""
    from atfr_analysis.train.dist import gather_objects
    from atfr_analysis.train.recipe import NonFinite

    mine = None
    try:
        fn()
    except (AtfrError, NonFinite) as exc:
        mine = exc
    errs = gather_objects(_portable(mine), world)
    return mine or next((e for e in errs if e is not None), None)


def _portable(exc: BaseException | None) -> BaseException | None:
    """``exc`` as the other ranks can receive it (a pickled object; its message when it cannot be pickled)."""
    if exc is None:
        return None
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return InputError(str(exc))


def _is_run(out: Path) -> bool:
    from atfr_analysis.profile.log import is_run

    return is_run(out)


def _trainers_own(out: Path) -> bool:
    """The folder is a validation written by ``atfr train`` (its ``run.json`` names that command)."""
    from atfr_analysis.profile.log import read_meta

    try:
        command = read_meta(out).get("command") or []
    except (AtfrError, OSError, ValueError):
        return False
    return list(command[: len(VALIDATION_COMMAND)]) == VALIDATION_COMMAND


def _merge(out: Path, seconds: float) -> dict:
    """Rank 0, once every shard is on disk: the whole folder's summary, stamped into ``run.json``."""
    from atfr_analysis.profile.record import stamp_end
    from atfr_analysis.profile.summary import summarize

    s = summarize(out, elapsed=seconds, max_failed_fraction=1.0)
    stamp_end(out, s.to_dict())
    bins = s.mean_bins or {}
    return {
        "val_top1": s.top1,
        "val_top5": s.top5,
        "val_mean_class_acc": s.mean_class_acc,
        "gmacs_x_views": s.gmacs_x_views,
        "mean_bins": {str(k): float(v) for k, v in bins.items()},
        "val_folder": str(out),
    }


@contextlib.contextmanager
def _rng_kept():
    """The validation (building the model, its loader) draws from no RNG the training goes on with."""
    from atfr_analysis.train.state import rng_state, set_rng_state

    before = rng_state()
    try:
        yield
    finally:
        set_rng_state(before)
