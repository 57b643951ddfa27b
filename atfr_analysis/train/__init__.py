"""Training, a package by job: ``config`` (``TrainConfig``, validated when built), ``data`` (the
train-time clips, decoded on the fly in the loader workers; the epoch sampler), ``loop`` (the run
as named steps), ``state`` (the run folder, checkpoints, exact resume), ``dist`` (torchrun, DDP),
``init`` (``--init-from``), ``bn`` (precise and frozen BN), ``recipe`` (schedule, parameter
groups, the record, SGS guards), ``validate`` (through the profile), ``metrics``, ``progress``.

The names other modules import live here: ``from atfr_analysis.train import TrainConfig, train``.
"""

from atfr_analysis.train.bn import precise_bn
from atfr_analysis.train.config import PRECISIONS, TrainConfig
from atfr_analysis.train.data import EpochSampler, TrainClips, item_seed, probe_videos, split_validation
from atfr_analysis.train.loop import TrainDataError, TrainingDiverged, TrainResult, train
from atfr_analysis.train.recipe import (
    OFFICIAL_RECIPE,
    cosine_lr,
    make_record,
    sgs_grad_clamp_hooks,
    temporal_difference_init,
)
from atfr_analysis.train.state import ResumeError, RunFolder

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainDataError",
    "TrainingDiverged",
    "ResumeError",
    "train",
    "make_record",
    "cosine_lr",
    "precise_bn",
    "split_validation",
    "probe_videos",
    "temporal_difference_init",
    "item_seed",
    "TrainClips",
    "EpochSampler",
    "sgs_grad_clamp_hooks",
    "RunFolder",
    "PRECISIONS",
    "OFFICIAL_RECIPE",
]
