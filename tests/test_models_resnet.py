"""The ResNet family (Slow, SlowFast, the fork's 3dresnet and their ATFR variants).

Checked against the reference fixtures (``../shared/fixtures/reference_keys``): state-dict keys and
shapes, parameter / buffer totals, fvcore counts at the train and test crops (both conventions),
and against the fork's forward semantics (SGS before the last res2 ReLU, padded fusion, adaptive
head, exact batching). Every fixture of the family found there is tested, including ones this
file does not name: the model is built from the facts in the fixture's ``arch``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from atfr_analysis.models import build_model, get_config, list_models, make_inputs
from atfr_analysis.models.blocks import (
    FuseFastToSlow,
    ResNetBasicHead,
    head_pool_kernel,
    pad_to_common_length,
)
from atfr_analysis.models.registry import get_entry
from atfr_analysis.models.resnet import ResNetConfig, VideoResNet

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures" / "reference_keys"
FAMILY_ARCHES = {"slow", "slowfast", "3dresnet"}

BASELINES = [
    "slow_8x8_r50",
    "slowfast_4x16_r50",
    "slowfast_8x8_r50",
    "slowfast_16x8_r50",
    "resnet3d_50",
    "resnet3d_18",
]
ALL_NAMES = BASELINES + [f"{n}_atfr" for n in BASELINES]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------- fixtures
def _family_fixtures() -> list[Path]:
    if not FIXTURES.is_dir():
        return []
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        with open(path) as f:
            arch = json.load(f).get("arch", {})
        if arch.get("arch") in FAMILY_ARCHES:
            out.append(path)
    return out


_FIXTURES = _family_fixtures()
_NO_FIXTURES = pytest.param(None, marks=pytest.mark.skip(reason=f"no ResNet-family fixtures under {FIXTURES}"))


def _load(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def _is_atfr(fx: dict) -> bool:
    a = fx["arch"]
    return "temporal_sampling" in a or "temporal_layer_stage" in a


def _model_args(fx: dict) -> tuple[str, dict]:
    """Registry name and overrides that rebuild the fixture's model from its ``arch`` facts."""
    a = fx["arch"]
    ov: dict = {"num_classes": a["num_classes"], "depth": a.get("depth", 50)}
    groups = a.get("num_groups", 1)
    ov["num_groups"] = groups
    if a["arch"] == "3dresnet":
        name = "resnet3d_50"
        ov["frames"] = (a["frames"],)
        wf, ws = a.get("width_per_group_fast", 8), a.get("width_per_group_slow", 64)
        ov.update(stem_width=wf, widths=(4 * wf, 4 * ws, 8 * ws, 16 * ws), inner_widths=(wf, ws, 2 * ws, 4 * ws))
    else:
        w = a.get("width_per_group", 64)
        ov.update(
            stem_width=w,
            widths=(4 * w, 8 * w, 16 * w, 32 * w),
            inner_widths=tuple(groups * w * m for m in (1, 2, 4, 8)),
        )
        if a["arch"] == "slow":
            name = "slow_8x8_r50"
            ov["frames"] = (a["frames"],)
        else:
            name = "slowfast_4x16_r50"
            ov.update(
                frames=(a["slow_frames"], a["fast_frames"]),
                alpha=a["alpha"],
                beta_inv=a["beta_inv"],
                fusion_kernel=a["fusion_kernel"],
                fusion_conv_channel_ratio=a["fusion_conv_channel_ratio"],
            )
    if "num_block_temp_kernel" in a:
        per_stage = []
        for stage in a["num_block_temp_kernel"]:
            assert len(set(stage)) == 1, "the same number of temporal-kernel blocks on every pathway"
            per_stage.append(stage[0])
        ov["num_block_temp_kernel"] = tuple(per_stage)
    if "trans_func" in a:
        ov["trans_func"] = {"bottleneck_transform": "bottleneck", "basic_transform": "basic"}[a["trans_func"]]
    if "spatial_strides" in a:
        assert [s[0] for s in a["spatial_strides"]] == [1, 2, 2, 2]
    if "dropout_rate" in a:
        ov["dropout_rate"] = a["dropout_rate"]
    if _is_atfr(fx):
        name += "_atfr"
        ts = a.get("temporal_sampling", {})
        assert a.get("temporal_layer_stage", "res2") == "res2"
        assert all(b == -1 for b in ts.get("num_bins", [-1])), "fixtures use B = T"
        ov["latent_dim"] = ts.get("latent_dimension", 8)
    return name, ov


