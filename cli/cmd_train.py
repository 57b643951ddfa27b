"""``atfr train`` and ``atfr demo``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer


def _frames_overrides(model: str, frames: int | None) -> dict:
    """``--frames`` as the model's config change (``InputSpec.with_frames``, as every command)."""
    if frames is None:
        return {}
    import torch

    from atfr_analysis.models import build_model

    with torch.device("meta"):  # the default spec and config only: nothing allocated
        return build_model(model).frames_overrides(frames)


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        model: str = typer.Argument(..., help="registry name, e.g. slow_tiny_atfr"),
        data: Path = typer.Option(..., "--data", help="PySlowFast list of training videos ('path label')"),
        out: Path = typer.Option(
            ...,
            "--out",
            help="the final checkpoint (m.pyth: its run folder m.run/ beside it) or a run folder (model.pyth in it)",
        ),
        labels: Path | None = typer.Option(None, "--labels", help="label map (JSON or one name per line)"),
        data_root: Path | None = typer.Option(
            None,
            "--data-root",
            help="prefix for the relative paths of --data and --val (default: each list's own folder)",
        ),
        val: Path | None = typer.Option(
            None,
            "--val",
            help=(
                "validation list, profiled (--val-views x --val-crops) every --val-every epochs into "
                "<run>/val/epoch_NNN"
            ),
        ),
        val_fraction: float = typer.Option(
            0.0, "--val-fraction", help="hold out this fraction of --data (stratified, seeded) as a validation split"
        ),
        max_failed_fraction: float = typer.Option(
            0.1,
            "--max-failed-fraction",
            help="undecodable videos are recorded and skipped; stop only when more than this fraction fails",
        ),
        sgs_grad_clamp: float | None = typer.Option(
            None,
            "--sgs-grad-clamp",
            help=(
                "SGS models: clamp the gradient into the SGS embedding to [-c, c]; 0 stops it (the embedding "
                "keeps its weights); default: the official backward"
            ),
        ),
        epochs: int = typer.Option(30, "--epochs"),
        batch_size: int = typer.Option(16, "--batch-size"),
        lr: float = typer.Option(0.1, "--lr", help="base learning rate at batch size 64 (scaled linearly)"),
        weight_decay: float = typer.Option(1e-4, "--weight-decay"),
        warmup_epochs: float = typer.Option(2.0, "--warmup-epochs"),
        crop: int | None = typer.Option(None, "--crop", help="training crop (default: the model's train crop)"),
        clip_grad: float | None = typer.Option(
            None, "--clip-grad", help="clip the gradients' global L2 norm (recommended with SGS)"
        ),
        precise_bn: int = typer.Option(
            0, "--precise-bn", help="after training, recompute BN statistics over this many batches"
        ),
        batching: str = typer.Option(
            "exact", "--batching", help="SGS models: exact (each clip at its own B') or padded (official)"
        ),
        init_from: Path | None = typer.Option(
            None,
            "--init-from",
            help="start from a checkpoint (a baseline's, for an _atfr model: only SGS weights may be missing)",
        ),
        freeze_bn: bool = typer.Option(
            False, "--freeze-bn", help="keep BatchNorm statistics frozen (eval mode) while training"
        ),
        temporal_diff_init: float = typer.Option(
            0.0,
            "--temporal-diff-init",
            help=(
                "from scratch: this fraction of each temporal conv's output channels starts as a zero-sum "
                "(temporal-difference) kernel"
            ),
        ),
        precise_bn_first: int = typer.Option(
            0,
            "--precise-bn-first",
            help="before training (after --init-from), recompute BN statistics over this many batches",
        ),
        frames: int | None = typer.Option(None, "--frames", help="clip frames (default: the model's)"),
        workers: int = typer.Option(0, "--workers"),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda"),
        seed: int = typer.Option(0, "--seed"),
        threads: int | None = typer.Option(
            None,
            "--threads",
            help=(
                "CPU intra-op threads (default: the cores this process may use); a seeded run is "
                "bit-reproducible at a given count"
            ),
        ),
        fp16: bool = typer.Option(False, "--fp16-checkpoint", help="store weights in fp16 (loaded back to fp32)"),
        max_steps: int | None = typer.Option(None, "--max-steps", help="stop after this many steps"),
        precision: str = typer.Option(
            "fp32",
            "--precision",
            help="fp32, or autocast to bf16 / fp16 (fp16 with a gradient scaler); SGS's distances stay fp32",
        ),
        checkpoint_every: int = typer.Option(
            0,
            "--checkpoint-every",
            help="save the training state every this many steps (it is saved after every epoch too)",
        ),
        keep_last: int = typer.Option(2, "--keep-last", help="keep the newest this many training states"),
        resume: bool = typer.Option(
            False, "--resume", help="continue the run in the output folder (automatic when it holds a state)"
        ),
        reset_head: bool = typer.Option(
            False, "--reset-head", help="with --init-from: re-initialise a head with another class count"
        ),
        sync_bn: bool = typer.Option(False, "--sync-bn", help="torchrun: SyncBatchNorm over the ranks"),
        cache: bool = typer.Option(False, "--cache", help="keep decoded videos in memory (small data sets)"),
        max_loss: float | None = typer.Option(
            None, "--max-loss", help="stop when a step's loss exceeds this (default 100 x ln classes)"
        ),
        val_every: int = typer.Option(1, "--val-every", help="validate every this many epochs (and after the last)"),
        val_views: int = typer.Option(1, "--val-views", help="validation: temporal views per video"),
        val_crops: int = typer.Option(1, "--val-crops", help="validation: spatial crops per view (1 or 3)"),
        tensorboard: Path | None = typer.Option(
            None,
            "--tensorboard",
            help="also log the scalars and the bins' histogram for TensorBoard here (extra: tensorboard)",
        ),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """Train a model (SGD + momentum, warm-up + cosine, cross-entropy) into a PySlowFast-style checkpoint."""
        from atfr_analysis.train import TrainConfig, train

        overrides = _frames_overrides(model, frames)
        cfg = TrainConfig(
            model=model,
            data=str(data),
            labels=str(labels) if labels else None,
            data_root=str(data_root) if data_root else None,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
            crop=crop,
            clip_grad=clip_grad,
            precise_bn=precise_bn,
            batching=batching,
            init_from=str(init_from) if init_from else None,
            freeze_bn=freeze_bn,
            workers=workers,
            device=device,
            seed=seed,
            threads=threads,
            fp16_checkpoint=fp16,
            max_steps=max_steps,
            quiet=quiet,
            val_data=str(val) if val else None,
            model_overrides=overrides,
            val_fraction=val_fraction,
            max_failed_fraction=max_failed_fraction,
            sgs_grad_clamp=sgs_grad_clamp,
            temporal_diff_init=temporal_diff_init,
            precise_bn_first=precise_bn_first,
            precision=precision,
            checkpoint_every=checkpoint_every,
            keep_last=keep_last,
            resume=resume,
            reset_head=reset_head,
            sync_bn=sync_bn,
            cache=cache,
            max_loss=max_loss,
            val_every=val_every,
            val_views=val_views,
            val_crops=val_crops,
            tensorboard=str(tensorboard) if tensorboard else None,
        )
        r = train(cfg, out, command=["atfr"] + sys.argv[1:])
        if int(os.environ.get("RANK", "0")) != 0:
            return
        typer.echo(
            f"wrote {r.checkpoint}: {r.epochs} epochs, {r.steps} steps, {r.seconds:.0f} s; "
            f"loss {r.first_loss:.3f} -> {r.last_loss:.3f}"
            + (f"; train top-1 {r.train_acc[-1]:.1f}%" if r.train_acc else "")
            + (f"; val top-1 {r.val_acc[-1]:.1f}%" if r.val_acc else "")
            + (f"; skipped {r.failed} undecodable videos" if r.failed else "")
        )

    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("reports/demo"), "--out", help="report folder"),
        cache: Path | None = typer.Option(
            None,
            "--cache",
            help="where the demo's data set and runs live (default: $ATFR_CACHE_DIR, else "
            "$XDG_CACHE_HOME/atfr-analysis or ~/.cache/atfr-analysis)",
        ),
        workers: int = typer.Option(0, "--workers"),
        model_card: Path | None = typer.Option(
            None,
            "--model-card",
            help="also write the shipped checkpoints' model card here, from their records and this run's numbers "
            "(maintainers: atfr_analysis/checkpoints/MODEL_CARD.md)",
        ),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """The main job: the shipped baseline and ATFR checkpoints, profiled on the demo test split and reported."""
        from atfr_analysis.demo import run_demo

        res = run_demo(out=out, cache=cache, workers=workers, quiet=quiet)
        for line in res.lines():
            typer.echo(line)
        if model_card is not None:
            from atfr_analysis.shipped import write_model_card

            typer.echo(f"model card: {write_model_card(model_card, res.numbers)}")
