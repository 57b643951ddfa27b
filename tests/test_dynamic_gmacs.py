"""Per-clip dynamic GMACs equal a direct fvcore trace of the whole model on that clip alone;
exact batching equals batch-1 outputs; padded batching executes the batch's largest B'."""

import pytest
import torch

from atfr_analysis import build_model, profile_clips
from atfr_analysis.flops import CostModel, direct_trace


def _clips(spec, crop, n=3, seed=0):
    """Random, frozen (identical frames) and slow-motion (each frame 4x) clips, as pathways."""
    g = torch.Generator().manual_seed(seed)
    T = spec.clip_frames
    rnd = torch.rand(1, 3, T, crop, crop, generator=g)
    frozen = rnd[:, :, :1].expand(-1, -1, T, -1, -1).clone()
    slow = rnd[:, :, : max(1, T // 4)].repeat_interleave(4, dim=2)[:, :, :T]
    if slow.shape[2] < T:
        slow = torch.cat([slow, slow[:, :, -1:].expand(-1, -1, T - slow.shape[2], -1, -1)], 2)
    fast = torch.cat([rnd, frozen, slow])[:n]
    if spec.alpha is None:
        return [fast]
    idx = torch.linspace(0, T - 1, T // spec.alpha).long()
    return [fast.index_select(2, idx), fast]


CASES = [("x3d_xs_atfr", 64), ("resnet3d_18_atfr", 64), ("slowfast_4x16_r50_atfr", 64)]


@pytest.mark.parametrize("name,crop", CASES)
def test_gmacs_equal_direct_trace(name, crop):
    torch.manual_seed(0)
    model = build_model(name).eval()
    xs = _clips(model.spec, crop)
    df = profile_clips(model, xs, batching="exact")
    layers = model.sgs_layer_names()
    assert [c for c in df.columns if c.startswith("bins.")] == [f"bins.{l}" for l in layers]
    for i in range(len(df)):
        ref = direct_trace(model, [x[i : i + 1] for x in xs])
        assert df["gmacs"][i] == pytest.approx(ref.gmacs, rel=1e-9)
        assert df["gmacs_fvcore"][i] == pytest.approx(ref.gmacs_fvcore, rel=1e-9)
        assert df["gmacs_executed"][i] == df["gmacs"][i]
    # a frozen clip keeps fewer bins than random content (on the last pathway: the fastest)
    last = f"bins.{layers[-1]}"
    assert df[last][1] < df[last][0]


@pytest.mark.parametrize("name,crop", CASES)
def test_exact_batching_equals_batch_one(name, crop):
    torch.manual_seed(1)
    model = build_model(name).eval()
    xs = _clips(model.spec, crop)
    df = profile_clips(model, xs, batching="exact")
    for i in range(len(df)):
        one = profile_clips(model, [x[i : i + 1] for x in xs], batching="exact")
        for c in [c for c in df.columns if c.startswith("bins.")]:
            assert df[c][i] == one[c][0]
        diff = (torch.tensor(df["scores"][i]) - torch.tensor(one["scores"][0])).abs().max()
        assert diff < 1e-5


def test_padded_batching_executes_batch_max():
    torch.manual_seed(2)
    model = build_model("x3d_xs_atfr").eval()
    xs = _clips(model.spec, 64)
    df = profile_clips(model, xs, batching="padded")
    b = df["bins.s2.ts_layer"]
    cm = CostModel(model, [(1,) + tuple(x.shape[1:]) for x in xs])
    assert (df["gmacs_executed"] == cm.gmacs((int(b.max()),))[0]).all()
    assert (df["gmacs"] <= df["gmacs_executed"]).all()


def test_cost_cache_is_a_lookup_after_warmup():
    model = build_model("x3d_xs_atfr").eval()
    xs = _clips(model.spec, 64, n=1)
    cm = CostModel(model, [tuple(x.shape) for x in xs])
    sig = (2,)
    first = cm.gmacs(sig)
    traced = len(cm._post)
    assert cm.gmacs(sig) == first and len(cm._post) == traced
