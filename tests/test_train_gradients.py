"""A step whose gradient is not finite is never applied (issue 30, found while fixing the default
bench): an SGD step with a NaN gradient makes the weights NaN at any learning rate (0 x NaN), and
the next state written would keep them. PyTorch's CPU bf16 convolutions give such gradients for a
temporal kernel of 3 over 2 steps, a length SGS leaves after merging (torch 2.13.0, oneDNN)."""

from __future__ import annotations

import types

import pytest
import torch
from profile_helpers import assert_one_line_error, run_cli
from train_helpers import SEVEN, tiny_train_set


class _NanGrad(torch.autograd.Function):
    """Identity forward; NaN backward (a finite loss whose gradient is not)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return torch.full_like(g, float("nan"))


def test_the_upstream_bf16_conv3d_weight_gradient():
    """The PyTorch behaviour the check guards against, as measured here (a test of the environment:
    it says when a PyTorch release fixes it)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(64, 64, (3, 1, 1), padding=(1, 0, 0), bias=False)
    x = torch.randn(2, 64, 2, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    y.float().sum().backward()
    if torch.isfinite(conv.weight.grad).all():
        pytest.skip(f"torch {torch.__version__}: the CPU bf16 conv3d weight gradient is finite here")
    with torch.backends.mkldnn.flags(enabled=False):  # the same without oneDNN: finite
        conv.weight.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            conv(x).float().sum().backward()
    assert torch.isfinite(conv.weight.grad).all()


@pytest.mark.parametrize("precision, hint", [("fp32", "lower --lr"), ("bf16", "use --precision fp32 on the CPU")])
def test_a_step_with_a_non_finite_gradient_stops_the_run(capsys, tmp_path, monkeypatch, precision, hint):
    import atfr_analysis.train.loop as loop

    data = tiny_train_set(tmp_path / "d", classes=SEVEN[:2])
    shim = types.SimpleNamespace(
        cross_entropy=lambda logits, y: torch.nn.functional.cross_entropy(_NanGrad.apply(logits), y)
    )
    monkeypatch.setattr(loop, "F", shim)
    out = tmp_path / "run"
    args = ["train", "slow_tiny", "--data", data / "train.csv", "--out", out, "--batch-size", 2, "--epochs", 1]
    code, _, err = run_cli(capsys, *args, "--checkpoint-every", 1, "--precision", precision, "--threads", 1, "--quiet")
    assert_one_line_error(
        code, err, "training diverged at step 1", "is not finite", "no checkpoint was written yet", hint
    )
    assert not list(out.glob("checkpoints/*.pyth"))  # no state with NaN weights
