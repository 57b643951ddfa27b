"""X3D family: PySlowFast state-dict names, parameter totals, fvcore counts and the ATFR split."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from atfr_analysis.models import build_model, get_config, list_models, make_inputs
from atfr_analysis.models.x3d import X3D, X3DConfig, round_width, x3d_widths

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "reference_keys"

BASE_NAMES = ["x3d_xs", "x3d_s", "x3d_m", "x3d_l", "x3d_xl"]

# published X3D-XL (widths rounded to multiples of 8), from the fixtures' README
XL_PARAMS = 11_095_904
XL_CONV_FC = {312: 35.8376, 356: 48.4237}


def _fixture(name: str) -> dict:
    path = FIXTURES / f"{name}.json"
    if not path.exists():
        pytest.skip(f"fixture {path} not available")
    return json.loads(path.read_text())


def _shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def _fvcore(model: torch.nn.Module, crop: int, run: bool = True) -> tuple[float, float, list[int] | None, dict]:
    """(fvcore total, total minus batch_norm) in GMACs at batch 1, the output shape (if ``run``)
    and the ops fvcore skipped."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=DeprecationWarning)
        from fvcore.nn import FlopCountAnalysis

        inputs = make_inputs(model.spec, crop)
        model.eval()
        fca = FlopCountAnalysis(model, (inputs,)).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = fca.total()
        bn = fca.by_operator().get("batch_norm", 0)
        unsupported = dict(fca.unsupported_ops())
        out_shape = None
        if run:
            with torch.no_grad():
                out_shape = list(model(inputs).shape)
    return total / 1e9, (total - bn) / 1e9, out_shape, unsupported