def _build_from_fixture(fx: dict):
    name, ov = _model_args(fx)
    torch.manual_seed(0)
    return build_model(name, **ov)


@pytest.mark.parametrize("path", _FIXTURES or [_NO_FIXTURES], ids=lambda p: p.stem if p else "none")
def test_fixture_state_dict(path):
    fx = _load(path)
    model = _build_from_fixture(fx)
    sd = model.state_dict()
    ref = fx["state_dict"]
    assert set(sd) == set(ref), (sorted(set(ref) - set(sd))[:10], sorted(set(sd) - set(ref))[:10])
    bad = {k: (list(sd[k].shape), ref[k]) for k in ref if list(sd[k].shape) != ref[k]}
    assert not bad, bad
    assert len(sd) == fx["num_state_dict_keys"]
    assert sum(p.numel() for p in model.parameters()) == fx["params_total"]
    assert sum(b.numel() for b in model.buffers()) == fx["buffers_total"]
    # the upstream checkpoint format loads strictly
    model.load_state_dict({k: torch.zeros(v) for k, v in ref.items()}, strict=True)
    a = fx["arch"]
    assert model.spec.train_crop == a["train_crop"] and model.spec.test_crop == a["test_crop"]
    assert max(model.spec.frames) == a["frames"]


def _gmacs_cases():
    cases = []
    for path in _FIXTURES:
        fx = _load(path)
        for key, entry in (fx.get("gmacs") or {}).items():
            heavy = entry["fvcore_total"] > 30  # one trace costs seconds at these sizes
            marks = [pytest.mark.slow] if heavy else []
            cases.append(pytest.param(path, key, id=f"{path.stem}-{key}", marks=marks))
    return cases or [pytest.param(None, None, marks=pytest.mark.skip(reason="no fixture with gmacs"))]


def _fvcore(model, crop: int) -> tuple[int, int, dict]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=DeprecationWarning)
        from fvcore.nn import FlopCountAnalysis

        with torch.no_grad():
            fa = FlopCountAnalysis(model.eval(), (make_inputs(model.spec, crop),))
            fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            total = fa.total()
            by_op = dict(fa.by_operator())
            unsupported = dict(fa.unsupported_ops())
    return total, total - by_op.get("batch_norm", 0), unsupported


@pytest.mark.parametrize("path,key", _gmacs_cases())
def test_fixture_fvcore(path, key):
    fx = _load(path)
    entry = fx["gmacs"][key]
    model = _build_from_fixture(fx)
    crop = entry["input_shapes"][0][-1]
    assert model.spec.label(crop) == key
    assert [list(t.shape) for t in make_inputs(model.spec, crop)] == entry["input_shapes"]
    total, conv_fc, unsupported = _fvcore(model, crop)
    assert total / 1e9 == pytest.approx(entry["fvcore_total"], rel=1e-6)
    assert conv_fc / 1e9 == pytest.approx(entry["fvcore_conv_fc"], rel=1e-6)
    assert unsupported == entry["unsupported_ops"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "path", [p for p in _FIXTURES if _is_atfr(_load(p))] or [_NO_FIXTURES], ids=lambda p: p.stem if p else "none"
)
def test_fixture_atfr_forward_shapes(path):
    fx = _load(path)
    model = _build_from_fixture(fx).eval()
    key, entry = next(iter(fx["forward"].items()))  # the train crop
    inputs = [torch.rand(s) for s in entry["input_shapes"]]
    with torch.no_grad():
        out = model(inputs)
    assert list(out.shape) == entry["output_shape"]


@pytest.mark.slow
def test_ssv2_slowfast_16x8_gmacs():
    """The paper's SSv2 baseline: about 131.4 GMACs conv+fc at 16+64 frames, 256^2, 174 classes."""
    model = build_model("slowfast_16x8_r50", num_classes=174)
    assert model.spec.frames == (16, 64) and model.spec.sampling_rate == 2
    total, conv_fc, _ = _fvcore(model, 256)
    assert conv_fc / 1e9 == pytest.approx(131.4, abs=0.05)
    assert total > conv_fc


