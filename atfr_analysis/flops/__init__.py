"""FLOP counting: conventions (``count``) and the per-signature cost cache of ATFR models (``cost``)."""
from atfr_analysis.flops.count import CONVENTIONS, NORM_OPS, FlopCount, count_flopcounter, count_flops
from atfr_analysis.flops.cost import CostModel, Signature, direct_trace, static_model

__all__ = [
    "CONVENTIONS",
    "NORM_OPS",
    "FlopCount",
    "count_flops",
    "count_flopcounter",
    "CostModel",
    "Signature",
    "direct_trace",
    "static_model",
]
