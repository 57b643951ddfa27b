"""Each ``TrainConfig`` field says in its type whether a resume compares it (``Same[...]``) or lets
it change (``Free[...]``); the resume compares exactly the ``Same`` fields (issue 31: the hand-kept
list of 25 names silently skipped any new field)."""

from __future__ import annotations

import dataclasses

import pytest

from atfr_analysis.train.config import RESUME_SETTINGS, Free, Same, TrainConfig, resume_settings_of


def test_resume_compares_exactly_the_same_fields():
    cfg = TrainConfig("slow_tiny", "train.csv")
    assert set(cfg.resume_settings()) == set(RESUME_SETTINGS)
    assert {"model", "data", "batch_size", "lr", "precision", "seed"} <= set(RESUME_SETTINGS)
    assert not {"workers", "device", "threads", "checkpoint_every", "keep_last", "quiet"} & set(RESUME_SETTINGS)


def test_a_new_field_is_compared_or_exempted_as_declared():
    @dataclasses.dataclass(frozen=True)
    class Grown(TrainConfig):
        label_smoothing: Same[float] = 0.0
        log_every: Free[int] = 10

    names = resume_settings_of(Grown)
    assert "label_smoothing" in names and "log_every" not in names
    assert Grown("slow_tiny", "train.csv").resume_settings()["label_smoothing"] == 0.0


def test_a_field_that_does_not_say_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Unsaid(TrainConfig):
        mixup: float = 0.0

    with pytest.raises(TypeError, match="declare mixup as Same"):
        resume_settings_of(Unsaid)
