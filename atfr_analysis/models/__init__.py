"""The model zoo: native 3D CNNs with PySlowFast state-dict names, and their ATFR variants."""
from atfr_analysis.models.base import InputSpec, VideoModel, as_pathways, make_inputs
from atfr_analysis.models.registry import (
    UnknownModelError,
    build_model,
    get_config,
    list_models,
    register_model,
)

__all__ = [
    "InputSpec",
    "VideoModel",
    "as_pathways",
    "make_inputs",
    "UnknownModelError",
    "build_model",
    "get_config",
    "list_models",
    "register_model",
]
