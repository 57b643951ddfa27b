"""The one declaration of a setting: a config field that is also a command-line option.

A run's config dataclass declares each setting once, with its option (flag, help, how the text
of the command line becomes the value) in the field's metadata::

    batch_size: int | None = option(None, "--batch-size", help="clips per forward (default: cpu 8, cuda 32)")

and the command line is derived from the fields (``cli/derive.py``, as Lightning's ``LightningCLI``
derives its parser from signatures): a command is its config plus the one library call. A field
without ``option`` is no option (set from Python only). This module imports nothing heavy, so
``atfr --help`` builds every command without torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Option", "option", "argument", "options_of", "FIELD_DEFAULT", "REQUIRED"]

_KEY = "atfr_option"
#: the default of a setting that has none: the config needs it, the command line requires it
REQUIRED: Any = dataclasses.MISSING
#: ``shown``'s default: the field's own default is what ``--help`` shows
FIELD_DEFAULT: Any = type("FieldDefault", (), {"__repr__": lambda self: "FIELD_DEFAULT"})()


@dataclass(frozen=True)
class Option:
    """How a config field appears on the command line.

    ``flags``: its spellings (``"--cuda-graphs/--no-cuda-graphs"`` for a switch pair); ``help``:
    the text ``--help`` shows; ``cli_type``: the type the command line parses (default: the
    field's); ``parse``: turns that into the field's value (``None`` stays ``None``); ``shown``:
    the default as ``--help`` shows it and as the command line takes it (default: the field's)."""

    flags: tuple[str, ...]
    help: str
    cli_type: Any = None
    parse: Callable[[Any], Any] | None = None
    shown: Any = FIELD_DEFAULT
    positional: bool = False  # a positional argument of the command (``flags`` empty)
    hidden: bool = False  # left out of ``--help`` (a knob for tests)


def option(
    default: Any = dataclasses.MISSING,
    *flags: str,
    help: str,  # noqa: A002 - the word every CLI library uses
    cli_type: Any = None,
    parse: Callable[[Any], Any] | None = None,
    shown: Any = FIELD_DEFAULT,
    hidden: bool = False,
) -> Any:
    """A dataclass field with ``default`` that is also the option ``flags`` (see :class:`Option`)."""
    if not flags:
        raise TypeError("option() needs at least one flag")
    return _field(default, Option(tuple(flags), help, cli_type, parse, shown, hidden=hidden))


def argument(
    default: Any = REQUIRED, *, help: str, cli_type: Any = None, parse: Callable[[Any], Any] | None = None
) -> Any:  # noqa: A002
    """A dataclass field that is also the command's positional argument."""
    return _field(default, Option((), help, cli_type, parse, positional=True))


def _field(default: Any, opt: Option) -> Any:
    meta = {_KEY: opt}
    return (
        dataclasses.field(metadata=meta) if default is REQUIRED else dataclasses.field(default=default, metadata=meta)
    )


def options_of(cls: type) -> list[tuple[dataclasses.Field, Option]]:
    """The fields of the config dataclass ``cls`` that are options, in field order."""
    return [(f, f.metadata[_KEY]) for f in dataclasses.fields(cls) if _KEY in f.metadata]
