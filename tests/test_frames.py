"""``--frames``: one rule (``InputSpec.with_frames``) for every command, every family.

Issue 30: ``atfr train --frames`` crashed on X3D (its config holds one int) and refused SlowFast
with a wrong reason (it kept the slow frames and replaced the fast ones); ``atfr bench --frames``
crashed on every ResNet/SlowFast (an int where the config holds a tuple). ``flops`` was right.
"""

from __future__ import annotations

import pytest
import torch
from profile_helpers import assert_one_line_error, run_cli
from train_helpers import SEVEN, tiny_train_set

from atfr_analysis.errors import InputError
from atfr_analysis.models import build_model


def _meta(name: str):
    with torch.device("meta"):
        return build_model(name)


@pytest.mark.parametrize(
    "name, frames, want_spec, want_field",
    [
        ("slowfast_4x16_r50", 16, (2, 16), (2, 16)),  # alpha 8: slow = fast / alpha
        ("slowfast_8x8_r50", 16, (4, 16), (4, 16)),  # alpha 4
        ("slow_tiny", 8, (8,), (8,)),
        ("x3d_xs", 8, (8,), 8),  # X3D's config holds one int
        ("x3d_s_atfr", 6, (6,), 6),
    ],
)
def test_frames_overrides_follow_with_frames(name, frames, want_spec, want_field):
    m = _meta(name)
    over = m.frames_overrides(frames)
    assert over == {"frames": want_field}
    assert m.spec.with_frames(frames).frames == want_spec
    with torch.device("meta"):
        again = build_model(name, **over)
    assert again.spec.frames == want_spec
    assert m.frames_overrides(None) == {}


def test_with_frames_refuses_with_the_reason():
    sf = _meta("slowfast_4x16_r50").spec
    with pytest.raises(InputError, match="multiple of alpha=8"):
        sf.with_frames(12)
    for bad in (0, -8):
        with pytest.raises(InputError, match="positive"):
            sf.with_frames(bad)
        with pytest.raises(InputError, match="positive"):
            _meta("x3d_xs").spec.with_frames(bad)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_train_set(tmp_path_factory.mktemp("frames") / "d", classes=SEVEN[:2])


@pytest.mark.parametrize(
    "name, crop, frames, want",
    [
        ("x3d_xs", 32, 8, [8]),
        ("slow_tiny", None, 8, [8]),
        ("slowfast_4x16_r50_atfr", 64, 16, [2, 16]),
    ],
)
def test_train_frames(capsys, tmp_path, data, name, crop, frames, want):
    from atfr_analysis.checkpoint import load_checkpoint

    out = tmp_path / "run"
    args = ["train", name, "--data", data / "train.csv", "--out", out, "--frames", frames]
    args += ["--batch-size", 2, "--max-steps", 1, "--epochs", 1, "--threads", 1, "--quiet"]
    args += ["--crop", crop] if crop else []
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    cfg = load_checkpoint(out / "model.pyth").cfg
    f = cfg["ATFR_ANALYSIS"]["config"]["frames"]  # the model's config as trained: per pathway, or X3D's int
    assert (list(f) if isinstance(f, (list, tuple)) else [f]) == want
    assert cfg["DATA"]["NUM_FRAMES"] == want[-1]


@pytest.mark.parametrize(
    "name, frames, needle", [("slowfast_4x16_r50", 12, "multiple of alpha=8"), ("x3d_xs", 0, "positive")]
)
def test_train_frames_refused_before_training(capsys, tmp_path, data, name, frames, needle):
    out = tmp_path / "run"
    code, _out, err = run_cli(capsys, "train", name, "--data", data / "train.csv", "--out", out, "--frames", frames)
    assert_one_line_error(code, err, needle)
    assert not out.exists()


BENCH_TINY = [
    "--crop", 32, "--clips", 2, "--batch-size", 2, "--reps", 1, "--warmup", 0, "--min-time", 0.05,
    "--trace-clips", 1, "--check-clips", 1, "--decode-workers", "", "--profile-workers", "", "--quiet",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name, frames, want", [("slowfast_4x16_r50_atfr", 16, [2, 16]), ("x3d_xs_atfr", 8, [8])])
def test_bench_frames(capsys, tmp_path, monkeypatch, name, frames, want):
    """Every phase at the other clip length, the training phase too (one timed step, one process)."""
    import functools
    import json

    pytest.importorskip("av")
    from atfr_analysis import bench

    monkeypatch.setattr(bench, "BenchConfig", functools.partial(bench.BenchConfig, train_steps=1, train_processes=1))
    out = tmp_path / "b.json"
    code, _stdout, err = run_cli(capsys, "bench", "--model", name, "--frames", frames, "--out", out, *BENCH_TINY)
    assert code == 0, err
    r = json.loads(out.read_text())
    assert r["frames"] == want and r["model"] == name
    assert all(v > 0 for v in r["training"]["clips_per_s"].values())
