"""FLOP regression tests: ``atfr flops MODEL --save/--check`` and the ``flops_regression`` fixture.

Every zoo model is pinned here through the fixture (golden files in tests/test_flops_regression/,
regenerated with ``pytest --force-regen``); a user's module file is saved, changed (one layer's
width, the SGS layer's place) and checked, from the command line and through the fixture in a
pytest run of its own (``pytester``).
"""

from __future__ import annotations

import json
import sys
import uuid

import pytest
import torch

from atfr_analysis.flops.golden import compare, golden, read_golden
from atfr_analysis.flops.module_cost import cost_model
from atfr_analysis.models import build_model, list_models
from atfr_cli.main import main

pytest_plugins = ["pytester"]

#: a user's module file: WIDTH is one layer's width, WHERE the place of the SGS layer
NET = """
from collections import OrderedDict
from torch import nn
from atfr_analysis.models import InputSpec
from atfr_analysis.sgs import SimilarityGuidedSampling

WIDTH = {width}
WHERE = {where!r}


class Select(nn.Module):
    def forward(self, pair):
        return pair[0]


def net(num_classes=5):
    parts = [("stem", nn.Conv3d(3, 8, 3, padding=1, stride=(1, 2, 2))),
             ("body", nn.Sequential(nn.Conv3d(8, WIDTH, 3, padding=1), nn.BatchNorm3d(WIDTH), nn.ReLU()))]
    at = 1 if WHERE == "early" else 2
    c = 8 if WHERE == "early" else WIDTH
    parts[at:at] = [("sgs", SimilarityGuidedSampling(c)), ("pick", Select())]
    parts += [("pool", nn.AdaptiveAvgPool3d(1)), ("flat", nn.Flatten()), ("head", nn.Linear(WIDTH, num_classes))]
    model = nn.Sequential(OrderedDict(parts))
    model.input_spec = InputSpec(frames=(8,), train_crop=16, test_crop=16, sampling_rate=2)
    return model
"""


