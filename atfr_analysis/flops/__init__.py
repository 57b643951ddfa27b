"""FLOP counting: conventions (``count``), the meta-device counter (``meta``), the per-signature cost
cache of ATFR models (``cost``), its files on disk (``cache``) and the per-module table (``table``)."""

from atfr_analysis.flops.cache import CostCache, user_cache_dir
from atfr_analysis.flops.cost import BACKENDS, CostModel, Signature, direct_trace, static_model
from atfr_analysis.flops.count import CONVENTIONS, NORM_OPS, FlopCount, count_flopcounter, count_flops
from atfr_analysis.flops.meta import MetaUnsupported, count_meta
from atfr_analysis.flops.table import module_table

__all__ = [
    "BACKENDS",
    "CONVENTIONS",
    "NORM_OPS",
    "FlopCount",
    "count_flops",
    "count_flopcounter",
    "count_meta",
    "MetaUnsupported",
    "CostModel",
    "CostCache",
    "user_cache_dir",
    "Signature",
    "direct_trace",
    "static_model",
    "module_table",
]
