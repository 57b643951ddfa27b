"""The progress display of a profiling run: videos/s, views/s, ETA, running means, failures.

On a terminal: a rich progress bar on stderr. Elsewhere (a log file, a batch job): one plain line
every ``log_every_s`` seconds and a last one at the end. ``quiet``: nothing.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from atfr_analysis.profile.schema import bins_column

__all__ = ["ProfileProgress"]


class ProfileProgress:
    def __init__(
        self,
        total: int,
        quiet: bool = False,
        layers=(),
        description: str = "profiling",
        done_before: int = 0,
        views_per_video: int | None = None,
        console: Console | None = None,
        log_every_s: float = 30.0,
    ):
        self.total = total
        self.quiet = quiet
        self.layers = list(layers)
        self.description = description
        self.done_before = done_before
        self.views_per_video = views_per_video
        self.videos = self.views = self.failed = 0
        self.gmacs_sum = 0.0
        self.bins_sum = {l: 0.0 for l in self.layers}
        self.t0 = time.perf_counter()
        self.console = console or Console(stderr=True)
        self.log_every_s = log_every_s
        self._last_log = self.t0
        self._progress = None
        self._task = None

    # ------------------------------------------------------------------ context
    def __enter__(self):
        self.t0 = self._last_log = time.perf_counter()
        if self.quiet:
            return self
        if self.done_before:
            self.console.print(
                f"{self.description}: {self.done_before} videos already logged, {self.total} to go",
                markup=False,
                highlight=False,
            )
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"),
                console=self.console,
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, rate="", stats=self._stats())
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        elif not self.quiet and self.videos:
            self._log_line()

    # ------------------------------------------------------------------ numbers
    def rates(self) -> tuple[float, float]:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        return self.videos / dt, self.views / dt

    def _stats(self) -> str:
        stats = []
        if self.views:
            if self.layers:
                stats.append("B' " + "/".join(f"{self.bins_sum[l] / self.views:.2f}" for l in self.layers))
            stats.append(f"{self.gmacs_sum / self.views:.4g} GMACs/view")
        stats.append(f"failed {self.failed}")
        return " | ".join(stats)

    def _rate_text(self) -> str:
        v, w = self.rates()
        return f"{v:.2f} videos/s {w:.1f} views/s"

    def _log_line(self) -> None:
        v, _ = self.rates()
        left = self.total - self.videos
        eta = f"ETA {_hms(left / v)}" if v > 0 and left > 0 else "done" if left <= 0 else "ETA ?"
        self.console.print(
            f"{self.description}: {self.videos}/{self.total} videos, {self._rate_text()}, {eta} | {self._stats()}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        self._last_log = time.perf_counter()

    def update(self, video_row: dict, view_rows: list[dict]) -> None:
        self.videos += 1
        if video_row["status"] != "ok":
            self.failed += 1
        for r in view_rows:
            if r["status"] == "ok":
                self.views += 1
                self.gmacs_sum += r["gmacs"]
                for l in self.layers:
                    self.bins_sum[l] += r[bins_column(l)]
        if self.quiet:
            return
        if self._progress is not None:
            self._progress.update(self._task, advance=1, rate=self._rate_text(), stats=self._stats())
        elif time.perf_counter() - self._last_log >= self.log_every_s and self.videos < self.total:
            self._log_line()


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


if __name__ == "__main__":  # pragma: no cover - a look at the bar: python -m atfr_analysis.profile.progress
    with ProfileProgress(20, layers=["s2.ts_layer"], views_per_video=30) as p:
        for i in range(20):
            time.sleep(0.1)
            ok = i % 7 != 3
            rows = [
                {"status": "ok" if ok else "failed", "gmacs": 1.0, bins_column("s2.ts_layer"): 8} for _ in range(30)
            ]
            p.update({"status": "ok" if ok else "failed"}, rows)
    print("done", file=sys.stderr)
