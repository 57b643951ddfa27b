"""The meta-device counter equals fvcore's trace exactly, in both conventions, on every zoo model and
on random signatures; what cannot run on ``meta`` (the SGS layer reads values) and the fallback."""

import random

import pytest
import torch
from torch import nn

from atfr_analysis.flops import CostModel
from atfr_analysis.flops.count import count_flops
from atfr_analysis.flops.meta import MetaUnsupported, count_meta
from atfr_analysis.models import build_model, list_models, make_inputs


def _shapes(model, crop=None):
    return [tuple(x.shape) for x in make_inputs(model.spec, crop)]


def _same(a, b):
    assert a.count_conv_fc == b.count_conv_fc
    assert a.count_fvcore == b.count_fvcore
    assert a.by_operator == b.by_operator
    assert a.by_module == b.by_module
    assert a.by_module_fvcore == b.by_module_fvcore


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_meta_equals_fvcore_on_every_zoo_model(name):
    """Every model at its default input; _atfr models with every bin active, part by part."""
    model = build_model(name).eval()
    shapes = _shapes(model)
    meta = CostModel(model, shapes, backend="meta")
    ref = CostModel(model, shapes, backend="fvcore")
    if model.sgs_layer_names():
        sig = meta.num_bins
        assert sig == ref.num_bins
        _same(meta.cost(sig), ref.cost(sig))
    else:
        _same(meta.static(), ref.static())
    assert meta.stats["fallbacks"] == 0


RANDOM_SIGNATURE_MODELS = [("slowfast_4x16_r50_atfr", 400), ("slowfast_16x8_r50_atfr", 174), ("x3d_xl_atfr", 400)]


@pytest.mark.slow
@pytest.mark.parametrize("name,classes", RANDOM_SIGNATURE_MODELS)
def test_meta_equals_fvcore_on_random_signatures(name, classes):
    """A few random signatures per model here (fvcore costs 1-2 s each); the full 20 each are in
    ``atfr counters`` (reports its timings)."""
    model = build_model(name, num_classes=classes).eval()
    shapes = _shapes(model)
    meta = CostModel(model, shapes)
    rng = random.Random(f"{name}-test")
    sigs = [tuple(rng.randint(1, b) for b in meta.num_bins) for _ in range(3)]
    check = meta.cross_check(k=len(sigs), signatures=sigs)
    assert check["checked"] == 3 and check["equal"], check["mismatches"]
    assert all(r["conv_fc"] == r["ref_conv_fc"] and r["fvcore"] == r["ref_fvcore"] for r in check["rows"])


@pytest.mark.parametrize("name", ["x3d_xs", "slow_tiny"])
def test_meta_conv_fc_is_flopcountermode_halved(name):
    """The formulas are torch's FlopCounterMode's: its count / 2 on the same meta run."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(name).eval()
    xs = [torch.empty(s, device="meta") for s in _shapes(model)]
    state = {k: torch.empty_like(v, device="meta") for k, v in [*model.named_parameters(), *model.named_buffers()]}
    with torch.no_grad(), FlopCounterMode(display=False) as mode:
        torch.func.functional_call(model, state, (xs,))
    assert count_meta(model, xs).count_conv_fc * 2 == mode.get_total_flops() > 0


def test_meta_run_does_not_touch_the_model():
    model = build_model("x3d_xs").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fc = count_meta(model, make_inputs(model.spec, 64))
    assert fc.count_conv_fc > 0 and next(model.parameters()).device.type == "cpu"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_sgs_layer_cannot_run_on_meta_and_is_counted_on_zeros():
    """The SGS layer sizes its output from its values (``int(active.max())``): on meta it fails,
    so CostModel runs it on zeros with a zero-weight CPU copy (the model may live on meta)."""
    model = build_model("x3d_xs_atfr").eval()
    with pytest.raises((RuntimeError, NotImplementedError)):
        count_meta(model, make_inputs(model.spec, 64))
    with torch.device("meta"):
        on_meta = build_model("x3d_xs_atfr").eval()
    shapes = _shapes(model, 64)
    a = CostModel(on_meta, shapes).cost((2,))
    b = CostModel(model, shapes, backend="fvcore").cost((2,))
    _same(a, b)


def test_cross_check_on_the_first_signatures_asked():
    model = build_model("x3d_xs_atfr").eval()
    cm = CostModel(model, _shapes(model, 64))
    for sig in [(3,), (1,), (3,), (2,)]:
        cm.gmacs(sig)
    check = cm.cross_check(k=2)
    assert [r["signature"] for r in check["rows"]] == [[3], [1]]
    assert check["equal"] and check["reference"] == "fvcore" and check["backend"] == "meta"
    assert set(check["seconds"]) == {"backend", "reference"}


class _WithLayerNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 8)
        self.norm = nn.LayerNorm(8)

    def forward(self, xs):
        return self.norm(self.fc(xs[0].flatten(1)))


def test_unsupported_operator_is_refused_and_counted_with_fvcore():
    m = _WithLayerNorm().eval()
    xs = [torch.zeros(1, 2, 8, 1, 1)]
    with pytest.raises(MetaUnsupported):
        count_meta(m, xs)
    cm = CostModel(m, [tuple(xs[0].shape)])
    got = cm.static()
    ref = count_flops(m, xs)
    assert (got.count_conv_fc, got.count_fvcore) == (ref.count_conv_fc, ref.count_fvcore)
    assert cm.stats["fallbacks"] == 1


def test_inference_mode_and_autocast_count_the_same():
    """Without autograd, composite operators (linear, batch_norm, conv3d) reach the counter
    undecomposed: it counts what they decompose into, so the counts do not change."""
    model = build_model("x3d_xs_atfr").eval()
    shapes = _shapes(model, 64)
    ref = CostModel(model, shapes).cost((2,))
    with torch.inference_mode():
        got = CostModel(model, shapes).cost((2,))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = CostModel(build_model("x3d_xs_atfr").eval().to(torch.bfloat16), shapes).cost((2,))
    _same(got, ref)
    _same(bf16, ref)
