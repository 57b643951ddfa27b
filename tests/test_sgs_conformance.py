"""Conformance of ``atfr_analysis.sgs`` with the official SGS layer's recorded vectors.

Every ``case_*.pt`` under ``../shared/fixtures/sgs_vectors/`` is tested (a hidden set with the
same schema runs the same way). Tolerances are those of that directory's README:

* end to end from ``x``, linear (tent) kernel: ``B'``, ``active_bins``, ``active_bins_kernel`` and
  ``mask`` exact; ``out`` within the suggested ``|a - b| <= 1e-4 |b| + 5e-4 max|out_ref|`` (this
  implementation follows the upstream op sequence and is bit-exact on the reference torch build,
  which the stage-wise test pins down);
* ``grad_x`` per non-degenerate clip: rtol 1e-3, atol 1e-5 * max|ref[n]|; ``grad_params``:
  rtol 1e-3, atol 1e-5 * max|ref| (``fc.0.*``, ``fc.2.weight``, ``bn.weight``), and
  ``|grad| <= 1e-4 * max(|grad fc.2.weight|, |grad bn.weight|)`` for the analytically zero
  ``fc.2.bias`` / ``bn.bias``; skipped for files with a degenerate clip;
* train-mode state after the forward: atol 1e-6;
* float64 files: 1e-10 relative everywhere;
* stage-wise from the stored ``embedding``: every intermediate and the output bit for bit,
  ``grad_embedding`` to 1e-6 of its per-clip maximum (the README observed bit-exact, once 1.3e-7);
  this is where degenerate clips and the delta kernel are checked;
* case 08: each clip alone (N = 1) against its ``single_*`` fields, and against its batch slice.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from atfr_analysis.sgs import SimilarityGuidedSampling, sample_from_embedding

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VECTORS = SHARED / "fixtures" / "sgs_vectors"
CASES = sorted(VECTORS.glob("case_*.pt")) if VECTORS.is_dir() else []

if CASES:
    CASE_PARAMS = [pytest.param(p, id=p.stem) for p in CASES]
else:
    CASE_PARAMS = [
        pytest.param(
            None,
            id="no-fixtures",
            marks=pytest.mark.skip(reason=f"SGS reference vectors not found at {VECTORS}"),
        )
    ]

KERNELS = {"linear": "tent", "delta": "delta"}
DISTANCES = {"L2": "l2_to_mean"}
GRAD_PARAMS_CLOSE = ("fc.0.weight", "fc.0.bias", "fc.2.weight", "bn.weight")
GRAD_PARAMS_ZERO = ("fc.2.bias", "bn.bias")


# ----------------------------------------------------------------------------- helpers
@functools.lru_cache(maxsize=2)
def load_case(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def dtype_of(d: dict) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[d["dtype"]]


def is_f64(d: dict) -> bool:
    return dtype_of(d) == torch.float64


def build_layer(d: dict) -> SimilarityGuidedSampling:
    """The layer as the file's metadata describes it, with its ``params`` loaded strictly."""
    assert d["kernel"] in KERNELS, f"unknown kernel {d['kernel']!r}"
    assert d["distance"] in DISTANCES, f"unknown distance {d['distance']!r}"
    cfg_bins = int(d["num_bins_config"])
    layer = SimilarityGuidedSampling(
        d["x"].shape[1],
        num_bins=None if cfg_bins <= 0 else cfg_bins,
        latent_dim=int(d["latent_dim"]),
        distance=DISTANCES[d["distance"]],
        kernel=KERNELS[d["kernel"]],
    ).to(dtype_of(d))
    layer.load_state_dict(d["params"], strict=True)
    layer.train(d["mode"] == "train")
    return layer