def _cli(capsys, *args) -> tuple[int, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def user_net(tmp_path, monkeypatch):
    """Writes the user's module (``write(width, where)``) and gives its ``package.module:callable``."""
    name = f"usernet_{uuid.uuid4().hex[:8]}"
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(width: int = 8, where: str = "early") -> str:
        (tmp_path / f"{name}.py").write_text(NET.format(width=width, where=where))
        sys.modules.pop(name, None)  # the next import reads the file again
        return f"{name}:net"

    yield write
    sys.modules.pop(name, None)


def test_save_then_check_passes(capsys, tmp_path, user_net):
    ref = user_net()
    gold = tmp_path / "gold.json"
    code, out = _cli(capsys, "flops", ref, "--save", str(gold))
    assert code == 0, out
    rec = read_golden(gold)
    assert rec["sgs_layers"] == ["sgs"] and len(rec["signatures"]) == 8  # every B' of B = 8
    assert all(isinstance(r["conv_fc"], int) and isinstance(r["fvcore"], int) for r in rec["signatures"])
    assert rec["modules"]["model"]["params"] == rec["params"]
    code, out = _cli(capsys, "flops", ref, "--check", str(gold))
    assert code == 0 and "equal" in out, out
    # a stated grid is kept as stated
    code, out = _cli(capsys, "flops", ref, "--save", str(gold), "--signatures", "8;3;1", "--depth", "1")
    assert [r["signature"] for r in read_golden(gold)["signatures"]] == [[8], [3], [1]]
    assert _cli(capsys, "flops", ref, "--check", str(gold))[0] == 0


def test_check_fails_naming_the_layer_whose_width_changed(capsys, tmp_path, user_net):
    gold = tmp_path / "gold.json"
    assert _cli(capsys, "flops", user_net(width=8), "--save", str(gold))[0] == 0
    code, out = _cli(capsys, "flops", user_net(width=12), "--check", str(gold))
    assert code == 1
    table = out[out.index("module") :]
    assert "body.0" in table and "head" in table and "conv_fc" in table and "params" in table
    assert "sgs " not in table  # the SGS layer sits before the change: it did not move


def test_check_fails_naming_a_moved_sgs_layer(capsys, tmp_path, user_net):
    gold = tmp_path / "gold.json"
    assert _cli(capsys, "flops", user_net(where="early"), "--save", str(gold))[0] == 0
    code, out = _cli(capsys, "flops", user_net(where="late"), "--check", str(gold))
    assert code == 1
    table = out[out.index("module") :]
    assert "placement" in table and "after stem" in table and "after body" in table
    assert table.splitlines()[1].split()[0] == "sgs"  # the first row names the moved layer


def test_check_of_a_missing_file_is_one_line(capsys, tmp_path, user_net):
    code, out = _cli(capsys, "flops", user_net(), "--check", str(tmp_path / "none.json"))
    assert code == 2 and out.strip().startswith("error: golden file not found")


def test_compare_is_empty_for_equal_records_and_names_every_change():
    with torch.device("meta"):
        a = build_model("slow_tiny_atfr").eval()
        b = build_model("slow_tiny_atfr", num_classes=401).eval()
    ra, rb = golden(a, depth=1, signatures=[[2]]), golden(b, depth=1, signatures=[[2]])
    assert compare(ra, ra) == []
    moved = {(r["module"], r["convention"]) for r in compare(ra, rb)}
    assert ("head", "params") in moved and ("head", "conv_fc") in moved and ("model", "conv_fc") in moved


# ----------------------------------------------------------------------------- the pytest fixture
FIXTURE_TEST = """
from torch import nn
from atfr_analysis.sgs import SimilarityGuidedSampling

WIDTH = {width}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv3d(3, WIDTH, 3, padding=1, stride=(1, 2, 2))
        self.sgs = SimilarityGuidedSampling(WIDTH)
        self.head = nn.Linear(WIDTH, 3)

    def forward(self, x):
        x, _ = self.sgs(self.stem(x))
        return self.head(x.mean(dim=(2, 3, 4)))


def test_net_cost(flops_regression):
    flops_regression.check(Net(), [(1, 3, 8, 16, 16)], signatures=[[8], [2]])
"""


@pytest.mark.slow
def test_fixture_writes_checks_fails_and_regenerates(pytester):
    pytester.makepyfile(test_net=FIXTURE_TEST.format(width=8))
    first = pytester.runpytest("-p", "no:cacheprovider")
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines(["*File not found in data directory, created*"])
    gold = pytester.path / "test_net" / "test_net_cost.json"
    assert gold.is_file()
    assert [r["signature"] for r in json.loads(gold.read_text())["signatures"]] == [[8], [2]]
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)

    pytester.makepyfile(test_net=FIXTURE_TEST.format(width=12))  # one layer wider
    moved = pytester.runpytest("-p", "no:cacheprovider")
    moved.assert_outcomes(failed=1)
    moved.stdout.fnmatch_lines(["*FLOPs moved*", "*stem*params*", "*model*conv_fc*8*"])
    regen = pytester.runpytest("-p", "no:cacheprovider", "--force-regen")
    regen.assert_outcomes(failed=1)
    regen.stdout.fnmatch_lines(["*regenerating*"])
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


# ----------------------------------------------------------------------------- the zoo, pinned
FAST = ("slow_tiny", "slow_tiny_atfr")


def _zoo_signatures(model) -> list[list[int]] | None:
    """Every bin, half of them, one per layer: a small stated grid."""
    if not model.sgs_layer_names():
        return None
    full = cost_model(model, [tuple(x) for x in _shapes(model)]).num_bins
    return [full, [max(1, b // 2) for b in full], [1] * len(full)]


def _shapes(model):
    from atfr_analysis.flops.golden import default_shapes

    return default_shapes(model)


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in list_models()])
def test_zoo_flops_pinned(flops_regression, name):
    with torch.device("meta"):
        model = build_model(name).eval()
    rec = flops_regression.check(model, depth=1, signatures=_zoo_signatures(model))
    assert rec["model"] == name
