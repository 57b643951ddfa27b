"""What every analysis module shares: the error class and the run's metadata of a log frame.

Kept apart from ``aggregate`` so that the modules ``aggregate`` calls (``comparable``) can use
these without importing it back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from atfr_analysis.errors import InputError

__all__ = ["AnalysisError", "log_meta", "run_name"]


class AnalysisError(InputError):
    """Input the analysis cannot use (empty log, no ok rows, unknown option); one-line message.
    An :class:`~atfr_analysis.errors.AtfrError` (and a ``ValueError``)."""


def log_meta(log: pd.DataFrame) -> dict[str, Any]:
    """The run's metadata (``run.json``) a log frame carries in ``attrs["meta"]``, else ``{}``."""
    m = log.attrs.get("meta") if isinstance(log, pd.DataFrame) else None
    return m if isinstance(m, dict) else {}


def run_name(log: pd.DataFrame, default: str = "run") -> str:
    """The model name of a run (``meta["model"]``), else its folder name, else ``default``."""
    m = log_meta(log)
    if m.get("model"):
        return str(m["model"])
    rd = log.attrs.get("run_dir") if isinstance(log, pd.DataFrame) else None
    if rd:
        return Path(str(rd)).name
    return default
