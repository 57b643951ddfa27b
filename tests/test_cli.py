"""The CLI: one-line errors with exit status 2, JSON output, what-if bins and curves."""
import json
import subprocess
import sys

import pytest

from atfr_cli.main import main


def run_cli(capsys, *args):
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_flops_json_keys(capsys):
    code, out, err = run_cli(capsys, "flops", "x3d_xs", "--crop", "64", "--views", "30", "--json")
    assert code == 0, err
    d = json.loads(out)
    for k in ("model", "frames", "crop", "num_classes", "gmacs", "gmacs_fvcore", "params", "views", "gmacs_x_views"):
        assert k in d
    assert d["gmacs_x_views"] == pytest.approx(30 * d["gmacs"])
    assert d["gmacs_fvcore"] > d["gmacs"] > 0 and d["params"] == 3_794_322


def test_flops_text_has_stages_and_unsupported_ops(capsys):
    code, out, _ = run_cli(capsys, "flops", "x3d_xs", "--crop", "64")
    assert code == 0
    assert "GMACs conv_fc" in out and "GMACs fvcore" in out and "per stage" in out and "not counted" in out


def test_flops_what_if_bins(capsys):
    code, out, err = run_cli(capsys, "flops", "x3d_xs_atfr", "--crop", "64", "--bins", "s2.ts_layer=2", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["bins"] == {"s2.ts_layer": 2} and d["gmacs"] < d["static_gmacs"]


def test_flops_curve_plot(capsys, tmp_path):
    png = tmp_path / "curve.png"
    code, out, err = run_cli(capsys, "flops", "x3d_xs_atfr", "--crop", "64", "--curve", "--plot", str(png))
    assert code == 0, err
    assert "cost curve" in out and png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args,needle",
    [
        (["flops", "nope"], "choose one of"),
        (["flops", "x3d_s", "--frames", "abc"], "--frames"),
        (["flops", "x3d_s", "--crop", "-3"], "--crop"),
        (["flops", "x3d_s", "--bins", "3"], "_atfr"),
        (["flops", "slowfast_4x16_r50_atfr", "--bins", "3"], "2 value"),
        (["flops", "x3d_xs_atfr", "--bins", "s2.ts_layer=99", "--crop", "64"], "1..4"),
        (["models", "zzz*"], "no model matches"),
        (["flops"], "Missing argument"),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_bad_input_is_one_line(capsys, args, needle):
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert "Traceback" not in err + out


def test_console_script_no_traceback():
    """The installed `atfr` entry point, in a subprocess."""
    p = subprocess.run([sys.executable, "-m", "atfr_cli.main", "flops", "no_such_model"], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "x3d_s" in p.stderr and "Traceback" not in p.stderr


def test_models_json(capsys):
    code, out, err = run_cli(capsys, "models", "x3d_xs*", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["model"] for r in rows] == ["x3d_xs", "x3d_xs_atfr"]
    assert rows[0]["input"] == "4x182x182" and rows[0]["gmacs"] == pytest.approx(0.8439, rel=1e-3)


def test_report_on_a_folder_that_is_not_a_run(capsys, tmp_path):
    code, _, err = run_cli(capsys, "report", str(tmp_path), "--out", str(tmp_path / "r"))
    assert code == 2 and "not a run folder" in err and err.count("\n") == 1