# -------------------------------------------------------------------------- registry, spec
def test_registry_names_and_configs():
    names = list_models("*")
    for name in ALL_NAMES:
        assert name in names
        entry = get_entry(name)
        assert entry.family == "resnet" and entry.description
        cfg = get_config(name)
        assert isinstance(cfg, ResNetConfig)
        assert cfg.sgs == name.endswith("_atfr")
        if cfg.sgs:
            assert cfg.head == "adaptive"
            base = get_config(name[: -len("_atfr")])
            assert (cfg.arch, cfg.depth, cfg.frames, cfg.widths, cfg.temporal_kernels) == (
                base.arch,
                base.depth,
                base.frames,
                base.widths,
                base.temporal_kernels,
            )
    assert get_config("slowfast_4x16_r50").fusion_kernel == 5
    assert get_config("slowfast_8x8_r50").fusion_kernel == 7
    assert get_config("slowfast_16x8_r50").fusion_kernel == 7
    assert get_config("slowfast_16x8_r50").num_classes == 174


@pytest.mark.parametrize(
    "name,frames,sampling_rate,alpha,label",
    [
        ("slow_8x8_r50", (8,), 8, None, "8x256x256"),
        ("slowfast_4x16_r50", (4, 32), 2, 8, "4+32x256x256"),
        ("slowfast_8x8_r50", (8, 32), 2, 4, "8+32x256x256"),
        ("slowfast_16x8_r50", (16, 64), 2, 4, "16+64x256x256"),
        ("resnet3d_50", (32,), 1, None, "32x256x256"),
        ("resnet3d_18", (32,), 1, None, "32x256x256"),
        ("resnet3d_18_atfr", (32,), 2, None, "32x256x256"),
    ],
)
def test_input_spec(name, frames, sampling_rate, alpha, label):
    spec = build_model(name).spec
    assert spec.frames == frames and spec.sampling_rate == sampling_rate and spec.alpha == alpha
    assert (spec.train_crop, spec.test_crop) == (224, 256)
    assert spec.label() == label
    if name == "slowfast_16x8_r50":
        assert (spec.num_views, spec.num_crops) == (1, 1)  # the SSv2 config's test views
    else:
        assert (spec.num_views, spec.num_crops) == (10, 3)


def test_resnet3d_18_structure():
    model = build_model("resnet3d_18", num_classes=194)
    sd = model.state_dict()
    for s in (2, 3, 4, 5):
        assert f"s{s}.pathway0_res1.branch2.c.weight" in sd  # bottlenecks, 2 per stage
        assert f"s{s}.pathway0_res2.branch2.a.weight" not in sd
    assert list(sd["s1.pathway0_stem.conv.weight"].shape) == [8, 3, 5, 7, 7]
    for s, kt, (cout, cin) in [(2, 3, (8, 8)), (3, 1, (64, 32)), (4, 1, (128, 256)), (5, 3, (256, 512))]:
        assert list(sd[f"s{s}.pathway0_res0.branch2.a.weight"].shape) == [cout, cin, kt, 1, 1]
    assert list(sd["head.projection.weight"].shape) == [194, 1024]


def test_invalid_configs():
    with pytest.raises(ValueError, match="adaptive"):
        build_model("slowfast_4x16_r50", sgs=True)  # an ATFR model needs the adaptive head
    with pytest.raises(ValueError, match="alpha"):
        build_model("slowfast_4x16_r50", frames=(4, 16))
    with pytest.raises(ValueError, match="arch"):
        build_model("slow_8x8_r50", arch="i3d")
    with pytest.raises(ValueError, match="adaptive"):
        ResNetConfig(arch="resnet3d", sgs=True)  # validated on construction, not only by build_model
    # baseline and ATFR variant are one class; the config says which
    assert not VideoResNet(get_config("resnet3d_18", num_classes=5)).is_atfr
    assert VideoResNet(get_config("resnet3d_18", sgs=True, head="adaptive", num_classes=5)).is_atfr


# ------------------------------------------------------------------------ building blocks
def test_pad_to_common_length_is_centred():
    a = torch.ones(1, 2, 2, 1, 1)
    b = torch.ones(1, 3, 5, 1, 1)
    pa, pb = pad_to_common_length(a, b)
    assert pb is b and pa.shape[2] == 5
    assert pa[0, 0, :, 0, 0].tolist() == [0, 1, 1, 0, 0]  # (5 - 2) // 2 = 1 in front, 2 behind
    pb2, pa2 = pad_to_common_length(b, a)
    assert torch.equal(pa2, pa) and pb2 is b
    same = torch.ones(1, 1, 4, 1, 1)
    x, y = pad_to_common_length(same, same)
    assert x is same and y is same


