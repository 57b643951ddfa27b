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


# what `atfr ARGS` imported: run in a fresh interpreter, as the console script runs it
_IMPORTED = """
import json, sys
from atfr_cli.main import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code or 0
heavy = sorted(m for m in ("torch", "pandas", "numpy", "fvcore", "av", "matplotlib") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], [], ["profile", "--help"], ["demo", "--help"]])
def test_help_and_version_import_no_torch(args):
    r = subprocess.run([sys.executable, "-c", _IMPORTED, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    *shown, last = r.stdout.strip().splitlines()
    res = json.loads(last)
    assert res == {"code": 0, "heavy": []}, (args, res)
    if args == ["--version"]:
        from atfr_analysis import __version__

        assert shown == [f"atfr-analysis {__version__}"]
    elif args:
        assert shown and shown[0].startswith("Usage: atfr")


def test_version_is_the_package_metadata_version(capsys):
    from importlib.metadata import version

    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.split() == ["atfr-analysis", version("atfr-analysis")]


def test_package_api_names_resolve_on_first_use():
    import atfr_analysis as atfr
    import atfr_analysis.profile as profile_package

    assert callable(atfr.build_model) and callable(atfr.load_run) and "profile_clips" in dir(atfr)
    assert atfr.profile is profile_package and callable(atfr.profile)  # the subpackage, callable
    with pytest.raises(AttributeError):
        _ = atfr.no_such_name


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
    p = subprocess.run(
        [sys.executable, "-m", "atfr_cli.main", "flops", "no_such_model"], capture_output=True, text=True
    )
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


# ----------------------------------------------------------------------------- errors: bug vs input vs environment
def _one_error_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_a_library_bug_is_reported_as_a_bug(capsys, monkeypatch):
    """A ValueError from inside the library is not the user's mistake: the bug line, exit 1."""
    import atfr_analysis.flops.summary as summary

    def broken(*a, **k):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(summary, "model_flops", broken)
    monkeypatch.delenv("ATFR_DEBUG", raising=False)
    code, out, err = run_cli(capsys, "flops", "x3d_xs")
    line = _one_error_line(err)
    assert code == 1
    assert (
        "bug in atfr-analysis" in line and "ValueError: an internal invariant broke" in line and "ATFR_DEBUG=1" in line
    )
    monkeypatch.setenv("ATFR_DEBUG", "1")  # the traceback on request
    with pytest.raises(ValueError, match="invariant"):
        main(["flops", "x3d_xs"])


@pytest.mark.parametrize("exc", [TypeError("x() got an unexpected keyword"), KeyError("k"), RuntimeError("r")])
def test_other_exceptions_are_bugs(capsys, monkeypatch, exc):
    import atfr_analysis.flops.summary as summary

    def broken(*a, **k):
        raise exc

    monkeypatch.setattr(summary, "model_flops", broken)
    monkeypatch.delenv("ATFR_DEBUG", raising=False)
    code, _, err = run_cli(capsys, "flops", "x3d_xs")
    assert code == 1 and f"bug in atfr-analysis: {type(exc).__name__}" in _one_error_line(err)


def test_user_facing_error_classes_are_atfr_errors():
    from atfr_analysis.analysis.aggregate import AnalysisError
    from atfr_analysis.checkpoint import CheckpointError
    from atfr_analysis.data import DataError, ListError, VideoDecodeError
    from atfr_analysis.errors import AtfrError
    from atfr_analysis.models.registry import UnknownModelError
    from atfr_analysis.profile.log import RunError

    for cls in (AnalysisError, CheckpointError, DataError, ListError, VideoDecodeError, UnknownModelError, RunError):
        assert issubclass(cls, AtfrError), cls
    for cls in (AnalysisError, CheckpointError, UnknownModelError, RunError):  # old base kept
        assert issubclass(cls, ValueError), cls


def test_environment_message_names_path_and_reason():
    import errno

    from atfr_cli.main import environment_message

    assert (
        environment_message(OSError(errno.EROFS, "Read-only file system", "/ro/run"))
        == "/ro/run: Read-only file system"
    )
    assert "No space left on device" in environment_message(OSError(errno.ENOSPC, "No space left on device"))
    assert environment_message(PermissionError(errno.EACCES, "Permission denied", "/x")) == "/x: Permission denied"
    assert environment_message(OSError("no errno")) is None  # not the OS: a bug


@pytest.fixture(scope="module")
def tiny_run_inputs(tmp_path_factory):
    from profile_helpers import make_checkpoint, sample_list

    d = tmp_path_factory.mktemp("inputs")
    return make_checkpoint(d / "tiny.pyth"), sample_list(d / "list.csv", names=("carphone_pristine",))