def assert_within(actual, ref, *, rtol: float, atol: float, what: str) -> None:
    """|actual - ref| <= atol + rtol * |ref| elementwise (ref is the official value)."""
    assert actual.shape == ref.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(ref.shape)}"
    assert actual.dtype == ref.dtype, f"{what}: dtype {actual.dtype} != {ref.dtype}"
    a, r = actual.detach().double(), ref.detach().double()
    err = (a - r).abs()
    bound = atol + rtol * r.abs()
    bad = err > bound
    if bad.any():
        ratio = (err / bound).max().item()
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.numel()} elements out of tolerance "
            f"(rtol={rtol:g}, atol={atol:g}); max |err| = {err.max().item():.3e}, "
            f"worst err/bound = {ratio:.3g}"
        )


def out_tol(d: dict) -> tuple[float, float]:
    """(rtol, atol) for ``out`` end to end: the README's suggested bound
    ``|a - b| <= 1e-4 |b| + 5e-4 max|out_ref|`` (float32), 1e-10 relative (float64)."""
    m = d["out"].abs().max().item()
    if is_f64(d):
        return 1e-10, 1e-10 * m
    return 1e-4, 5e-4 * m


def grad_tol(d: dict, ref: torch.Tensor) -> tuple[float, float]:
    """(rtol, atol) for a gradient, relative to its reference maximum."""
    m = ref.abs().max().item()
    if is_f64(d):
        return 1e-10, 1e-10 * m
    return 1e-3, 1e-5 * m


@functools.lru_cache(maxsize=2)
def run_end_to_end(path: Path) -> dict:
    """Forward from ``x`` with the file's layer, loss = (out * g).sum(), backward (when the
    output shape allows it). Cached per file: several tests read the result."""
    d = load_case(path)
    layer = build_layer(d)
    x = d["x"].clone().requires_grad_(True)
    out, mask, active = layer(x, return_bins=True)
    res = {
        "out": out.detach(),
        "mask": mask,
        "active_kernel": active,
        "num_bins": layer.resolve_bins(x.shape[2]),
        "state_after": {k: v.detach().clone() for k, v in layer.state_dict().items()},
        "grad_x": None,
        "grad_params": None,
    }
    if out.shape == d["g"].shape:
        (out * d["g"]).sum().backward()
        res["grad_x"] = x.grad.detach()
        res["grad_params"] = {n: p.grad for n, p in layer.named_parameters()}
    # the kernel matrix of the same computation (a fresh layer: same params, same mode), for the
    # delta-kernel support check
    with torch.no_grad():
        z = build_layer(d).embed(d["x"])
        res["kernel_matrix"] = sample_from_embedding(
            d["x"], z, res["num_bins"], kernel=layer.kernel, distance=layer.distance
        ).kernel_matrix
    return res


def delta_kernel_support_matches(d: dict, res: dict) -> bool:
    """Delta kernel end to end: the support must match the official one except possibly in the
    max-distance frame's column (its inclusion flips on a one-ulp change of max Delta); returns
    whether it matches everywhere."""
    ours = res["kernel_matrix"] > 0
    ref = d["kernel_matrix"] > 0
    n, _, t = ref.shape
    other = torch.ones(n, t, dtype=torch.bool)
    other[torch.arange(n), d["maxframe_index"]] = False
    other = other.unsqueeze(1).expand_as(ref)
    assert torch.equal(ours[other], ref[other]), "delta kernel support differs outside the max-distance frames"
    return torch.equal(ours, ref)


def skip_if_delta_flipped(d: dict, res: dict) -> None:
    if d["kernel"] == "delta" and not delta_kernel_support_matches(d, res):
        pytest.skip(
            "delta kernel: the max-distance frame's inclusion flipped by rounding end to end "
            "(README: test stage-wise); support elsewhere matches"
        )


# ----------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("path", CASE_PARAMS)
def test_forward_bins_and_mask_exact(path):
    d = load_case(path)
    res = run_end_to_end(path)
    assert res["num_bins"] == d["num_bins"]
    skip_if_delta_flipped(d, res)
    assert res["out"].shape[2] == d["num_bins_out"], "B' (batch maximum of active bins)"
    assert torch.equal(res["active_kernel"], d["active_bins_kernel"]), (
        f"active bins (kernel mass): {res['active_kernel'].tolist()} != {d['active_bins_kernel'].tolist()}"
    )
    assert torch.equal(res["mask"], d["mask"]), "mask"
    assert torch.equal(res["mask"].sum(1), d["active_bins"]), "active_bins = mask.sum(1)"
    assert (res["mask"].sum(1) == res["active_kernel"]).all().item() == bool(d["mask_matches_kernel_count"])


