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


def _edit(path, change) -> None:
    rec = json.loads(path.read_text())
    change(rec)
    path.write_text(json.dumps(rec))


def _set(key, value):
    def change(rec):
        rec[key] = value

    return change


@pytest.mark.parametrize(
    "field, change",
    [
        ("params", lambda rec: rec.update(params=rec["params"] + 1)),
        ("num_bins", lambda rec: rec.update(num_bins=[7])),
        ("unit", lambda rec: rec.update(unit="FLOPs")),
    ],
)
def test_check_fails_on_any_hand_edited_field(capsys, tmp_path, user_net, field, change):
    ref = user_net()
    gold = tmp_path / "gold.json"
    assert _cli(capsys, "flops", ref, "--save", str(gold))[0] == 0
    _edit(gold, change)
    code, out = _cli(capsys, "flops", ref, "--check", str(gold))
    assert code == 1, out
    assert field in out[out.index("module") :]


@pytest.mark.parametrize(
    "field, change",
    [
        ("params", _set("params", "1000")),
        ("depth", _set("depth", 1.5)),
        ("input_shapes", _set("input_shapes", [[1, "3", 8, 16, 16]])),
        ("num_bins", _set("num_bins", [8, 8])),
        ("sgs_layers", _set("sgs_layers", "sgs")),
        ("modules", lambda rec: rec["modules"]["model"].update(conv_fc="12")),
        ("modules", lambda rec: rec["modules"]["model"].pop("fvcore")),
        ("signatures", lambda rec: rec["signatures"][0].update(signature=8)),
        ("signatures", lambda rec: rec["signatures"][0].update(fvcore=None)),
        ("signatures", _set("signatures", [])),
        ("placement", _set("placement", ["after stem"])),
        ("params", lambda rec: rec.pop("params")),
        ("parms", _set("parms", 3)),
    ],
)
def test_a_golden_file_with_a_bad_field_is_one_line_naming_it(capsys, tmp_path, user_net, field, change):
    ref = user_net()
    gold = tmp_path / "gold.json"
    assert _cli(capsys, "flops", ref, "--save", str(gold))[0] == 0
    _edit(gold, change)
    code, out = _cli(capsys, "flops", ref, "--check", str(gold))
    assert code == 2, out
    line = out.strip()
    assert len(line.splitlines()) == 1 and line.startswith("error: ") and "bug" not in line, out
    assert str(gold) in line and repr(field) in line, out


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


@pytest.fixture(scope="module")
def outer_imports():
    """What the inner pytest runs import, imported by this process first: pytester drops the modules
    an inner run imported when it ends, and some of torch's (``torch._dynamo``, ``torch._inductor``)
    cannot be imported twice in one process (a later test would fail registering them again)."""
    ns: dict = {}
    exec(FIXTURE_TEST.format(width=8), ns)
    golden(ns["Net"](), [(1, 3, 8, 16, 16)], signatures=[[8], [2]])


@pytest.mark.slow
def test_fixture_writes_checks_fails_and_regenerates(pytester, outer_imports):
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


@pytest.mark.parametrize(
    "corrupt, says",
    [
        (lambda text: text[: len(text) // 2], "cannot read golden file"),  # cut short: not JSON
        (lambda text: json.dumps({**json.loads(text), "params": "2545"}), "field 'params' must be an integer"),
        (lambda text: text.replace('"num_bins": [8]', '"num_bins": [4]'), "(settings)  num_bins"),  # hand-edited
    ],
)
def test_fixture_fails_clearly_on_a_corrupt_or_edited_file_and_force_regen_repairs_it(
    pytester, outer_imports, corrupt, says
):
    pytester.makepyfile(test_net=FIXTURE_TEST.format(width=8))
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(failed=1)  # writes the golden file
    gold = pytester.path / "test_net" / "test_net_cost.json"
    gold.write_text(corrupt(gold.read_text()))
    bad = pytester.runpytest("-p", "no:cacheprovider")
    bad.assert_outcomes(failed=1)
    text = bad.stdout.str()
    assert "Traceback" not in text and "InputError" not in text and "JSONDecodeError" not in text, text
    assert "test_net_cost.json" in text and says in text, text
    pytester.runpytest("-p", "no:cacheprovider", "--force-regen").assert_outcomes(failed=1)
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
