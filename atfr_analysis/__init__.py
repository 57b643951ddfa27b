"""atfr-analysis: build, profile and report 3D CNNs with adaptive temporal feature resolution.

The Python API behind the ``atfr`` command line::

    import atfr_analysis as atfr
    model = atfr.build_model("x3d_s_atfr")          # the zoo (PySlowFast state-dict names)
    atfr.list_models("slowfast*")
    df = atfr.profile_clips(model, clips)            # per-clip bins, exact dynamic GMACs, scores
    atfr.profile(ckpt, "x3d_s_atfr", "val.csv", "runs/x3d")   # a whole video list into a log
    log = atfr.load_run("runs/x3d")                  # pandas, one row per (video, view)

The names are imported on first use (PEP 562), so that importing the package, or a light module
of it such as ``atfr_analysis.errors`` (the CLI's ``--help`` and ``--version``), does not import
torch.
"""
import importlib as _importlib
import sys as _sys
import types as _types
import warnings as _warnings

# The package's one warnings filter (every module of the package runs this file first):
# fvcore's import warns that torch.jit.script is deprecated; harmless here
_warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=DeprecationWarning)

from atfr_analysis._version import __version__  # noqa: E402

__all__ = ["__version__", "build_model", "list_models", "profile_clips", "profile", "load_run", "load_videos"]

#: the API's names and the module each is imported from on first use
_LAZY = {
    "build_model": "atfr_analysis.models",
    "list_models": "atfr_analysis.models",
    "profile_clips": "atfr_analysis.profile",
    "load_run": "atfr_analysis.profile",
    "load_videos": "atfr_analysis.profile",
}


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def _profile(*args, **kwargs):
    """Profile a checkpoint on a video list into a run folder; see ``atfr_analysis.profile.run.profile``."""
    from atfr_analysis.profile.run import profile as run

    return run(*args, **kwargs)


class _Package(_types.ModuleType):
    """``atfr_analysis.profile`` is the function above, also once the subpackage of that name is
    imported (the import system then binds the subpackage to the attribute; it stays in
    ``sys.modules`` and ``from atfr_analysis.profile import ...`` reads it there)."""

    @property
    def profile(self):
        return _profile

    @profile.setter
    def profile(self, value) -> None:
        pass


_sys.modules[__name__].__class__ = _Package
