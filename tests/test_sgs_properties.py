"""Properties of the Similarity Guided Sampling layer (hypothesis).

* ``B'`` never exceeds the number of distinct frames of a clip; identical frames keep one bin;
* permuting a clip's frames leaves its ``B'`` and output unchanged (bins follow similarity, not
  time);
* gradients are finite, also for frozen clips;
* the tent kernel's custom backward equals finite differences (float64) away from its kinks;
  the delta kernel's surrogate backward is the masked upstream gradient;
* ``force_bins`` gives exactly that many bins and the same fvcore counts as a real input with
  that many active bins;
* bad ``kernel`` / ``distance`` / ``force_bins`` raise ``ValueError``; the layer has no batching setting.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atfr_analysis.sgs import SimilarityGuidedSampling, delta_kernel, sample_from_embedding, tent_kernel

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def make_layer(c: int, seed: int, dtype=torch.float32, train: bool = False, **kw) -> SimilarityGuidedSampling:
    """A layer with well-spread weights (the fixtures' "spread" init), so the embeddings are not
    at the scale of the distance eps."""
    torch.manual_seed(seed)
    layer = SimilarityGuidedSampling(c, **kw)
    with torch.no_grad():
        for m in layer.fc:
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0.0, 0.3)
                m.bias.normal_(0.0, 0.05)
    return layer.to(dtype).train(train)


def clips_from_frames(frames: torch.Tensor, index: list[list[int]]) -> torch.Tensor:
    """frames [N, K, C, H, W] -> clips [N, C, T, H, W] with clip n's frame t = frames[n, index[n][t]]."""
    idx = torch.tensor(index)
    n = frames.shape[0]
    x = frames[torch.arange(n).unsqueeze(1), idx]  # [N, T, C, H, W]
    return x.permute(0, 2, 1, 3, 4).contiguous()


@torch.no_grad()
def maxframe_kept(layer: SimilarityGuidedSampling, x: torch.Tensor) -> torch.Tensor:
    """[N] bool: whether the max-distance frame of each clip has nonzero kernel weight."""
    res = sample_from_embedding(
        x, layer.embed(x), layer.resolve_bins(x.shape[2]), kernel=layer.kernel, distance=layer.distance
    )
    mf = res.delta.argmax(dim=1)
    return res.kernel_matrix[torch.arange(x.shape[0]), :, mf].amax(dim=1) > 0


@st.composite
def redundant_clips(draw):
    n = draw(st.integers(1, 3))
    t = draw(st.integers(2, 12))
    k = draw(st.integers(1, t))
    index = [draw(st.lists(st.integers(0, k - 1), min_size=t, max_size=t)) for _ in range(n)]
    return n, t, k, index


# ----------------------------------------------------------------------------- bins
@SETTINGS
@given(
    spec=redundant_clips(),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from(sorted(DTYPES)),
    train=st.booleans(),
    kernel=st.sampled_from(["tent", "delta"]),
    distance=st.sampled_from(["l2_to_mean", "l2_norm"]),
)
def test_active_bins_at_most_distinct_frames(spec, seed, dtype, train, kernel, distance):
    n, t, k, index = spec
    c = 8
    layer = make_layer(c, seed, DTYPES[dtype], train, kernel=kernel, distance=distance)
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(n, k, c, 2, 2, generator=g, dtype=DTYPES[dtype])
    x = clips_from_frames(frames, index)
    out, mask, bins = layer(x, return_bins=True)
    distinct = torch.tensor([len(set(row)) for row in index])
    assert (bins <= distinct).all(), (bins.tolist(), distinct.tolist())
    if kernel == "tent":
        assert (bins >= 1).all()  # the max-distance frame always keeps bin B-1
    assert out.shape == (n, c, int(bins.max()), 2, 2)
    assert mask.shape == (n, out.shape[2])
    assert layer.resolve_bins(x.shape[2]) == t


@SETTINGS
@given(
    n=st.integers(1, 3),
    t=st.integers(2, 16),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from(sorted(DTYPES)),
    train=st.booleans(),
    distance=st.sampled_from(["l2_to_mean", "l2_norm"]),
    official_init=st.booleans(),
)
def test_identical_frames_keep_one_bin(n, t, seed, dtype, train, distance, official_init):
    c = 8
    dt = DTYPES[dtype]
    if official_init:
        torch.manual_seed(seed)
        layer = SimilarityGuidedSampling(c, distance=distance).to(dt).train(train)
    else:
        layer = make_layer(c, seed, dt, train, distance=distance)
    g = torch.Generator().manual_seed(seed)
    frame = torch.randn(n, c, 1, 3, 3, generator=g, dtype=dt)
    x = frame.expand(n, c, t, 3, 3).contiguous()
    out, mask, bins = layer(x, return_bins=True)
    assert bins.tolist() == [1] * n
    assert out.shape == (n, c, 1, 3, 3)
    # every frame sits on the upper edge of the last bin: a weight of about (1 + 1e-7) - 1 each
    # (more by the rounding of Delta' just below 2B), so out = (sum of tiny weights) * frame
    for i in range(n):
        big = frame[i].abs() > 1e-3
        ratio = (out[i] / frame[i])[big]
        torch.testing.assert_close(ratio, ratio.mean().expand_as(ratio), rtol=1e-4, atol=0.0)
        assert 0 < ratio.mean().item() <= t * 1e-5
    assert mask.all()


@SETTINGS
@given(
    n=st.integers(1, 3),
    t=st.integers(2, 12),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from(sorted(DTYPES)),
    train=st.booleans(),
    kernel=st.sampled_from(["tent", "delta"]),
    data=st.data(),
)
def test_frame_permutation_invariance(n, t, seed, dtype, train, kernel, data):
    """Bins follow similarity: permuting the frames permutes nothing in the output."""
    c = 8
    dt = DTYPES[dtype]
    layer = make_layer(c, seed, dt, train, kernel=kernel)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, t, 2, 2, generator=g, dtype=dt)
    perms = [data.draw(st.permutations(range(t))) for _ in range(n)]
    xp = clips_from_frames(x.permute(0, 2, 1, 3, 4), perms)
    out, _, bins = layer(x, return_bins=True)
    outp, _, binsp = layer(xp, return_bins=True)
    if kernel == "delta" and not torch.equal(maxframe_kept(layer, x), maxframe_kept(layer, xp)):
        # the max-distance frame's inclusion is decided by one ulp of max Delta (README item 9):
        # a permutation may flip it (a whole frame in or out); compare only when it did not
        return
    assert torch.equal(binsp, bins)
    scale = x.abs().amax().item() * t
    tol = 1e-9 if dt == torch.float64 else 1e-3
    torch.testing.assert_close(outp, out, rtol=tol, atol=tol * scale)


