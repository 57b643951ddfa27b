"""Similarity Guided Sampling (SGS): the adaptive temporal resampling layer of ATFR.

See :mod:`atfr_analysis.sgs.layer` for the semantics (as the official code does it) and
:mod:`atfr_analysis.sgs.kernels` for the sampling kernels and their custom backward passes.
"""

from atfr_analysis.sgs.kernels import DeltaKernel, TentKernel, delta_kernel, tent_kernel
from atfr_analysis.sgs.layer import (
    DISTANCES,
    KERNELS,
    SamplingResult,
    SimilarityGuidedSampling,
    sample_from_embedding,
)

__all__ = [
    "SimilarityGuidedSampling",
    "sample_from_embedding",
    "SamplingResult",
    "TentKernel",
    "DeltaKernel",
    "tent_kernel",
    "delta_kernel",
    "DISTANCES",
    "KERNELS",
]
