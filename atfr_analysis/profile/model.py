"""The model a profiling run holds: the network loaded from its checkpoint, the test protocol it
runs at, and its costs that do not depend on the videos. ``run`` builds it; ``record`` writes it
into ``run.json``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from atfr_analysis.data.views import ViewProtocol
from atfr_analysis.flops.cost import CostModel

__all__ = ["CheckpointFacts", "ProfiledModel"]


@dataclass(frozen=True)
class CheckpointFacts:
    """What ``run.json`` records of the checkpoint read (its tensors are not kept): its PySlowFast
    cfg facts and its format."""

    facts: dict
    format: str

    def describe(self) -> str:
        return self.format


@dataclass(frozen=True)
class ProfiledModel:
    """``net`` (a ``VideoModel``), ``ckpt`` (``CheckpointFacts``), ``load_info`` (what loading
    allowed or re-initialised), ``protocol`` (the test views), ``shapes`` (a view's input per
    pathway, batch 1: the costs follow the crop the views really have) and, once counted, the
    cost model, the static backbone's GMACs and B per SGS layer."""

    net: Any
    ckpt: CheckpointFacts
    load_info: dict
    protocol: ViewProtocol
    shapes: list
    cost: CostModel | None = None
    static_gmacs: float | None = None
    static_gmacs_fvcore: float | None = None
    num_bins: dict = dataclasses.field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        return self.net.sgs_layer_names()

    @property
    def head_classes(self) -> int:
        return self.net.config.num_classes