@SETTINGS
@given(
    spec=redundant_clips(),
    seed=st.integers(0, 2**16),
    train=st.booleans(),
    kernel=st.sampled_from(["tent", "delta"]),
    distance=st.sampled_from(["l2_to_mean", "l2_norm"]),
    official_init=st.booleans(),
)
def test_gradients_finite(spec, seed, train, kernel, distance, official_init):
    n, t, k, index = spec
    c = 8
    if official_init:
        torch.manual_seed(seed)
        layer = SimilarityGuidedSampling(c, kernel=kernel, distance=distance).train(train)
    else:
        layer = make_layer(c, seed, torch.float32, train, kernel=kernel, distance=distance)
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(n, k, c, 2, 2, generator=g)
    x = clips_from_frames(frames, index).requires_grad_(True)
    out, _ = layer(x)
    (out * torch.randn(out.shape, generator=g)).sum().backward()
    assert torch.isfinite(x.grad).all()
    for name, p in layer.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


# ----------------------------------------------------------------------------- kernels
@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 8),
    n=st.integers(1, 2),
    data=st.data(),
)
def test_tent_backward_matches_finite_differences(b, n, data):
    """float64, points away from the kinks (|Delta' - mu| in {0, 1}, i.e. Delta' at integers)."""
    t = data.draw(st.integers(1, 6))
    ints = data.draw(st.lists(st.integers(0, 2 * b - 1), min_size=n * t, max_size=n * t))
    fracs = data.draw(st.lists(st.floats(0.01, 0.99), min_size=n * t, max_size=n * t))
    scaled = (torch.tensor(ints, dtype=torch.float64) + torch.tensor(fracs, dtype=torch.float64)).view(n, 1, t)
    centres = (2 * torch.arange(b, dtype=torch.float64) + 1).view(1, b, 1).expand(n, b, 1).contiguous()
    scaled.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: tent_kernel(s, centres), (scaled,), eps=1e-6, atol=1e-6, rtol=1e-5)
    # no gradient reaches the centres
    c = centres.clone().requires_grad_(True)
    tent_kernel(scaled, c).sum().backward()
    assert c.grad is None or (c.grad == 0).all()


def test_tent_backward_official_rule():
    """+g where mu >= Delta', -g where mu < Delta', 0 where |Delta' - mu| > 1 (incl. the 1e-7 rim)."""
    scaled = torch.tensor([[[0.0, 0.5, 1.0, 1.5, 2.0, 2.0 + 1e-8, 3.9]]], dtype=torch.float64, requires_grad=True)
    centres = torch.tensor([[[1.0]]], dtype=torch.float64)
    k = tent_kernel(scaled, centres)
    assert k[0, 0, 4].item() == pytest.approx(1e-7, rel=1e-6)  # on the edge: weight ~1e-7
    k.sum().backward()
    assert scaled.grad[0, 0].tolist() == [1.0, 1.0, 1.0, -1.0, -1.0, 0.0, 0.0]


def test_delta_backward_is_masked_upstream_gradient():
    g = torch.Generator().manual_seed(0)
    scaled = (torch.rand(2, 1, 7, generator=g, dtype=torch.float64) * 8).requires_grad_(True)
    centres = (2 * torch.arange(4, dtype=torch.float64) + 1).view(1, 4, 1).repeat(2, 1, 1).requires_grad_(True)
    size = torch.full((2, 1, 1), 2.0, dtype=torch.float64, requires_grad=True)
    k = delta_kernel(scaled, centres, size)
    assert torch.equal(k, ((scaled - centres).abs() <= size / 2).double())
    up = torch.randn(k.shape, generator=g, dtype=torch.float64)
    k.backward(up)
    masked = (up * k).detach()
    torch.testing.assert_close(scaled.grad, masked.sum(1, keepdim=True))
    torch.testing.assert_close(centres.grad, masked.sum(2, keepdim=True))
    torch.testing.assert_close(size.grad, masked.sum((1, 2), keepdim=True))