@pytest.mark.parametrize("path", CASE_PARAMS)
def test_forward_output_close(path):
    d = load_case(path)
    res = run_end_to_end(path)
    skip_if_delta_flipped(d, res)
    rtol, atol = out_tol(d)
    assert_within(res["out"], d["out"], rtol=rtol, atol=atol, what="out")
    # padding after each clip's own active bins is exactly zero
    for n, b in enumerate(res["active_kernel"].tolist()):
        assert (res["out"][n, :, b:] == 0).all()


@pytest.mark.parametrize("path", CASE_PARAMS)
def test_grad_x(path):
    d = load_case(path)
    res = run_end_to_end(path)
    skip_if_delta_flipped(d, res)
    degenerate = d["degenerate"]
    assert res["grad_x"] is not None
    assert torch.isfinite(res["grad_x"]).all()
    if d["mode"] == "train" and degenerate.any():
        pytest.skip(
            "train mode with a degenerate clip: through BN its ulp-sensitive gradient reaches the "
            "other clips' grad_x (README: up to 1%); covered stage-wise from the embedding"
        )
    checked = 0
    for n in range(d["x"].shape[0]):
        if degenerate[n]:
            continue  # compared stage-wise (README)
        ref = d["grad_x"][n]
        rtol, atol = grad_tol(d, ref)
        assert_within(res["grad_x"][n], ref, rtol=rtol, atol=atol, what=f"grad_x[{n}]")
        checked += 1
    if not checked:
        pytest.skip("every clip is degenerate; gradients are compared stage-wise")


@pytest.mark.parametrize("path", CASE_PARAMS)
def test_grad_params(path):
    d = load_case(path)
    res = run_end_to_end(path)
    skip_if_delta_flipped(d, res)
    if d["degenerate"].any():
        pytest.skip("file has a degenerate clip: README says skip grad_params (ulp-level noise amplified)")
    grads = res["grad_params"]
    ref = d["grad_params"]
    assert set(grads) == set(ref), f"parameters {sorted(grads)} != {sorted(ref)}"
    for name in GRAD_PARAMS_CLOSE:
        assert grads[name] is not None, f"{name} has no gradient"
        rtol, atol = grad_tol(d, ref[name])
        assert_within(grads[name], ref[name], rtol=rtol, atol=atol, what=f"grad {name}")
    scale = max(ref["fc.2.weight"].abs().max().item(), ref["bn.weight"].abs().max().item())
    for name in GRAD_PARAMS_ZERO:
        g = grads[name]
        assert g is not None, f"{name} has no gradient"
        worst = g.abs().max().item()
        assert worst <= 1e-4 * scale, f"grad {name} should be ~0: {worst:.3e} > 1e-4 * {scale:.3e}"


@pytest.mark.parametrize("path", CASE_PARAMS)
def test_state_after_forward(path):
    d = load_case(path)
    res = run_end_to_end(path)
    after = res["state_after"]
    assert set(after) == set(d["params_after"])
    for k, ref in d["params_after"].items():
        if k.endswith("num_batches_tracked"):
            assert int(after[k]) == int(ref), k
        elif d["mode"] == "eval":
            assert torch.equal(after[k], ref), f"{k} changed in eval mode"
        else:
            atol = 1e-10 * ref.abs().max().item() if is_f64(d) else 1e-6
            assert_within(after[k], ref, rtol=1e-10 if is_f64(d) else 0.0, atol=atol, what=k)


