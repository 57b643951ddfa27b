"""Profiling: instrumented inference (``profile_clips``), runs over video lists (``profile``,
driven by a ``ProfileConfig``), the log (``load_run``; its columns in ``schema``) and the run's
summary (``summarize``)."""
from atfr_analysis.profile.config import ProfileConfig
from atfr_analysis.profile.instrument import Profiler, profile_clips
from atfr_analysis.profile.log import RunError, load_run, load_videos, read_meta

__all__ = [
    "Profiler", "profile_clips", "load_run", "load_videos", "read_meta", "RunError",
    "ProfileConfig", "profile", "run_profile", "summarize", "RunSummary",
]


def __getattr__(name):  # the runner imports the data layer: load it lazily
    if name in ("profile", "run_profile"):
        from atfr_analysis.profile import run

        return getattr(run, name)
    if name in ("summarize", "RunSummary"):
        from atfr_analysis.profile import summary

        return getattr(summary, name)
    raise AttributeError(name)
