"""``atfr flops MODEL --depth N``: the per-module table adds up to the model total at every depth."""

import json

import pytest
import torch

from atfr_analysis.flops import CostModel, static_model
from atfr_analysis.flops.summary import model_flops
from atfr_analysis.flops.table import module_table
from atfr_analysis.models import build_model, make_inputs
from atfr_cli.main import main


def _leaf_sums(rows):
    leaves = [r for r in rows if r["leaf"]]
    return sum(r["macs"] for r in leaves), sum(r["macs_fvcore"] for r in leaves), sum(r["params"] for r in leaves)


@pytest.mark.parametrize(
    "name,crop,bins",
    [
        ("x3d_xs", 64, None),
        ("slowfast_4x16_r50", None, None),
        ("slowfast_4x16_r50_atfr", None, (2, 9)),
        ("x3d_xs_atfr", 64, (2,)),
    ],
)
def test_depth_tables_sum_to_the_total(name, crop, bins):
    with torch.device("meta"):
        model = build_model(name).eval()
    cm = CostModel(model, [tuple(x.shape) for x in make_inputs(model.spec, crop)])
    fc = cm.cost(bins or ())
    static = CostModel(static_model(model), cm.input_shapes).static() if bins else None
    params = sum(p.numel() for p in model.parameters())
    for depth in (0, 1, 2, 3, 5):
        rows = module_table(fc, model, depth, static=static)
        root = rows[0]
        assert root["module"] == "model" and root["depth"] == 0
        assert (root["macs"], root["macs_fvcore"], root["params"]) == (fc.count_conv_fc, fc.count_fvcore, params)
        assert _leaf_sums(rows) == (root["macs"], root["macs_fvcore"], root["params"])
        assert max(r["depth"] for r in rows) <= depth + 1  # (own ops) rows sit one level down
    if bins is not None:  # ATFR: every module has its no-SGS counterpart but the SGS layers
        by_name = {r["module"]: r for r in rows}
        assert by_name["model"]["static_macs"] == static.count_conv_fc
        sgs = [r for r in rows if r["module"].endswith("ts_layer")]
        assert sgs and all(r["static_macs"] is None for r in sgs)
        # the stage before SGS costs what it costs without SGS, the stages after it less
        assert by_name["s1"]["macs"] == by_name["s1"]["static_macs"]
        assert by_name["s3"]["macs"] < by_name["s3"]["static_macs"]
    # the summary's table is this table
    s = model_flops(name, crop=crop, bins=list(bins) if bins else None, depth=2, model=model)
    assert s.modules == module_table(fc, model, 2, static=static)


def test_depth_table_in_the_cli(capsys):
    try:
        main(["flops", "slowfast_4x16_r50_atfr", "--bins", "4,16", "--depth", "2", "--json"])
    except SystemExit as e:
        assert e.code == 0
    d = json.loads(capsys.readouterr().out)
    leaves = [r for r in d["modules"] if r["leaf"]]
    assert sum(r["macs"] for r in leaves) == d["modules"][0]["macs"] == round(d["gmacs"] * 1e9)
    try:
        main(["flops", "slowfast_4x16_r50_atfr", "--bins", "4,16", "--depth", "1"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    assert "per module, depth 1" in out and "no SGS" in out and "  s3 " in out and "pathway0_res0" not in out


def test_depth_must_not_be_negative(capsys):
    with pytest.raises(SystemExit) as e:
        main(["flops", "x3d_xs", "--depth", "-1"])
    assert e.value.code == 2 and "--depth" in capsys.readouterr().err
