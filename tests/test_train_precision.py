"""Mixed precision: SGS decides its bins in fp32 under autocast; the fp16 gradient scaler's state
survives a resume."""

import pytest
import torch

from atfr_analysis.sgs import SimilarityGuidedSampling
from atfr_analysis.sgs.layer import sample_from_embedding


def _layer_and_input(seed=0):
    torch.manual_seed(seed)
    layer = SimilarityGuidedSampling(32).eval()
    x = torch.randn(256, 32, 8, 4, 4)
    return layer, x


@torch.no_grad()
def test_sgs_bins_under_bf16_autocast_equal_fp32():
    layer, x = _layer_and_input()
    out32, _, bins32 = layer(x, return_bins=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16, _, bins16 = layer(x, return_bins=True)
    assert torch.equal(bins32, bins16)
    assert out16.shape == out32.shape
    # and of a bf16 input (what a bf16 convolution hands it): the same bins as that input in fp32
    xb = x.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, _, bins_b = layer(xb, return_bins=True)
    assert torch.equal(bins_b, layer(xb.float(), return_bins=True)[2])


@torch.no_grad()
def test_an_embedding_in_bf16_would_change_the_bins():
    """What the fp32 region prevents: the embedding's MLP under bf16 autocast (as it ran before)
    moves some clips' frames across bin edges."""
    layer, x = _layer_and_input()
    b = layer.resolve_bins(x.shape[2])
    bins32 = sample_from_embedding(x, layer.embed(x), b).active_bins
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z16 = layer.embed(x)
    assert z16.dtype == torch.bfloat16
    bins16 = sample_from_embedding(x, z16, b).active_bins
    assert int((bins16 != bins32).sum()) > 0


@pytest.mark.slow
def test_fp16_scaler_state_survives_a_resume(tmp_path):
    """An fp16 run stopped after 1 step and resumed ends as an uninterrupted one: the same weights
    and the same gradient-scaler state (scale and growth tracker) in the last training state."""
    from train_helpers import tiny_train_set

    from atfr_analysis.train import RunFolder, TrainConfig, train

    d = tmp_path / "d"
    tiny_train_set(d, per_class=1)
    base = dict(
        model="slow_tiny",
        data=str(d / "train.csv"),
        labels=str(d / "labels.json"),
        epochs=1,
        batch_size=3,
        crop=64,
        lr=0.2,
        precision="fp16",
        checkpoint_every=1,
        keep_last=10,
        threads=1,
        quiet=True,
    )
    train(TrainConfig(**base), tmp_path / "ref")
    train(TrainConfig(**base, max_steps=1), tmp_path / "cut")
    (tmp_path / "cut" / "model.pyth").unlink()  # as if killed after its state at step 1
    train(TrainConfig(**base), tmp_path / "cut")
    ref, cut = RunFolder.of(tmp_path / "ref"), RunFolder.of(tmp_path / "cut")
    a, b = (torch.load(f.latest(), weights_only=True) for f in (ref, cut))
    assert a["scaler_state"] is not None and a["scaler_state"] == b["scaler_state"]
    assert a["scaler_state"]["scale"] != 65536.0 or a["scaler_state"]["_growth_tracker"] > 0
    assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])