def _profile(ck, lst, out):
    return (
        "profile",
        str(ck),
        "--model",
        "slow_tiny_atfr",
        "--data",
        str(lst),
        "--out",
        str(out),
        "--views",
        "1",
        "--crops",
        "1",
        "--device",
        "cpu",
        "--quiet",
    )


def test_read_only_output_folder_names_path_and_reason(capsys, monkeypatch, tmp_path, tiny_run_inputs):
    import errno
    from pathlib import Path

    ro = tmp_path / "ro"
    ro.mkdir()
    real_mkdir = Path.mkdir

    def mkdir(self, *a, **k):  # what a read-only mount answers (root ignores chmod, so simulate it)
        if str(self).startswith(str(ro)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.delenv("ATFR_DEBUG", raising=False)
    code, _, err = run_cli(capsys, *_profile(*tiny_run_inputs, ro / "run"))
    line = _one_error_line(err)
    assert code == 1 and str(ro / "run") in line and "Read-only file system" in line
    assert "bug" not in line and "internal error" not in line


def test_unwritable_output_folder_for_real(capsys, tmp_path, tiny_run_inputs):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, _, err = run_cli(capsys, *_profile(*tiny_run_inputs, ro / "run"))
    finally:
        ro.chmod(0o755)
    line = _one_error_line(err)
    assert code == 1 and str(ro / "run") in line and "Permission denied" in line


def test_full_disk_names_the_file_and_reason(capsys, monkeypatch, tmp_path, tiny_run_inputs):
    import errno

    import pyarrow.parquet as pq

    def full(*a, **k):  # a write on a full disk: the OS error carries no path
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full)
    monkeypatch.delenv("ATFR_DEBUG", raising=False)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *_profile(*tiny_run_inputs, out))
    line = _one_error_line(err)
    assert code == 1 and "No space left on device" in line and str(out) in line and ".parquet" in line
    assert "bug" not in line and "internal error" not in line
    assert not list(out.glob(".*.tmp"))  # no half-written part left behind


# ----------------------------------------------------------------------------- list formats, end to end
def test_a_rawframe_list_is_refused_before_any_video(capsys, tmp_path, tiny_run_inputs):
    ck, _ = tiny_run_inputs
    lst = tmp_path / "rawframes.txt"
    lst.write_text("some/frames_dir 300 3\n")
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *_profile(ck, lst, out))
    line = _one_error_line(err)
    assert code == 2 and f"{lst} line 1" in line and "rawframe" in line and "we read" in line
    assert not out.exists()


def test_kinetics_csv_end_to_end(capsys, tmp_path, tiny_run_inputs):
    import shutil

    import pandas as pd

    from atfr_analysis.data.samples import sample_videos

    ck, _ = tiny_run_inputs
    root = tmp_path / "kinetics" / "val"
    (root / "air drumming").mkdir(parents=True)
    shutil.copy(sample_videos()["carphone_pristine"], root / "air drumming" / "abcdefghijk_000003_000013.mp4")
    lst = tmp_path / "validate.csv"
    lst.write_text(
        "label,youtube_id,time_start,time_end,split\nair drumming,abcdefghijk,3,13,validate\n"
        "abseiling,missingvideo,0,10,validate\n"
    )
    labels = tmp_path / "labels.txt"
    labels.write_text("abseiling\nair drumming\nbaking\nzumba\n")
    args = _profile(ck, lst, tmp_path / "run") + ("--data-root", str(root), "--labels", str(labels))
    code, _, err = run_cli(capsys, *args)
    line = _one_error_line(err)  # main: "unknown label 'split'"
    assert (
        code == 2
        and "1 of 2 videos of the Kinetics list are not under" in line
        and "missingvideo_000000_000010.mp4" in line
    )
    lst.write_text("label,youtube_id,time_start,time_end,split\nair drumming,abcdefghijk,3,13,validate\n")
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    videos = pd.read_parquet(next((tmp_path / "run").glob("videos-*.parquet")))
    assert videos["class_name"].tolist() == ["air drumming"] and videos["label"].tolist() == [1]


def test_profile_a_partial_caffe2_checkpoint_names_the_missing_keys(capsys, shared_dir, tmp_path, tiny_run_inputs):
    _, lst = tiny_run_inputs
    sample = shared_dir / "fixtures" / "caffe2" / "slowfast_4x16_r50_sample.pkl"
    out = tmp_path / "run"
    args = (
        "profile",
        str(sample),
        "--model",
        "slowfast_4x16_r50",
        "--data",
        str(lst),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--quiet",
    )
    code, _, err = run_cli(capsys, *args)
    line = _one_error_line(err)
    assert code == 2 and "checkpoint does not fit the model" in line and "missing (s3." in line
    assert not out.exists()
