"""What a run shows: a progress bar on rank 0 in a terminal (clips/s, ETA, loss, lr), a plain line
per epoch (above the bar; a log file sees each epoch as it ends), nothing with ``quiet`` (errors
still reach stderr); ``last_loss``, the loss the run's closing line reports."""

from __future__ import annotations

import sys
import time

__all__ = ["TrainProgress", "last_loss"]


class TrainProgress:
    def __init__(self, run, total: int, stop: int, done: int):
        self.run, self.stop, self.done = run, stop, done
        self.t0, self.clips = time.perf_counter(), 0
        self.bar = None
        if run.world.main and not run.cfg.quiet and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"),
                transient=False,
            )

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
            self.task = self.bar.add_task("train", total=self.stop, completed=self.done, stats="")
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def step(self, state, lr: float, clips: int) -> None:
        self.clips += clips
        if self.bar is None:
            return
        t = state.totals
        rate = self.clips / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(
            self.task,
            completed=state.step,
            stats=(f"epoch {state.epoch + 1} loss {t[0] / max(t[2], 1):.3f} lr {lr:.4g} {rate:.1f} clips/s"),
        )

    def epoch_line(self, state, epochs: int) -> None:
        """One plain line per epoch on rank 0 (in a terminal too, above the bar); none with ``quiet``."""
        if not self.run.world.main or self.run.cfg.quiet:
            return
        rate = self.clips / max(time.perf_counter() - self.t0, 1e-9)
        line = (
            f"epoch {state.epoch}/{epochs} step {state.step} loss {state.losses[-1]:.4f} "
            f"train-acc {state.accs[-1]:.1f}%"
            + (f" val-acc {state.val_accs[-1]:.1f}%" if state.val_accs else "")
            + f" {rate:.1f} clips/s {time.perf_counter() - self.run.t0:.0f}s"
        )
        if self.bar is not None:
            self.bar.console.print(line)
        else:
            print(line, flush=True)


def last_loss(losses: list[float], totals: list) -> float:
    """The loss a run last measured: the mean over the steps of the epoch it stopped in (a
    ``--max-steps`` stop; ``totals`` = loss x n, correct, n of that epoch so far, over the ranks),
    else the last epoch's mean; NaN only before any step."""
    if totals[2] > 0:
        return totals[0] / totals[2]
    return losses[-1] if losses else float("nan")