# ----------------------------------------------------------------------------- force_bins
class _Forced(torch.nn.Module):
    def __init__(self, layer, bins):
        super().__init__()
        self.layer = layer
        self.bins = bins

    def forward(self, x):
        return self.layer(x, force_bins=self.bins)[0]


def _fvcore_counts(layer, x, bins):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.jit.script in fvcore
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # B'_max becomes a constant
        from fvcore.nn import FlopCountAnalysis

        fca = FlopCountAnalysis(_Forced(layer, bins), (x,))
        fca.unsupported_ops_warnings(False)
        fca.uncalled_modules_warnings(False)
        return fca.total(), dict(fca.by_operator()), dict(fca.unsupported_ops())


@settings(max_examples=8, deadline=None)
@given(
    t=st.integers(2, 10),
    seed=st.integers(0, 2**16),
    kernel=st.sampled_from(["tent", "delta"]),
    num_bins=st.sampled_from([None, 3]),
)
def test_force_bins_matches_real_fvcore_counts(t, seed, kernel, num_bins):
    c, hw = 8, 2
    layer = make_layer(c, seed, torch.float32, False, kernel=kernel, num_bins=num_bins)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, c, t, hw, hw, generator=g)
    out, _ = layer(x)
    real_bins = out.shape[2]
    if real_bins == 0:  # delta kernel, everything dropped by rounding: nothing to force
        return
    b = layer.resolve_bins(t)
    real = _fvcore_counts(layer, x, None)
    other = torch.randn(1, c, t, hw, hw, generator=g)
    forced = _fvcore_counts(layer, other, real_bins)
    assert forced == real
    assert real[1]["bmm"] == real_bins * t * c * hw * hw  # fvcore counts bmm as N*B'*T*CHW
    # every forced count has exactly that many bins
    xb = torch.randn(3, c, t, hw, hw, generator=g)
    for fb in range(1, b + 1):
        out, mask, bins = layer(xb, force_bins=fb, return_bins=True)
        assert out.shape == (3, c, fb, hw, hw) and mask.shape == (3, fb)
        assert bins.tolist() == [fb] * 3
        # the plain call (the official outputs) is the same computation
        out2, mask2 = layer(xb, force_bins=fb)
        assert torch.equal(out2, out) and torch.equal(mask2, mask)


def test_force_bins_selects_first_kernel_rows():
    layer = make_layer(8, 0)
    x = torch.randn(2, 8, 6, 2, 2, generator=torch.Generator().manual_seed(1))
    z = layer.embed(x)
    res = sample_from_embedding(x, z, 6, force_bins=4)
    assert torch.equal(res.kernel_dropped, res.kernel_matrix[:, :4])
    expect = torch.bmm(res.kernel_matrix[:, :4], x.permute(0, 2, 1, 3, 4).reshape(2, 6, -1))
    torch.testing.assert_close(res.out, expect.view(2, 4, 8, 2, 2).permute(0, 2, 1, 3, 4))


@pytest.mark.parametrize("bad", [0, 7, -1])
def test_force_bins_out_of_range(bad):
    layer = SimilarityGuidedSampling(8)
    with pytest.raises(ValueError, match=r"force_bins"):
        layer(torch.randn(1, 8, 6, 2, 2), force_bins=bad)


# ----------------------------------------------------------------------------- construction
@pytest.mark.parametrize(
    "kwargs, names",
    [
        ({"kernel": "linear"}, ("tent", "delta")),
        ({"kernel": "gaussian"}, ("tent", "delta")),
        ({"distance": "L2"}, ("l2_to_mean", "l2_norm")),
        ({"distance": "cosine"}, ("l2_to_mean", "l2_norm")),
    ],
)
def test_bad_choices_raise(kwargs, names):
    with pytest.raises(ValueError) as exc:
        SimilarityGuidedSampling(8, **kwargs)
    for name in names:
        assert name in str(exc.value)


def test_official_keys_and_init():
    torch.manual_seed(0)
    layer = SimilarityGuidedSampling(64)
    assert not hasattr(layer, "batching")  # batching is the model's setting (one source of truth)
    with pytest.raises(TypeError):
        SimilarityGuidedSampling(64, batching="exact")
    assert list(layer.state_dict()) == [
        "fc.0.weight",
        "fc.0.bias",
        "fc.2.weight",
        "fc.2.bias",
        "bn.weight",
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
    ]
    assert layer.fc[0].weight.shape == (32, 64) and layer.fc[2].weight.shape == (8, 32)
    for m in (layer.fc[0], layer.fc[2]):
        assert (m.bias == 0).all()
        assert 0.007 < m.weight.std().item() < 0.013