# ----------------------------------------------------------------------------- stage-wise
@pytest.mark.parametrize("path", CASE_PARAMS)
def test_stagewise_from_embedding(path):
    """From the stored embedding: every intermediate bit for bit, incl. degenerate clips and the
    delta kernel; ``grad_embedding`` per clip to 1e-6 of its maximum."""
    d = load_case(path)
    z = d["embedding"].clone().requires_grad_(True)
    res = sample_from_embedding(
        d["x"], z, int(d["num_bins"]), kernel=KERNELS[d["kernel"]], distance=DISTANCES[d["distance"]]
    )
    assert torch.equal(z.detach().mean(2), d["embedding_mean"])
    for ours, key in [
        (res.delta, "delta"),
        (res.delta_scaled, "delta_scaled"),
        (res.centres, "bins_mu"),
        (res.bin_size, "bin_size"),
        (res.kernel_matrix, "kernel_matrix"),
        (res.kernel_dropped, "kernel_dropped"),
        (res.out, "out"),
        (res.mask, "mask"),
        (res.active_bins, "active_bins_kernel"),
    ]:
        ref = d[key]
        assert ours.shape == ref.shape, f"{key}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
        if not torch.equal(ours.detach(), ref):
            err = (ours.detach().double() - ref.double()).abs().max().item()
            raise AssertionError(f"{key} not bit-exact stage-wise (max |err| {err:.3e})")
    assert res.out.shape[2] == d["num_bins_out"]
    n = d["x"].shape[0]
    mf = d["maxframe_index"]
    w = res.kernel_matrix.detach()[torch.arange(n), :, mf].amax(dim=1)
    assert torch.equal(w, d["maxframe_weight"])
    assert torch.equal(w == 0, d["maxframe_dropped"])

    (res.out * d["g"]).sum().backward()
    ge, ref = z.grad, d["grad_embedding"]
    assert torch.isfinite(ge).all()
    for i in range(n):
        m = ref[i].abs().max().item()
        tol = 1e-10 if is_f64(d) else 1e-6
        assert_within(ge[i], ref[i], rtol=tol, atol=tol * m, what=f"grad_embedding[{i}]")


# ----------------------------------------------------------------------------- case 08 fields
@pytest.mark.parametrize("path", CASE_PARAMS)
def test_batch_vs_single(path):
    d = load_case(path)
    singles = sorted(int(k.rsplit("_", 1)[1]) for k in d if k.startswith("single_out_"))
    if not singles:
        pytest.skip("no single_* fields in this file")
    assert d["mode"] == "eval"
    batch = run_end_to_end(path)
    rtol, atol = out_tol(d)
    for i in singles:
        layer = build_layer(d)
        x = d["x"][i : i + 1].clone().requires_grad_(True)
        out, mask, active = layer(x, return_bins=True)
        b_i = int(d[f"single_active_bins_{i}"])
        assert out.shape[2] == b_i == int(active[0])
        assert torch.equal(mask, d[f"single_mask_{i}"]), f"single mask {i}"
        assert_within(out.detach(), d[f"single_out_{i}"], rtol=rtol, atol=atol, what=f"single out {i}")
        # a clip's batch slice equals its own run on its first B'_i bins, then exact zeros
        assert_within(batch["out"][i : i + 1, :, :b_i], out.detach(), rtol=rtol, atol=atol, what=f"batch slice {i}")
        assert (batch["out"][i, :, b_i:] == 0).all() and not batch["mask"][i, b_i:].any()
        (out * d[f"single_g_{i}"]).sum().backward()
        ref = d[f"single_grad_x_{i}"]
        if not d["degenerate"][i]:
            grtol, gatol = grad_tol(d, ref)
            assert_within(x.grad, ref, rtol=grtol, atol=gatol, what=f"single grad_x {i}")
        # the stored single-run kernel: same support (exact) and weights of the same run
        with torch.no_grad():
            z = layer.embed(d["x"][i : i + 1])
            k = sample_from_embedding(
                d["x"][i : i + 1], z, layer.resolve_bins(x.shape[2]), kernel=layer.kernel
            ).kernel_matrix
        assert torch.equal(k > 0, d[f"single_kernel_matrix_{i}"] > 0)
        assert_within(k, d[f"single_kernel_matrix_{i}"], rtol=1e-4, atol=1e-4, what=f"single kernel {i}")
