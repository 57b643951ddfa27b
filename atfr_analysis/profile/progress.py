"""The rich progress bar of a profiling run: videos/s, views/s, ETA, running means, failures."""
from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["ProfileProgress"]


class ProfileProgress:
    def __init__(self, total: int, quiet: bool = False, layers=(), description: str = "profiling"):
        self.total = total
        self.quiet = quiet
        self.layers = list(layers)
        self.description = description
        self.videos = self.views = self.failed = 0
        self.gmacs_sum = 0.0
        self.bins_sum = {l: 0.0 for l in self.layers}
        self.t0 = time.perf_counter()
        self._progress = None
        self._task = None

    def __enter__(self):
        if not self.quiet:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, rate="", stats="")
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def update(self, video_row: dict, view_rows: list[dict]) -> None:
        self.videos += 1
        if video_row["status"] != "ok":
            self.failed += 1
        for r in view_rows:
            if r["status"] == "ok":
                self.views += 1
                self.gmacs_sum += r["gmacs"]
                for l in self.layers:
                    self.bins_sum[l] += r[f"bins.{l}"]
        if self._progress is None:
            return
        dt = max(time.perf_counter() - self.t0, 1e-9)
        rate = f"{self.videos / dt:.2f} videos/s {self.views / dt:.1f} views/s"
        stats = []
        if self.views:
            if self.layers:
                stats.append("B' " + "/".join(f"{self.bins_sum[l] / self.views:.1f}" for l in self.layers))
            stats.append(f"{self.gmacs_sum / self.views:.3f} GMACs/view")
        stats.append(f"failed {self.failed}")
        self._progress.update(self._task, advance=1, rate=rate, stats=" | ".join(stats))