def _randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN affine and running stats (the PySlowFast init zeroes every block's final BN)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm3d, torch.nn.BatchNorm1d)):
            n = m.num_features
            m.weight.data = 0.5 + torch.rand(n, generator=g)
            m.bias.data = 0.1 * torch.randn(n, generator=g)
            m.running_mean = 0.1 * torch.randn(n, generator=g)
            m.running_var = 0.5 + torch.rand(n, generator=g)


# ------------------------------------------------------------------------------------ registry
def test_registry_names_and_specs():
    names = list_models("x3d*")
    for n in BASE_NAMES:
        assert n in names and f"{n}_atfr" in names
    assert set(list_models("x3d*", atfr=True)) == {f"{n}_atfr" for n in BASE_NAMES}
    # frames x sampling rate, train / test crop as PySlowFast's X3D_{XS,S,M,L}.yaml
    expected = {
        "x3d_xs": ((4,), 12, 160, 182),
        "x3d_s": ((13,), 6, 160, 182),
        "x3d_m": ((16,), 5, 224, 256),
        "x3d_l": ((16,), 5, 312, 356),
        "x3d_xl": ((16,), 5, 312, 356),
    }
    for n, (frames, rate, train, test) in expected.items():
        m = build_model(n)
        assert isinstance(m, X3D) and isinstance(m.config, X3DConfig)
        assert m.model_name == n and not m.config.sgs
        s = m.spec
        assert (s.frames, s.sampling_rate, s.train_crop, s.test_crop) == (frames, rate, train, test)
        assert (s.num_views, s.num_crops) == (10, 3)
        # the _atfr variant: the same config plus SGS at res2
        a = get_config(f"{n}_atfr")
        assert a.sgs and a.sgs_stage == "res2" and a.num_bins is None
        assert {**a.__dict__, "sgs": False} == m.config.__dict__
    assert build_model("x3d_l").config.depth_factor == 5.0
    xl = build_model("x3d_xl").config
    assert (xl.width_factor, xl.depth_factor, xl.width_divisor) == (2.9, 5.0, 8)


def test_config_validation():
    with pytest.raises(ValueError):
        X3DConfig(sgs_stage="res3")
    with pytest.raises(TypeError):
        build_model("x3d_s", no_such_option=1)


def test_round_width_and_widths():
    assert round_width(12, 2.9, divisor=1) == 35
    assert round_width(12, 2.9, divisor=8) == 32
    assert round_width(54, 0.0625, divisor=8, min_width=8) == 8
    assert round_width(432, 0.0625, divisor=8, min_width=8) == 32  # 27 -> 24 lost >10 %, so 32
    w1 = x3d_widths(X3DConfig(width_factor=2.9, depth_factor=5.0, width_divisor=1))
    assert w1["stem"] == 35
    assert [s[0] for s in w1["stages"]] == [35, 70, 139, 278]
    assert [s[1] for s in w1["stages"]] == [78, 157, 312, 625]
    assert [s[2] for s in w1["stages"]] == [5, 10, 25, 15]
    w8 = x3d_widths(X3DConfig(width_factor=2.9, depth_factor=5.0, width_divisor=8))
    assert w8["stem"] == 32
    assert [s[0] for s in w8["stages"]] == [32, 72, 136, 280]
    assert [s[1] for s in w8["stages"]] == [72, 162, 306, 630]
    assert w8["head_inner"] == 630
    # width factor 2.0: both roundings agree; depth 2.2 gives 3/5/11/7 blocks
    assert x3d_widths(X3DConfig(width_divisor=1)) == x3d_widths(X3DConfig(width_divisor=8))
    assert [s[2] for s in x3d_widths(X3DConfig())["stages"]] == [3, 5, 11, 7]


# ------------------------------------------------------------------------------------ state dicts
@pytest.mark.parametrize(
    "name, overrides, fixture",
    [
        ("x3d_xs", {}, "x3d_s"),  # XS, S and M share one state dict
        ("x3d_s", {}, "x3d_s"),
        ("x3d_m", {}, "x3d_s"),
        ("x3d_xl", {"width_divisor": 1}, "x3d_xl_width_divisor1"),
    ],
)
def test_state_dict_matches_fixture(name, overrides, fixture):
    ref = _fixture(fixture)
    model = build_model(name, **overrides)
    shapes = _shapes(model)
    assert set(shapes) == set(ref["state_dict"])
    assert shapes == ref["state_dict"]
    assert len(shapes) == ref["num_state_dict_keys"]
    assert sum(p.numel() for p in model.parameters()) == ref["params_total"]
    assert sum(b.numel() for b in model.buffers()) == ref["buffers_total"]
    # a checkpoint with the reference keys and shapes loads strictly
    ckpt = {k: torch.zeros(s) for k, s in ref["state_dict"].items()}
    model.load_state_dict(ckpt, strict=True)


def test_x3d_l_has_the_depth_5_keys():
    ref = _fixture("x3d_xl_width_divisor1")  # X3D_L.yaml with width 2.9: same keys, other widths
    model = build_model("x3d_l")
    assert set(model.state_dict()) == set(ref["state_dict"])
    assert model.state_dict()["s2.pathway0_res0.branch2.a.weight"].shape == (54, 24, 1, 1, 1)


def test_x3d_xl_default_is_the_published_x3d_xl():
    model = build_model("x3d_xl")
    assert sum(p.numel() for p in model.parameters()) == XL_PARAMS
    sd = model.state_dict()
    assert sd["s1.pathway0_stem.conv_xy.weight"].shape == (32, 3, 1, 3, 3)
    assert sd["head.conv_5.weight"].shape == (630, 280, 1, 1, 1)
    assert sd["head.lin_5.weight"].shape == (2048, 630, 1, 1, 1)
    # same keys as PySlowFast's rounding, other widths
    assert set(sd) == set(_fixture("x3d_xl_width_divisor1")["state_dict"])


# ------------------------------------------------------------------------------------ fvcore
def _check_gmacs(model, fixture_name: str, crop: int, run: bool = True) -> None:
    ref = _fixture(fixture_name)["gmacs"][model.spec.label(crop)]
    total, conv_fc, out_shape, unsupported = _fvcore(model, crop, run=run)
    assert total == pytest.approx(ref["fvcore_total"], rel=1e-6)
    assert conv_fc == pytest.approx(ref["fvcore_conv_fc"], rel=1e-6)
    # the same graph as upstream's: Swish as mul + sigmoid, the head's mean over positions
    assert unsupported == ref["unsupported_ops"]
    if run:
        assert out_shape == ref["output_shape"]


@pytest.mark.parametrize("crop", [160, 182])
def test_fvcore_x3d_s(crop):
    _check_gmacs(build_model("x3d_s"), "x3d_s", crop)


@pytest.mark.slow
@pytest.mark.parametrize("crop", [312, 356])
def test_fvcore_x3d_xl_width_divisor1(crop):
    _check_gmacs(build_model("x3d_xl", width_divisor=1), "x3d_xl_width_divisor1", crop, run=False)


@pytest.mark.slow
@pytest.mark.parametrize("crop", [312, 356])
def test_fvcore_x3d_xl_published(crop):
    _total, conv_fc, _, _ = _fvcore(build_model("x3d_xl"), crop, run=False)
    assert conv_fc == pytest.approx(XL_CONV_FC[crop], rel=1e-4)


# ------------------------------------------------------------------------------------ baseline forward
def test_baseline_forward_eval_and_train():
    torch.manual_seed(0)
    model = build_model("x3d_xs", num_classes=10).eval()
    _randomize_bn(model)
    with torch.no_grad():
        # test crop: 2x2 pooled positions, softmax then mean
        y = model(make_inputs(model.spec, batch=2))
        assert y.shape == (2, 10)
        torch.testing.assert_close(y.sum(1), torch.ones(2))
        # a bare tensor is accepted; a shorter clip than the config's still runs
        y = model(make_inputs(model.spec, crop=160, frames=2)[0])
        assert y.shape == (1, 10)
    model.train()
    logits = model(make_inputs(model.spec, crop=160, batch=2))
    assert logits.shape == (2, 10)
    assert not torch.allclose(logits.sum(1), torch.ones(2))
    # the baseline splits where its ATFR variant puts SGS; the parts compose to the forward
    model.eval()
    xs = make_inputs(model.spec, crop=160, batch=2)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_post(model.forward_pre(xs)), model(xs), rtol=0, atol=0)


