"""FLOP conventions, the paper's baseline rows, and the second backend (FlopCounterMode)."""

import math

import pytest
import torch

from atfr_analysis.flops import count_flopcounter, count_flops
from atfr_analysis.flops.summary import model_flops, parse_bins
from atfr_analysis.models import build_model, list_models, make_inputs

# Reference values of the architectures (shared/README.md "Counting conventions", measured on the
# reference implementations): pinned so that any drift of our models fails loudly.
PINNED = [
    # model, frames, crop, classes, conv_fc GMACs of the reference, paper GFLOPs
    ("slowfast_4x16_r50", 32, 256, 400, 36.10, 36.1),
    ("x3d_s", 13, 160, 400, 1.96, 1.9),
    ("x3d_xl", 16, 312, 400, 35.84, 35.8),
    ("x3d_xl", 16, 356, 400, 48.41, 48.4),
    ("slowfast_16x8_r50", 64, 256, 174, 131.4, 132.8),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,frames,crop,classes,ref,paper", PINNED, ids=[f"{p[0]}@{p[2]}" for p in PINNED])
def test_paper_rows_pinned(name, frames, crop, classes, ref, paper):
    s = model_flops(name, frames=frames, crop=crop, num_classes=classes)
    assert s.gmacs == pytest.approx(ref, rel=5e-3), f"{name}: conv_fc drifted from {ref}"
    # fvcore's default total counts BN too: 0.7% (SlowFast) to 3.5% (X3D) higher
    assert 1.004 < s.gmacs_fvcore / s.gmacs < 1.04
    if name == "x3d_s":
        assert math.floor(s.gmacs * 10) / 10 == paper  # the paper truncates 1.96 to 1.9
    elif name == "slowfast_16x8_r50":
        assert abs(s.gmacs / paper - 1) < 0.015  # about 1% below the paper: documented, unexplained
    else:
        assert s.gmacs == pytest.approx(paper, rel=5e-3)


def test_slowfast_4x16_params():
    m = build_model("slowfast_4x16_r50")
    assert sum(p.numel() for p in m.parameters()) == 34_480_216


def test_conv_fc_excludes_exactly_batchnorm():
    m = build_model("x3d_xs").eval()
    fc = count_flops(m, make_inputs(m.spec, 64, frames=4))
    assert fc.count_fvcore - fc.count_conv_fc == fc.by_operator["batch_norm"] > 0
    assert fc.gmacs == fc.count_conv_fc / 1e9
    stages = fc.stages()
    assert "head" in stages and sum(stages.values()) == pytest.approx(fc.gmacs, rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models(atfr=False))
def test_flopcounter_agrees_with_fvcore_conv_fc(name):
    """torch's FlopCounterMode / 2 equals fvcore without normalisation, at the default input."""
    m = build_model(name).eval()
    xs = make_inputs(m.spec)
    assert count_flopcounter(m, xs) == count_flops(m, xs).count_conv_fc


@pytest.mark.parametrize("name", ["x3d_xs_atfr", "resnet3d_18_atfr", "slowfast_4x16_r50_atfr"])
def test_flopcounter_agrees_on_atfr(name):
    m = build_model(name).eval()
    xs = make_inputs(m.spec, 64, generator=torch.Generator().manual_seed(0))
    assert count_flopcounter(m, xs) == count_flops(m, xs).count_conv_fc


def test_parse_bins():
    layers = ["s2.pathway0_ts_layer", "s2.pathway1_ts_layer"]
    assert parse_bins("4,16", layers) == [4, 16]
    assert parse_bins("s2.pathway1_ts_layer=7,s2.pathway0_ts_layer=2", layers) == [2, 7]
    for bad in ("4", "a,b", "s2.nope=3,s2.pathway1_ts_layer=2", "s2.pathway0_ts_layer=3,4"):
        with pytest.raises(ValueError):
            parse_bins(bad, layers)


def test_what_if_bins_and_curve_are_monotone():
    s = model_flops("x3d_xs_atfr", crop=64, curve=True)
    layer = "s2.ts_layer"
    B = s.num_bins[layer]
    assert [p["bins"][layer] for p in s.curve] == list(range(1, B + 1))
    g = [p["gmacs"] for p in s.curve]
    assert all(a < b for a, b in zip(g, g[1:]))
    assert s.gmacs == g[-1]  # no --bins: every bin active
    low = model_flops("x3d_xs_atfr", crop=64, bins=f"{layer}=1")
    assert low.gmacs == g[0] < low.static_gmacs
