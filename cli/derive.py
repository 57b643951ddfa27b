"""Typer commands derived from config dataclasses (``atfr_analysis.settings``): each option a
config field declares becomes a parameter of the command, with that field's flag, help, type and
default; the command's function receives the config's values as one dict (``cfg``) and declares
only the options that are no setting of the run (where to write, what to print)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer

from atfr_analysis.settings import FIELD_DEFAULT, options_of

__all__ = ["config_command", "config_values"]


def _parameters(cls: type) -> list[inspect.Parameter]:
    hints = typing.get_type_hints(cls)
    out = []
    for f, opt in options_of(cls):
        default = f.default if opt.shown is FIELD_DEFAULT else opt.shown
        if default is dataclasses.MISSING:
            default = inspect.Parameter.empty  # required
        typ = opt.cli_type or hints[f.name]
        if default is None and type(None) not in typing.get_args(typ):
            typ = typ | None  # a path on the command line, None by default
        info = (
            typer.Argument(help=opt.help)
            if opt.positional
            else typer.Option(*opt.flags, help=opt.help, hidden=opt.hidden)
        )
        out.append(
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[typ, info])
        )
    return out


def config_values(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The config's keyword arguments from the command line's ``values`` (each parsed as its field says)."""
    out = {}
    for f, opt in options_of(cls):
        v = values[f.name]
        out[f.name] = opt.parse(v) if opt.parse is not None and v is not None else v
    return out


def config_command(app: typer.Typer, name: str, cls: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(cfg, **own)`` as the command ``name``: its options are ``cls``'s (passed to
    ``fn`` as ``cfg``, the config's keyword arguments) followed by ``fn``'s own keyword options."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = list(inspect.signature(fn, eval_str=True).parameters.values())[1:]
        params = _parameters(cls)
        clash = {p.name for p in params} & {p.name for p in own}
        if clash:
            raise TypeError(f"{name}: {', '.join(sorted(clash))} declared by the command and by {cls.__name__}")

        @functools.wraps(fn)
        def command(**values: Any) -> Any:
            cfg = config_values(cls, {p.name: values.pop(p.name) for p in params})
            return fn(cfg, **values)

        command.__signature__ = inspect.Signature(
            params + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        )
        del command.__wrapped__  # Typer reads the signature above (its types resolved), not fn's
        command.__annotations__ = {}
        app.command(name)(command)
        return fn

    return register