# ------------------------------------------------------------------------------------ ATFR
STAGES = {"res2": "s2.ts_layer", "stem": "s1.ts_layer"}


@pytest.mark.parametrize("name, stage", [(n, "res2") for n in BASE_NAMES] + [("x3d_s", "stem"), ("x3d_xl", "stem")])
def test_atfr_keys_and_baseline_checkpoint(name, stage):
    prefix = STAGES[stage]
    base = build_model(name)
    atfr = build_model(f"{name}_atfr", sgs_stage=stage)
    assert atfr.sgs_layer_names() == [prefix]
    assert atfr.is_atfr and not base.is_atfr
    ts_keys = {k for k in atfr.state_dict() if k.startswith(prefix + ".")}
    assert ts_keys
    assert set(atfr.state_dict()) - ts_keys == set(base.state_dict())
    assert _shapes(base) == {k: v for k, v in _shapes(atfr).items() if k not in ts_keys}
    res = atfr.load_state_dict(base.state_dict(), strict=False)
    # torch does not report a missing BN num_batches_tracked (older checkpoints lack it)
    assert set(res.missing_keys) == {k for k in ts_keys if not k.endswith("num_batches_tracked")}
    assert res.unexpected_keys == []
    # the ts_layer keys follow the host's own keys in state-dict order
    keys = list(atfr.state_dict())
    host = prefix.split(".")[0] + "."
    last_host = max(i for i, k in enumerate(keys) if k.startswith(host) and k not in ts_keys)
    assert min(keys.index(k) for k in ts_keys) > last_host


