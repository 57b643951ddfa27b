"""Exact batching (``atfr_analysis.models.exact``): the CUDA-graph bookkeeping (run on CPU with a
stand-in for graph capture), the CPU thread pool of the groups, and ``VideoModel.atfr_step``'s
contract (scores, host signatures, what a padded batch executed) for both batching modes and
baselines. No timing assertions."""

import pytest
import torch

from atfr_analysis.models import AtfrStep, build_model, exact


def _fake_graph(self, fn, device):
    """CPU stand-in for CUDA graph capture: replay reruns ``fn`` into the static output."""
    static_out = fn()

    def replay():
        static_out.copy_(fn())

    return replay, static_out


def test_graph_bookkeeping_matches_eager_and_batch_one(monkeypatch):
    monkeypatch.setattr(exact.PostGraphs, "_make_graph", _fake_graph)
    monkeypatch.setattr(
        exact,
        "use_post_graphs",
        lambda model, device: model.exact_cuda_graphs and not model.training and not torch.is_grad_enabled(),
    )
    assert [exact.bucket(k) for k in (1, 2, 3, 4, 5, 9)] == [1, 2, 4, 4, 8, 16]
    torch.manual_seed(0)
    model = build_model("x3d_xs_atfr").eval().set_batching("exact")
    t = model.spec.clip_frames
    g = torch.Generator().manual_seed(0)
    rnd = torch.rand(3, 3, t, 32, 32, generator=g)
    frozen = rnd[:1, :, :1].expand(3, -1, t, -1, -1)
    x = torch.cat([rnd, frozen, rnd[:1]])  # groups of 1, 3 (bucket 4) and more
    with torch.no_grad():
        eager = model(x)
        assert model.post_graphs is None
        model.exact_cuda_graphs = True
        graphed = model(x)
        graphs = model.post_graphs
        first = graphs.captures
        again = model(x)
        one = torch.cat([model(x[i : i + 1]) for i in range(x.shape[0])])
    assert graphs.error is None and first >= 2 and graphs.captures == first  # cached, not recaptured
    assert torch.allclose(graphed, eager, atol=1e-6) and torch.equal(graphed, again)
    assert (graphed - one).abs().max() < 1e-5
    model.reset_post_graphs()
    assert model.post_graphs is None
    assert "post" not in " ".join(model.state_dict())  # the cache is not part of the state dict


def test_cpu_group_threads_match_sequential_and_batch_one(monkeypatch):
    calls = []
    real = exact.run_groups_threaded
    monkeypatch.setattr(exact, "run_groups_threaded", lambda *a: calls.append(a[-1]) or real(*a))
    torch.manual_seed(0)
    model = build_model("x3d_xs_atfr").eval().set_batching("exact")
    t = model.spec.clip_frames
    g = torch.Generator().manual_seed(1)
    rnd = torch.rand(3, 3, t, 32, 32, generator=g)
    x = torch.cat([rnd, rnd[:1, :, :1].expand(2, -1, t, -1, -1)])  # several groups
    threads = torch.get_num_threads()
    with torch.no_grad():
        _, bins = model.forward_sgs(x)
        assert len({tuple(r) for r in torch.stack(bins, 1).tolist()}) >= 2
        model.exact_cpu_workers = 1
        seq = model(x)
        model.exact_cpu_workers = 2
        thr = model(x)
        one = torch.cat([model(x[i : i + 1]) for i in range(x.shape[0])])
    assert calls == [2]  # the threaded path ran (once: the sequential run and batch 1 do not use it)
    assert torch.get_num_threads() == threads  # the pool leaves the caller's thread count alone
    assert (thr - seq).abs().max() < 1e-6 and (thr - one).abs().max() < 1e-5


def _mixed(model, n_rand: int = 2, crop: int = 32) -> torch.Tensor:
    t = model.spec.clip_frames
    g = torch.Generator().manual_seed(4)
    rnd = torch.rand(n_rand, 3, t, crop, crop, generator=g)
    return torch.cat([rnd, rnd[:1, :, :1].expand(1, -1, t, -1, -1)])  # a frozen clip: fewer bins


def test_atfr_step_contract_padded_and_exact():
    torch.manual_seed(0)
    model = build_model("x3d_xs_atfr", num_classes=5).eval()
    x = _mixed(model)
    n = x.shape[0]
    with torch.no_grad():
        outs, bins = model.forward_sgs(x)
        padded = model.atfr_step(x, batching="padded")
        exact_step = model.atfr_step([x], batching="exact")
        singles = [model.atfr_step(x[i : i + 1]) for i in range(n)]
        default = model.atfr_step(x)  # the model's setting (padded)
        fwd = model(x)
    for step in (padded, exact_step, default, *singles):
        assert isinstance(step, AtfrStep)
        assert step.signatures.dtype == torch.long and step.signatures.device.type == "cpu"
        assert step.signatures.shape[1] == len(model.sgs_layer_names()) == 1
    sig = torch.stack(bins, 1)
    assert torch.equal(padded.signatures, sig) and torch.equal(exact_step.signatures, sig)
    assert len(set(sig[:, 0].tolist())) > 1, "the batch should mix bin counts"
    # padded: every clip ran at the batch's largest B' per layer; exact and batch 1: their own
    assert padded.executed == tuple(int(o.shape[2]) for o in outs) == (int(sig[:, 0].max()),)
    assert exact_step.executed is None and all(s.executed is None for s in singles)
    assert torch.equal(torch.cat([s.signatures for s in singles]), sig)
    one = torch.cat([s.scores for s in singles])
    assert (exact_step.scores - one).abs().max() < 1e-5
    assert (padded.scores - one).abs().max() > 1e-5  # padding changes a clip's prediction
    assert torch.equal(default.scores, padded.scores) and torch.equal(fwd, padded.scores)
    model.set_batching("exact")
    with torch.no_grad():
        assert torch.equal(model(x), exact_step.scores)
    with pytest.raises(ValueError, match="batching"):
        model.atfr_step(x, batching="grouped")
    with pytest.raises(ValueError, match="batching"):
        model.set_batching("grouped")


@pytest.mark.parametrize("name", ["x3d_xs", "resnet3d_18"])
def test_atfr_step_baseline(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5).eval()
    xs = [torch.rand(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))]
    with torch.no_grad():
        step = model.atfr_step(xs, batching="exact")
        ref = model.forward_post(model.forward_pre(xs))
    assert step.signatures.shape == (2, 0) and step.signatures.dtype == torch.long
    assert step.executed is None
    assert torch.equal(step.scores, ref)
