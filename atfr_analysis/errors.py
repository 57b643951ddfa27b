"""The one base class of user-facing errors.

Anything the library raises because of what the user gave it (a bad model name, a bad argument,
an unusable checkpoint, an undecodable video, a bad list or log, a comparison of runs that are
not comparable) derives from :class:`AtfrError`. The command line turns exactly these into one
``error: ...`` line and exit status 2. An :class:`EnvironmentFailure` (permissions, a full disk,
a read-only file system) names the path and the operating system's reason (exit status 1).
Every other exception is a bug in atfr-analysis: the CLI says so in one line (exit status 1) and
shows the traceback with ``ATFR_DEBUG=1``.

Subclasses that used to derive from ``ValueError`` keep it as a second base, so ``except
ValueError`` in user code still catches them.
"""

from __future__ import annotations

import os

__all__ = ["AtfrError", "InputError", "NonFiniteError", "EnvironmentFailure", "environment_failure"]


class AtfrError(Exception):
    """A user-facing error: the message is one line that says what to fix (exit status 2)."""

    exit_code = 2


class InputError(AtfrError, ValueError):
    """A bad argument or a bad input file."""


class NonFiniteError(AtfrError, ValueError):
    """NaN or inf where a number is needed: non-finite weights in a checkpoint, or non-finite
    features reaching a layer (the message names the tensor or the layer)."""


class EnvironmentFailure(AtfrError, OSError):
    """The operating system refused: a path that cannot be written or read, a full disk."""

    exit_code = 1


def environment_failure(
    exc: OSError, path: str | os.PathLike | None = None, doing: str = "write"
) -> EnvironmentFailure:
    """An :class:`EnvironmentFailure` naming the path and the OS's reason of ``exc``."""
    where = path if path is not None else (exc.filename or "?")
    reason = exc.strerror or str(exc)
    err = EnvironmentFailure(f"cannot {doing} {where}: {reason}")
    err.errno = exc.errno
    return err