@pytest.mark.parametrize("stage", list(STAGES))
def test_atfr_forward_split(stage):
    torch.manual_seed(0)
    model = build_model("x3d_s_atfr", sgs_stage=stage, num_classes=7).eval()
    _randomize_bn(model)
    xs = make_inputs(model.spec, crop=128, batch=2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        (feat,) = model.forward_pre(xs)
        c = model.widths["stem"] if stage == "stem" else model.widths["stages"][0][0]
        side = 64 if stage == "stem" else 32
        assert feat.shape == (2, c, 13, side, side)
        y = model(xs)
        assert y.shape == (2, 7)
        torch.testing.assert_close(y.sum(1), torch.ones(2))
        out, _mask = model.sgs_layers()[0](feat)
        torch.testing.assert_close(model.forward_post([out]), y)


def _diverse_clips(frames: int, size: int, seed: int = 2) -> torch.Tensor:
    """Clips with different temporal structure (random, still, cut, fade, flash), raw and centred."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.rand(2, 1, 3, 1, size, size, generator=g)
    t = torch.linspace(0, 1, frames).view(1, 1, frames, 1, 1)
    half = frames // 2
    clips = [
        torch.rand(1, 3, frames, size, size, generator=g),
        a.expand(1, 3, frames, size, size),
        torch.cat([a.expand(1, 3, half, size, size), b.expand(1, 3, frames - half, size, size)], 2),
        a * (1 - t) + b * t,
        torch.cat([a.expand(1, 3, half, size, size), b, a.expand(1, 3, frames - half - 1, size, size)], 2),
    ]
    clips += [c - 0.5 for c in clips]
    return torch.cat(clips).contiguous()


@pytest.mark.parametrize("stage", list(STAGES))
def test_atfr_exact_batching_matches_batch_of_one(stage):
    torch.manual_seed(0)
    model = build_model("x3d_s_atfr", sgs_stage=stage, num_classes=7).eval()
    _randomize_bn(model, seed=3)
    x = _diverse_clips(13, 64)
    model.set_batching("exact")
    with torch.no_grad():
        y = model([x])
        singles = torch.cat([model([x[i : i + 1]]) for i in range(x.shape[0])])
        step = model.atfr_step([x])
        active = step.signatures[:, 0].tolist()
    assert step.executed is None and torch.equal(step.scores, y)  # the model's batching: exact
    assert y.shape == (x.shape[0], 7)
    torch.testing.assert_close(y, singles, rtol=0, atol=1e-5)
    assert len(set(active)) > 1, f"test needs clips with different numbers of active bins, got {active}"


# ------------------------------------------------------------------------------------ Swish
def test_swish_is_bit_identical_to_pyslowfast():
    """X3D's activation is ``x * torch.sigmoid(x)`` bit for bit (PySlowFast's Swish), not
    ``F.silu`` (which rounds differently in about a quarter of the elements)."""
    from atfr_analysis.models.x3d import X3DTransform, swish

    g = torch.Generator().manual_seed(0)
    x = torch.cat(
        [
            torch.randn(100_000, generator=g),
            torch.randn(10_000, generator=g) * 1e4,  # large: sigmoid saturates to 0 / 1
            torch.randn(10_000, generator=g) * 1e-30,  # tiny and subnormal-adjacent
            torch.tensor([0.0, -0.0, 88.7, -88.7, 1e38, -1e38, float("inf"), float("-inf"), 1e-45, -1e-45]),
        ]
    )
    bits = {torch.float32: torch.int32, torch.float64: torch.int64}
    for t in (x, x.double(), x[:120_000].view(-1, 8), x[::3]):
        ref = t * torch.sigmoid(t)
        # bit for bit, NaNs (from -inf * 0) included
        assert torch.equal(swish(t).view(bits[t.dtype]), ref.view(bits[t.dtype]))
    # F.silu differs somewhere on these values: the test would notice a change back to it
    assert not torch.equal(torch.nn.functional.silu(x), x * torch.sigmoid(x))
    # the block uses it: branch2 = c_bn(c(swish(b_bn(b(...)))))
    blk = X3DTransform(8, 8, 16, stride=1, groups=16, use_se=False, se_ratio=0.0).eval()
    xin = torch.randn(2, 8, 3, 5, 5, generator=g)
    with torch.no_grad():
        h = blk.b_bn(blk.b(torch.relu(blk.a_bn(blk.a(xin)))))
        assert torch.equal(blk(xin), blk.c_bn(blk.c(h * torch.sigmoid(h))))
