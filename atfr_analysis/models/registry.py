"""A model registry in the manner of timm: ``register_model``, ``build_model``, ``list_models``.

Each family module registers named configurations: a builder (a model class taking one
dataclass config) and that dataclass's default values for the name. ``build_model`` copies the
config with the caller's overrides (``dataclasses.replace``), so every model is built from
explicit arguments and the config is kept on the model (``model.config``) for checkpoints.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from atfr_analysis.errors import AtfrError

__all__ = ["register_model", "build_model", "list_models", "get_config", "ModelEntry", "UnknownModelError"]


class UnknownModelError(AtfrError, ValueError):
    """Raised for a name that is not in the registry (message names the valid choices)."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[[Any], nn.Module]
    config: Any  # a dataclass instance
    family: str
    description: str = ""


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, builder: Callable[[Any], nn.Module], config: Any, family: str, description: str = "") -> None:
    if not dataclasses.is_dataclass(config):
        raise TypeError("config must be a dataclass instance")
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} registered twice")
    _REGISTRY[name] = ModelEntry(name, builder, config, family, description)


def _ensure_loaded() -> None:
    # importing the family modules registers their models
    from atfr_analysis.models import resnet, x3d  # noqa: F401


def list_models(pattern: str = "*", atfr: bool | None = None) -> list[str]:
    """Registered names matching a shell-style ``pattern``; ``atfr=True/False`` filters variants."""
    _ensure_loaded()
    names = sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))
    if atfr is not None:
        names = [n for n in names if n.endswith("_atfr") == atfr]
    return names


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}"
        ) from None


def get_config(name: str, **overrides: Any) -> Any:
    """The dataclass config of ``name`` with ``overrides`` applied."""
    entry = get_entry(name)
    fields = {f.name for f in dataclasses.fields(entry.config)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise TypeError(
            f"{name}: unknown argument(s) {', '.join(bad)}; valid: {', '.join(sorted(fields))}"
        )
    return dataclasses.replace(entry.config, **overrides)


def build_model(name: str, num_classes: int = 400, **overrides: Any) -> nn.Module:
    """Build a registered model (random weights, eval mode off) from its config plus overrides."""
    cfg = get_config(name, num_classes=num_classes, **overrides)
    model = get_entry(name).builder(cfg)
    model.model_name = name
    model.config = cfg
    return model
