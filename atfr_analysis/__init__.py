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

import warnings as _warnings

# The package's one warnings filter (every module of the package runs this file first):
# fvcore's import warns that torch.jit.script is deprecated; harmless here
_warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=DeprecationWarning)

from atfr_analysis._version import __version__  # noqa: E402
from atfr_analysis.lazy import SUBMODULE as _SUBMODULE  # noqa: E402
from atfr_analysis.lazy import lazy_exports  # noqa: E402

__all__ = ["__version__", "build_model", "list_models", "profile_clips", "profile", "load_run", "load_videos"]

# ``profile`` is the subpackage, callable: ``atfr.profile(ckpt, model, data, out)`` runs a profile
__getattr__ = lazy_exports(
    __name__,
    {
        "build_model": "models",
        "list_models": "models",
        "profile": _SUBMODULE,
        "profile_clips": "profile",
        "load_run": "profile",
        "load_videos": "profile",
    },
)


def __dir__() -> list[str]:
    return sorted(set(globals()) | __getattr__.names)
