"""Profiling: instrumented inference (``profile_clips``), runs over video lists (``profile``) and the log."""
from atfr_analysis.profile.instrument import Profiler, profile_clips
from atfr_analysis.profile.log import RunError, load_run, load_videos, read_meta

__all__ = ["Profiler", "profile_clips", "load_run", "load_videos", "read_meta", "RunError", "profile", "summarize"]


def __getattr__(name):  # the runner imports the data layer: load it lazily
    if name in ("profile", "summarize"):
        from atfr_analysis.profile import run

        return getattr(run, name)
    raise AttributeError(name)
