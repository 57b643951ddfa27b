"""Profiling: instrumented inference (``profile_clips``), runs over video lists (``profile``,
driven by a ``ProfileConfig``), the log (``load_run``; its columns in ``schema``) and the run's
summary (``summarize``).

The package is also callable: ``atfr_analysis.profile(ckpt, model, data, out, **opts)`` is
``atfr_analysis.profile.run.profile`` (the README's ``atfr.profile(...)``), so that the name
``atfr_analysis.profile`` means this package whichever way it is imported.
"""

import sys
import types

from atfr_analysis.lazy import lazy_exports

__all__ = [
    "Profiler",
    "profile_clips",
    "load_run",
    "load_videos",
    "read_meta",
    "RunError",
    "ProfileConfig",
    "profile",
    "run_profile",
    "summarize",
    "RunSummary",
]

# loaded on first use: ``atfr --help`` reads ProfileConfig's options without torch
__getattr__ = lazy_exports(
    __name__,
    {
        "ProfileConfig": "config",
        "Profiler": "instrument",
        "profile_clips": "instrument",
        "RunError": "log",
        "load_run": "log",
        "load_videos": "log",
        "read_meta": "log",
        "profile": "run",
        "run_profile": "run",
        "summarize": "summary",
        "RunSummary": "summary",
    },
)


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        """``profile(ckpt, model, data, out, **opts)`` or ``profile(config)``: see
        :func:`atfr_analysis.profile.run.profile`."""
        from atfr_analysis.profile.run import profile

        return profile(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
