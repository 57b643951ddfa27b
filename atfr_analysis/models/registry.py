"""A model registry in the manner of timm: ``@register_model``, ``build_model``, ``list_models``.

A model family is one module with a frozen config dataclass (validated in ``__post_init__``) and
one :class:`~atfr_analysis.models.base.VideoModel` subclass built from it (baseline and ATFR
variant alike: ``cfg.sgs`` adds the SGS layers). Each named configuration is a function that
returns its default config, decorated with the family's model class::

    @register_model(VideoResNet)
    def slow_8x8_r50() -> ResNetConfig:
        \"\"\"Slow 8x8 R50 (PySlowFast configs/Kinetics/c2/SLOW_8x8_R50.yaml)\"\"\"
        return ResNetConfig(arch="slow", frames=(8,), ...)

The function's name is the model's name and its docstring the description. Unless
``atfr=False`` the decorator also registers ``<name>_atfr``, with the config and the description
the model class makes for its ATFR variant (``atfr_config``, ``atfr_description``); keyword
arguments of the decorator are extra config changes of that variant.

``build_model`` copies the config with the caller's overrides (``dataclasses.replace``), so every
model is built from explicit arguments and the config is kept on the model (``model.config``) for
checkpoints.

This module imports no family: the family modules import it and register their names when
imported, and ``atfr_analysis.models`` imports every family (as timm does), so importing anything
from ``atfr_analysis.models`` fills the registry.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from atfr_analysis.errors import InputError

__all__ = [
    "register_model",
    "build_model",
    "frames_overrides",
    "list_models",
    "get_config",
    "get_entry",
    "ModelEntry",
    "UnknownModelError",
    "UnknownArgumentError",
]


class UnknownModelError(InputError):
    """A name that is not in the registry (the message names the valid choices)."""


class UnknownArgumentError(InputError, TypeError):
    """A config override that the model's config has no field for."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    #: the model class (called with the config)
    builder: Callable[[Any], nn.Module]
    #: the default config (a dataclass instance)
    config: Any
    family: str
    description: str = ""


_REGISTRY: dict[str, ModelEntry] = {}


def _add(entry: ModelEntry) -> None:
    if not dataclasses.is_dataclass(entry.config):
        raise TypeError(f"{entry.name}: the config must be a dataclass instance")
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} registered twice")
    _REGISTRY[entry.name] = entry


def register_model(model_cls: type, *, atfr: bool = True, **atfr_overrides: Any) -> Callable:
    """Decorator: register the config the function returns under the function's name (and its
    ATFR variant ``<name>_atfr`` unless ``atfr=False``; ``atfr_overrides`` change its config)."""

    def decorate(fn: Callable[[], Any]) -> Callable[[], Any]:
        cfg = fn()
        desc = inspect.getdoc(fn) or ""
        family = model_cls.family
        _add(ModelEntry(fn.__name__, model_cls, cfg, family, desc))
        if atfr:
            _add(
                ModelEntry(
                    f"{fn.__name__}_atfr",
                    model_cls,
                    model_cls.atfr_config(cfg, **atfr_overrides),
                    family,
                    model_cls.atfr_description(desc),
                )
            )
        return fn

    return decorate


def list_models(pattern: str = "*", atfr: bool | None = None) -> list[str]:
    """Registered names matching a shell-style ``pattern``; ``atfr=True/False`` filters variants."""
    names = sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))
    if atfr is not None:
        names = [n for n in names if n.endswith("_atfr") == atfr]
    return names


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; ``package.module:callable`` gives an entry for one's own
    model (the callable imported and checked, not called: :func:`atfr_analysis.models.user.user_entry`)."""
    if ":" in name:
        from atfr_analysis.models.user import user_entry

        builder, config, description = user_entry(name)
        return ModelEntry(name, builder, config, "user", description)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; choose one of: {', '.join(sorted(_REGISTRY))} "
            "(or your own model as package.module:callable)"
        ) from None


def get_config(name: str, **overrides: Any) -> Any:
    """The dataclass config of ``name`` with ``overrides`` applied (and validated)."""
    entry = get_entry(name)
    fields = {f.name for f in dataclasses.fields(entry.config)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise UnknownArgumentError(f"{name}: unknown argument(s) {', '.join(bad)}; valid: {', '.join(sorted(fields))}")
    return dataclasses.replace(entry.config, **overrides)


def build_model(name: str, num_classes: int = 400, **overrides: Any) -> nn.Module:
    """Build a registered model (random weights, eval mode off) from its config plus overrides.

    ``name`` may also be ``package.module:callable``: one's own network (the callable's keyword
    arguments as overrides; :mod:`atfr_analysis.models.user`)."""
    if ":" in name:
        from atfr_analysis.models.user import build_user_model

        return build_user_model(name, num_classes=num_classes, **overrides)
    cfg = get_config(name, num_classes=num_classes, **overrides)
    model = get_entry(name).builder(cfg)
    model.model_name = name
    model.config = cfg
    return model


def frames_overrides(name: str, frames: int | None) -> dict[str, Any]:
    """``--frames`` as the config change that builds ``name`` at that clip length
    (:meth:`VideoModel.frames_overrides`, from the model's default spec and config, built on the
    meta device: nothing allocated); ``{}`` for ``None``."""
    if frames is None:
        return {}
    import torch

    with torch.device("meta"):
        return build_model(name).frames_overrides(frames)