@pytest.mark.parametrize("t_slow,t_fast,alpha,expect", [(2, 17, 8, 3), (4, 9, 8, 4), (4, 32, 8, 4), (1, 32, 8, 4)])
def test_fuse_fast_to_slow_padding(t_slow, t_fast, alpha, expect):
    fuse = FuseFastToSlow(4, 2, 5, alpha, pad_temporal=True).eval()
    xs = torch.rand(2, 16, t_slow, 3, 3) + 1.0
    xf = torch.rand(2, 4, t_fast, 3, 3)
    with torch.no_grad():
        out_s, out_f = fuse([xs, xf])
    fused_len = -(-t_fast // alpha)  # conv_f2s: ceil(T_f / alpha) frames
    assert out_f is xf
    assert out_s.shape == (2, 16 + 8, expect, 3, 3)
    front = (expect - t_slow) // 2
    slow_part = out_s[:, :16]
    assert torch.equal(slow_part[:, :, front : front + t_slow], xs)
    pad_slow = torch.cat([slow_part[:, :, :front], slow_part[:, :, front + t_slow :]], 2)
    assert pad_slow.shape[2] == expect - t_slow and not pad_slow.any()  # zeros added to the slow pathway
    ffront = (expect - fused_len) // 2
    fused_part = out_s[:, 16:]
    outside = torch.cat([fused_part[:, :, :ffront], fused_part[:, :, ffront + fused_len :]], 2)
    assert outside.numel() == 2 * 8 * (expect - fused_len) * 9 and not outside.any()
    # PySlowFast's fusion (no padding) refuses mismatched lengths
    if t_slow != fused_len:
        plain = FuseFastToSlow(4, 2, 5, alpha).eval()
        with pytest.raises(RuntimeError):
            plain([xs, xf])


def test_fixed_head_is_fully_convolutional():
    """At a test crop larger than the train crop: projection per position, softmax, mean."""
    torch.manual_seed(0)
    assert head_pool_kernel(8, 224) == (8, 7, 7) and head_pool_kernel(13, 160, ceil=True) == (13, 5, 5)
    head = ResNetBasicHead([16, 4], 10, [(2, 3, 3), (4, 3, 3)], dropout_rate=0.5).eval()
    xs = [torch.rand(2, 16, 2, 4, 4), torch.rand(2, 4, 4, 4, 4)]
    with torch.no_grad():
        out = head(xs)
        pooled = torch.cat(
            [torch.nn.functional.avg_pool3d(xs[0], (2, 3, 3), 1), torch.nn.functional.avg_pool3d(xs[1], (4, 3, 3), 1)],
            1,
        )  # [2, 20, 1, 2, 2]: 4 positions
        logits = head.projection(pooled.permute(0, 2, 3, 4, 1))
        expect = logits.softmax(-1).mean((1, 2, 3))
    assert out.shape == (2, 10)
    torch.testing.assert_close(out, expect)
    torch.testing.assert_close(out.sum(-1), torch.ones(2))
    adaptive = ResNetBasicHead([16], 10, [None]).train()
    assert adaptive(torch.rand(3, 16, 5, 2, 2)).shape == (3, 10)  # logits in training


def test_baseline_forward_softmax():
    torch.manual_seed(0)
    model = build_model("resnet3d_18", num_classes=7).eval()
    with torch.no_grad():
        out = model(make_inputs(model.spec, crop=64, batch=2, frames=8))
        out_tensor = model(make_inputs(model.spec, crop=64, batch=1, frames=8)[0])  # a bare tensor
    assert out.shape == (2, 7) and out_tensor.shape == (1, 7)
    torch.testing.assert_close(out.sum(-1), torch.ones(2))
    with pytest.raises(ValueError, match="pathway"):
        model(make_inputs(model.spec, crop=64, frames=8) * 2)


# --------------------------------------------------------------------------------- ATFR
def _randomize_bn(model: torch.nn.Module) -> None:
    """Non-trivial BN affine parameters (PySlowFast zero-inits the last BN of every block, which
    makes each block an identity at initialisation and its residual sum non-negative)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)


def _static_clip(spec, crop: int) -> list[torch.Tensor]:
    """Every frame the same image: SGS keeps few bins (only boundary effects differ)."""
    g = torch.Generator().manual_seed(1)
    img = torch.rand(1, 3, 1, crop, crop, generator=g)
    return [img.expand(1, 3, t, crop, crop).contiguous() for t in spec.frames]


def _mixed_batch(spec, crop: int, frames=None) -> list[torch.Tensor]:
    spec = spec.with_frames(frames)
    g = torch.Generator().manual_seed(2)
    rand = make_inputs(spec, crop, batch=1, generator=g)
    static = _static_clip(spec, crop)
    return [torch.cat([r, s], 0) for r, s in zip(rand, static)]


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_checkpoint_loads_into_atfr(name):
    torch.manual_seed(0)
    base = build_model(name)
    atfr = build_model(f"{name}_atfr")
    assert type(atfr) is type(base) is VideoResNet and atfr.is_atfr and not base.is_atfr
    ts_keys = {k for k in atfr.state_dict() if ".ts_layer." in k or "_ts_layer." in k}
    assert ts_keys and set(atfr.state_dict()) - set(base.state_dict()) == ts_keys
    result = atfr.load_state_dict(base.state_dict(), strict=False)
    # torch's BatchNorm fills a missing num_batches_tracked itself and never reports it
    assert set(result.missing_keys) == {k for k in ts_keys if not k.endswith("num_batches_tracked")}
    assert result.unexpected_keys == []
    prefixes = ["s2.ts_layer"] if base.num_pathways == 1 else ["s2.pathway0_ts_layer", "s2.pathway1_ts_layer"]
    assert atfr.sgs_layer_names() == prefixes
    assert all(k.startswith(tuple(p + "." for p in prefixes)) for k in ts_keys)


@pytest.mark.parametrize(
    "name,frames", [("resnet3d_18_atfr", 16), ("slowfast_4x16_r50_atfr", 32), ("slow_8x8_r50_atfr", 8)]
)
def test_atfr_forward_split_and_batching(name, frames):
    torch.manual_seed(0)
    model = build_model(name, num_classes=11).eval()
    crop = 64
    xs = _mixed_batch(model.spec, crop, frames)
    with torch.no_grad():
        out = model(xs)  # padded batching (official)
        assert out.shape == (2, 11)
        torch.testing.assert_close(out.sum(-1), torch.ones(2))

        # forward = post(sgs(pre))
        feats = model.forward_pre(xs)
        assert len(feats) == len(model.sgs_layers()) == model.num_pathways
        sgs_out = [layer(f)[0] for layer, f in zip(model.sgs_layers(), feats)]
        torch.testing.assert_close(model.forward_post(sgs_out), out, rtol=0, atol=1e-6)

        # exact batching: each sample as if alone in its batch
        bins = model.forward_sgs(xs)[1]
        assert any(int(b[0]) != int(b[1]) for b in bins), "the test batch should mix bin counts"
        model.set_batching("exact")
        exact = model(xs)
        model.set_batching("padded")
        singles = torch.cat([model([x[i : i + 1] for x in xs]) for i in range(2)], 0)
    torch.testing.assert_close(exact, singles, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet3d_18", "slowfast_4x16_r50"])
def test_atfr_pre_is_baseline_res2_before_relu(name):
    torch.manual_seed(0)
    base = build_model(name).eval()
    _randomize_bn(base)
    atfr = build_model(f"{name}_atfr").eval()
    atfr.load_state_dict(base.state_dict(), strict=False)
    xs = make_inputs(base.spec, crop=64, frames=max(base.spec.frames) // 2)
    with torch.no_grad():
        ref = base.s2(base._stem(list(xs)))
        pre = atfr.forward_pre(xs)
    assert all((p < 0).any() for p in pre)  # the residual sums, before the ReLU
    for r, p in zip(ref, pre):
        torch.testing.assert_close(torch.relu(p), r)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["slowfast_4x16_r50_atfr", "resnet3d_50_atfr"])
def test_atfr_forward_default_input(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(make_inputs(model.spec, crop=model.spec.train_crop, batch=2))
    assert out.shape == (2, 400)
    torch.testing.assert_close(out.sum(-1), torch.ones(2))
