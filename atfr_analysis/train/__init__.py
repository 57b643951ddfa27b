"""Training, a package by job: ``config`` (``TrainConfig``, validated when built), ``data`` (the
train-time clips, decoded on the fly in the loader workers; the epoch sampler), ``loop`` (the run
as named steps), ``state`` (the run folder, checkpoints, exact resume), ``dist`` (torchrun, DDP),
``init`` (``--init-from``), ``bn`` (precise and frozen BN), ``recipe`` (schedule, parameter
groups, the record, SGS guards), ``validate`` (through the profile), ``metrics``, ``progress``.

The names other modules import live here: ``from atfr_analysis.train import TrainConfig, train``.
"""

from atfr_analysis.lazy import lazy_exports

# imported on first use: ``atfr --help`` reads TrainConfig's options without torch
__getattr__ = lazy_exports(
    __name__,
    {
        "precise_bn": "bn",
        "PRECISIONS": "config",
        "TrainConfig": "config",
        "EpochSampler": "data",
        "TrainClips": "data",
        "item_seed": "data",
        "probe_videos": "data",
        "split_validation": "data",
        "TrainDataError": "loop",
        "TrainingDiverged": "loop",
        "TrainResult": "loop",
        "train": "loop",
        "OFFICIAL_RECIPE": "recipe",
        "cosine_lr": "recipe",
        "make_record": "recipe",
        "sgs_grad_clamp_hooks": "recipe",
        "temporal_difference_init": "recipe",
        "ResumeError": "state",
        "RunFolder": "state",
    },
)

__all__ = sorted(__getattr__.names)


def __dir__() -> list[str]:
    return __all__
