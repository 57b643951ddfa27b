"""docs/own-model.md's sections "Your own model" and "FLOP regression tests" run as written.

The model file, the Python example, every ``atfr flops`` line, the table ``--check`` prints after
the change the README describes (its first lines must be what the README shows) and the pytest
example (in a pytest run of its own). ``atfr profile`` on a user model is run on real footage by
``tests/test_own_model.py``.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from atfr_cli.main import main

pytest_plugins = ["pytester"]
README = Path(__file__).resolve().parents[1] / "docs" / "own-model.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def _blocks(title: str) -> list[tuple[str, str]]:
    return re.findall(r"```(\w+)\n(.*?)```", _section(title), re.DOTALL)


def _atfr_lines(code: str) -> list[list[str]]:
    return [shlex.split(line.split("#")[0])[1:] for line in code.splitlines() if line.startswith("atfr flops ")]


def _run(capsys, argv) -> tuple[int, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def mynet(tmp_path, monkeypatch):
    """README's mynet.py in a fresh folder, the working directory."""
    files = [code for lang, code in _blocks("Your own model") if code.startswith("# mynet.py")]
    assert len(files) == 1
    (tmp_path / "mynet.py").write_text(files[0])
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("mynet", None)
    yield tmp_path
    sys.modules.pop("mynet", None)


def test_own_model_section_runs(mynet, capsys):
    blocks = _blocks("Your own model")
    python = [code for lang, code in blocks if lang == "python" and not code.startswith("# mynet.py")]
    assert len(python) == 1
    exec(compile(python[0], "docs/own-model.md", "exec"), {})
    out = capsys.readouterr().out
    assert "bins.sgs" in out and "gmacs_executed" in out
    bash = [code for lang, code in blocks if lang == "bash"]
    lines = _atfr_lines(bash[0])
    assert len(lines) == 2
    for argv in lines:
        code, out = _run(capsys, argv)
        assert code == 0, out
    shown = "error: --model 'mynet:nope': 'mynet' has no attribute 'nope'"
    assert shown in _section("Your own model").replace("\n", " ")
    code, out = _run(capsys, ["flops", "mynet:nope"])
    assert code == 2 and shown in out


def test_regression_section_runs_and_shows_what_check_prints(mynet, capsys):
    blocks = _blocks("FLOP regression tests")
    save, check = _atfr_lines([code for lang, code in blocks if lang == "bash"][0])
    (mynet / "tests").mkdir()
    assert _run(capsys, save)[0] == 0
    assert _run(capsys, check)[0] == 0
    # the change the README describes: body from 32 to 48 channels
    src = (mynet / "mynet.py").read_text()
    wide = src.replace("nn.Conv3d(16, 32,", "nn.Conv3d(16, 48,").replace("nn.Linear(32,", "nn.Linear(48,")
    assert wide != src
    (mynet / "mynet.py").write_text(wide)
    sys.modules.pop("mynet", None)
    code, out = _run(capsys, check)
    assert code == 1
    shown = [code for lang, code in blocks if lang == "text"][0].splitlines()
    assert shown[-1] == "..."
    got = [" ".join(line.split()) for line in out.splitlines()]
    assert got[: len(shown) - 1] == [" ".join(line.split()) for line in shown[:-1]]


@pytest.mark.slow
def test_regression_section_pytest_example(pytester):
    mynet = [code for lang, code in _blocks("Your own model") if code.startswith("# mynet.py")][0]
    test = [code for lang, code in _blocks("FLOP regression tests") if code.startswith("# test_mynet.py")][0]
    pytester.makepyfile(mynet=mynet, test_mynet=test)
    pytester.syspathinsert()
    first = pytester.runpytest("-p", "no:cacheprovider")
    first.assert_outcomes(failed=1)
    assert (pytester.path / "test_mynet" / "test_mynet_cost.json").is_file()
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
