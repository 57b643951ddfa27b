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
from atfr_analysis.profile.config import ProfileConfig
from atfr_analysis.profile.instrument import Profiler, profile_clips
from atfr_analysis.profile.log import RunError, load_run, load_videos, read_meta

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

# the runner imports the data layer: loaded on first use
__getattr__ = lazy_exports(
    __name__, {"profile": "run", "run_profile": "run", "summarize": "summary", "RunSummary": "summary"}
)


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        """``profile(ckpt, model, data, out, **opts)`` or ``profile(config)``: see
        :func:`atfr_analysis.profile.run.profile`."""
        from atfr_analysis.profile.run import profile

        return profile(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
