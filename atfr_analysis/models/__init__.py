"""The model zoo: native 3D CNNs with PySlowFast state-dict names, and their ATFR variants.

Importing this package registers every family (``resnet``, ``x3d``): the family modules import
the registry, never the other way round (see :mod:`atfr_analysis.models.registry`).
"""

from atfr_analysis.models import resnet, x3d  # noqa: F401  (registers the families' models)
from atfr_analysis.models.base import AtfrStep, InputSpec, VideoModel, as_pathways, make_inputs
from atfr_analysis.models.registry import (
    UnknownModelError,
    build_model,
    frames_overrides,
    get_config,
    list_models,
    register_model,
)

__all__ = [
    "AtfrStep",
    "InputSpec",
    "VideoModel",
    "as_pathways",
    "make_inputs",
    "UnknownModelError",
    "build_model",
    "frames_overrides",
    "get_config",
    "list_models",
    "register_model",
]
