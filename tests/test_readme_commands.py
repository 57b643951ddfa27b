"""Every command the README (and ``docs/*.md``, when there is such a folder) shows in a shell block
runs in a test, with the same options.

``readme_commands()`` reads each ```bash / ```sh / ```shell / ```console block, joins continued
lines, splits ``&&`` and ``;`` chains, and keeps every command, a command written in a comment too
(``# then: atfr report runs/mynet``). A command's *key* is its program, its subcommand and its
option names, sorted (values and positional arguments left out: a test may shrink them). REGISTRY
maps each key to the test that runs it (``tests/FILE.py::NAME``) or to the reason it is exempt;
``test_every_readme_command_is_registered`` fails when a block shows a command with no entry, and
when an entry names a command the README no longer shows. ``test_registered_tests_pass_the_options``
checks that each registered test exists and writes every option of its command (or runs the
README's own lines, parsed from the README, for the entries marked so).

The runs shrink what a laptop cannot do: sizes, epochs, ``--workers``, ``--device cuda`` -> the CPU,
``torchrun --nproc_per_node 8`` -> 2 gloo processes, the Kinetics model and files -> the shipped
``slow_tiny`` checkpoints on the demo's classes (``atfr_analysis.data.synthetic``, a few clips).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from profile_helpers import run_cli
from train_helpers import SHIPPED_CLASSES, tiny_train_set

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
SHIPPED = ROOT / "atfr_analysis" / "checkpoints"
SHELL_LANGS = {"bash", "sh", "shell", "console", "zsh"}
#: the set-up commands: CI runs them
SETUP = "exempt: set-up, run by CI: .ci/run runs the README's second command verbatim"

HERE = "tests/test_readme_commands.py::"
#: a test that runs the README's lines as it parses them from the README
AS_WRITTEN = "readme:tests/test_readme_commands.py::"
OWN_AS_WRITTEN = "readme:tests/test_readme_own_model.py::"

#: README command key -> the test that runs it, or why it is exempt ("exempt: ...")
REGISTRY: dict[str, str] = {
    # the two set-up commands at the top, split at `&&`
    "python3.11 -m venv": SETUP,
    ". .venv/bin/activate": SETUP,
    "pip install torch==2.13.0": SETUP,
    "pip install -e .": SETUP,
    "pip install -e .[test]": SETUP,
    "pytest -n": "exempt: the suite itself; .ci/run runs `pytest -n 2` verbatim",
    "atfr demo": HERE + "test_atfr_demo",
    # the README's quick start (its other commands are those of docs/own-model.md and docs/training.md)
    "atfr profile --data --labels --model --out": HERE + "test_profile_report_table",
    "atfr table": HERE + "test_profile_report_table",
    # docs/own-model.md "Your own model" (its flops lines are also the README's quick start)
    "atfr flops --depth": OWN_AS_WRITTEN + "test_own_model_section_runs",
    "atfr flops --bins": OWN_AS_WRITTEN + "test_own_model_section_runs",
    "python -c": AS_WRITTEN + "test_own_model_block_profiles_mynet",
    "atfr profile --data --model --out": AS_WRITTEN + "test_own_model_block_profiles_mynet",
    "atfr report --out": AS_WRITTEN + "test_own_model_block_then_report_as_written",
    # docs/own-model.md "FLOP regression tests" (also the README's quick start)
    "atfr flops --save": OWN_AS_WRITTEN + "test_regression_section_runs_and_shows_what_check_prints",
    "atfr flops --check": OWN_AS_WRITTEN + "test_regression_section_runs_and_shows_what_check_prints",
    # docs/log.md "How parts are written": the multi-GPU profile
    "torchrun --nproc_per_node -m atfr_cli.main profile --data --data-root --device --labels --model --out --workers": (
        HERE + "test_torchrun_profile"
    ),
    # docs/training.md (its one-GPU command is also the README's quick start)
    "atfr train --batch-size --checkpoint-every --clip-grad --data --epochs --freeze-bn --init-from --labels --lr "
    "--out --precision --val --val-every --warmup-epochs --workers": HERE + "test_train_one_gpu",
    "torchrun --nproc_per_node -m atfr_cli.main train --batch-size --clip-grad --data --epochs --freeze-bn "
    "--init-from --labels --lr --out --precision --warmup-epochs --workers": (HERE + "test_torchrun_train"),
    "torchrun --nnodes --node_rank --nproc_per_node --rdzv_backend --rdzv_endpoint -m atfr_cli.main train "
    "--batch-size --out": HERE + "test_torchrun_train_several_machines",
}


# ----------------------------------------------------------------------------- reading the blocks
def doc_files() -> list[Path]:
    docs = ROOT / "docs"
    return [ROOT / "README.md"] + (sorted(docs.rglob("*.md")) if docs.is_dir() else [])


def shell_blocks(text: str) -> list[str]:
    return [code for lang, code in re.findall(r"^```(\w*)\n(.*?)^```", text, re.M | re.S) if lang in SHELL_LANGS]


def _split_comment(line: str) -> tuple[str, str]:
    """``line`` before and after its first ``#`` that starts a shell comment (outside quotes)."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i], line[i + 1 :]
    return line, ""


def block_commands(code: str) -> list[list[str]]:
    """The commands of a shell block, each as its words (a command a comment names included)."""
    out = []
    for line in re.sub(r"\\\n", " ", code).splitlines():
        line = line.strip().removeprefix("$ ")
        line, comment = _split_comment(line)
        cmd: list[str] = []
        for w in shlex.split(line) + ["&&"]:
            if w in ("&&", ";", "||"):
                if cmd:
                    out.append(cmd)
                cmd = []
            else:
                cmd.append(w)
        m = re.search(r"\b(atfr [a-z].*)$", comment)
        if m:
            out.append(shlex.split(m.group(1)))
    return out


def _options(words: list[str]) -> list[str]:
    return sorted({w.split("=", 1)[0] for w in words if w.startswith("-") and w not in ("-", "...")})


def command_key(words: list[str]) -> str:
    """Program, subcommand and option names: ``atfr train --data --out``; ``torchrun --nproc_per_node
    -m atfr_cli.main train ...``."""
    prog = words[0]
    if prog == "atfr":
        return " ".join(["atfr", words[1], *_options(words[2:])]).strip()
    if prog == "torchrun":
        m = words.index("-m")
        return " ".join(
            ["torchrun", *_options(words[1:m]), "-m", words[m + 1], words[m + 2], *_options(words[m + 3 :])]
        )
    if prog.startswith("python") and words[1:2] in (["-m"], ["-c"]):
        return " ".join([prog, words[1], *(words[2:3] if words[1] == "-m" else [])])
    if prog in ("pip", "pip3") and words[1:2] == ["install"]:
        return " ".join(words[:3] if not words[2].startswith("-") else words[:4])
    return " ".join([prog, *_options(words[1:])]) if prog != "." else " ".join(words)


def readme_commands() -> dict[str, list[list[str]]]:
    """Key -> the commands (as words) of every shell block of the README and docs/ with that key."""
    out: dict[str, list[list[str]]] = {}
    for f in doc_files():
        for code in shell_blocks(f.read_text()):
            for words in block_commands(code):
                out.setdefault(command_key(words), []).append(words)
    return out


# ----------------------------------------------------------------------------- the registry checks
def registry_problems(shown) -> tuple[list[str], list[str]]:
    """(shown commands with no entry, entries for commands not shown)."""
    return sorted(set(shown) - set(REGISTRY)), sorted(set(REGISTRY) - set(shown))


def test_every_readme_command_is_registered():
    missing, stale = registry_problems(readme_commands())
    assert not missing, f"README commands with no test (add one and register it in REGISTRY): {missing}"
    assert not stale, f"REGISTRY names commands the README no longer shows: {stale}"


def _strings_of(nodeid: str) -> tuple[set[str], str]:
    """The string constants of a test and of the module's functions it calls or takes as fixtures
    (transitively), and their source."""
    file, name = nodeid.split("::")
    src = (ROOT / file).read_text()
    fns = {n.name: n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef)}
    assert name in fns, f"{nodeid}: no such test"
    seen, todo, strings = set(), [name], set()
    while todo:
        fn = fns[todo.pop()]
        seen.add(fn.name)
        used = [a.arg for a in fn.args.args]
        for n in ast.walk(fn):
            if isinstance(n, ast.Constant) and isinstance(n.value, str):
                strings.add(n.value.split("=", 1)[0])
            elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
                used.append(n.func.id)
        todo += [u for u in used if u in fns and u not in seen and u not in todo]
    return strings, "\n".join(ast.get_source_segment(src, fns[f]) for f in sorted(seen))


def test_a_new_or_changed_readme_command_fails_the_check():
    shown = dict(readme_commands())
    shown[command_key(shlex.split("atfr train m --data a --out b --new-option 3"))] = []
    del shown["atfr demo"]
    assert registry_problems(shown) == (["atfr train --data --new-option --out"], ["atfr demo"])


def test_registered_tests_pass_the_options():
    for key, entry in REGISTRY.items():
        if entry.startswith("exempt:"):
            continue
        strings, src = _strings_of(entry.removeprefix("readme:"))
        if entry.startswith("readme:"):  # it runs the README's own lines, parsed from the README
            assert re.search(r"_blocks\(|_own_model_block\(|readme_commands\(", src), entry
            continue
        words = key.split(" -m atfr_cli.main ")[-1].split()
        want = [w for w in key.split() if w.startswith("-") and w != "-m"] + [
            words[1] if words[0] == "atfr" else words[0]
        ]
        missing = [w for w in want if w not in strings]
        assert not missing, f"{entry} does not pass {missing} of `{key}`"


def test_setup_commands_are_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    text = (ROOT / "README.md").read_text()
    second = next(line for code in shell_blocks(text) for line in code.splitlines() if "pytest" in line)
    assert second in ci.splitlines(), "the README's second command is not .ci/run's"


def test_keys_of_shown_commands():
    """The parser sees continued lines, chains and comments as the shell does."""
    code = (
        "atfr flops m --depth 1  # both\natfr train m --data a \\\n  --out b\nx && atfr demo  # then: atfr report r\n"
    )
    keys = [command_key(w) for w in block_commands(code)]
    assert keys == ["atfr flops --depth", "atfr train --data --out", "x", "atfr demo", "atfr report"]
    tr = "torchrun --nnodes 4 --nproc_per_node 8 -m atfr_cli.main train m ... --batch-size 1024 --out o"
    assert (
        command_key(shlex.split(tr)) == "torchrun --nnodes --nproc_per_node -m atfr_cli.main train --batch-size --out"
    )


# ----------------------------------------------------------------------------- shared pieces of the runs
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(port: int | None = None) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore::DeprecationWarning")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    if port is not None:  # torchrun's default rendezvous port, 29500, may be taken by a test beside this one
        env["PET_MASTER_PORT"] = str(port)
    return env


def _torchrun() -> str:
    return str(Path(sys.executable).parent / "torchrun")


@pytest.fixture(scope="module")
def demo_classes(tmp_path_factory) -> Path:
    """The shipped checkpoints' four classes, one train and one test clip each, 16 x 64 px."""
    return tiny_train_set(tmp_path_factory.mktemp("readme") / "k400", classes=SHIPPED_CLASSES, test_per_class=1)


def _record(ckpt: Path) -> dict:
    from atfr_analysis.checkpoint import load_checkpoint

    return load_checkpoint(ckpt).cfg["ATFR_ANALYSIS"]


# ----------------------------------------------------------------------------- atfr demo
@pytest.mark.slow
def test_atfr_demo(tmp_path, capsys):
    """`atfr demo`, with each of its options: the committed numbers and model card, the data set in
    --cache, the reports in --out, no progress with --quiet (decoding in a loader worker changes nothing)."""
    out, cache, card = tmp_path / "demo", tmp_path / "cache", tmp_path / "MODEL_CARD.md"
    code, stdout, err = run_cli(
        capsys, "demo", "--out", out, "--cache", cache, "--workers", "1", "--quiet", "--model-card", card
    )
    assert code == 0, err
    committed = json.loads((ROOT / "reports" / "demo" / "demo_numbers.json").read_text())
    produced = json.loads((out / "demo_numbers.json").read_text())
    assert json.dumps(produced, sort_keys=True) == json.dumps(committed, sort_keys=True)
    assert card.read_text() == (SHIPPED / "MODEL_CARD.md").read_text()
    assert (cache / "data").is_dir() and (cache / "runs").is_dir()
    assert (out / "README.md").is_file() and "model card:" in stdout
    assert "\r" not in err and "%" not in err  # --quiet: no progress bars


# ----------------------------------------------------------------------------- Your own model
def _own_model_block() -> list[list[str]]:
    from test_readme_own_model import _blocks

    (bash,) = [code for lang, code in _blocks("Your own model") if lang == "bash"]
    return block_commands(bash)


@pytest.fixture
def mynet_profiled(tmp_path, monkeypatch, capsys):
    """README's mynet.py, a val.csv of two real clips, then the block's python and `atfr profile` lines."""
    from profile_helpers import sample_list
    from test_readme_own_model import _blocks

    (src,) = [code for lang, code in _blocks("Your own model") if code.startswith("# mynet.py")]
    (tmp_path / "mynet.py").write_text(src)
    sample_list(tmp_path / "val.csv", names=("bikes", "carphone_pristine"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("mynet", None)
    cmds = _own_model_block()
    (python,) = [w for w in cmds if w[0] == "python"]
    p = subprocess.run([sys.executable, *python[1:]], cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    (profile,) = [w for w in cmds if w[:2] == ["atfr", "profile"]]
    code, _, err = run_cli(capsys, *profile[1:], "--quiet")
    assert code == 0, err
    yield tmp_path, cmds
    sys.modules.pop("mynet", None)


def test_own_model_block_profiles_mynet(mynet_profiled):
    """The block's `python -c` line saves mynet's weights; its `atfr profile` line logs both videos
    (mynet's input_spec: 2 views), with mynet's SGS layer's bins."""
    from atfr_analysis import load_run

    folder, _ = mynet_profiled
    log = load_run(folder / "runs" / "mynet")
    assert set(log.path.map(lambda p: Path(p).stem)) == {"bikes", "carphone_pristine"}
    meta = json.loads((folder / "runs" / "mynet" / "run.json").read_text())
    assert meta["model"] == "mynet:build" and meta["views"] == 2  # mynet's input_spec
    assert set(log.status) == {"ok"} and log.groupby("video_id").size().tolist() == [2 * meta["crops"]] * 2
    assert log["bins.sgs"].between(1, 8).all()


def test_own_model_block_then_report_as_written(mynet_profiled, capsys):
    """The block's `# then:` report line, as written (it lacked --out: exit 2)."""
    _, cmds = mynet_profiled
    (report,) = [w for w in cmds if w[:2] == ["atfr", "report"]]
    code, _, err = run_cli(capsys, *report[1:])
    assert code == 0, err


# ----------------------------------------------------------------------------- the quick start's profile
@pytest.mark.slow
def test_profile_report_table(demo_classes, tmp_path, capsys):
    """README's quick start: `atfr profile` of a checkpoint (SlowFast 4x16 ATFR -> the shipped
    slow_tiny_atfr) on a list with class names from --labels, then `atfr report` and `atfr table`
    of the run, as written (their default outputs)."""
    from atfr_analysis import load_run

    (block,) = [code for code in shell_blocks((ROOT / "README.md").read_text()) if "atfr table" in code]
    profile, report, table = block_commands(block)
    assert [w[:2] for w in (profile, report, table)] == [["atfr", "profile"], ["atfr", "report"], ["atfr", "table"]]
    (tmp_path / "val.csv").write_text((demo_classes / "test.csv").read_text())
    (tmp_path / "labels.json").write_text((demo_classes / "labels.json").read_text())
    for d in ("test",):
        (tmp_path / d).symlink_to(demo_classes / d)
    argv = [str(SHIPPED / "slow_tiny_atfr.pyth"), "--model", "slow_tiny_atfr", "--data", "val.csv"]
    argv += ["--labels", "labels.json", "--out", "runs/sf", "--quiet"]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code, _, err = run_cli(capsys, "profile", *argv)
        assert code == 0, err
        log = load_run("runs/sf")
        assert sorted(log.drop_duplicates("video_id").video_id) == [0, 1, 2, 3] and set(log.status) == {"ok"}
        code, _, err = run_cli(capsys, *report[1:])  # as written
        assert code == 0, err
        assert (tmp_path / "reports" / "sf" / "report.md").is_file()
        code, stdout, err = run_cli(capsys, *table[1:])  # as written
        assert code == 0, err
        assert "slow_tiny_atfr" in stdout
    finally:
        os.chdir(cwd)


# ----------------------------------------------------------------------------- the multi-GPU profile
@pytest.mark.slow
def test_torchrun_profile(demo_classes, tmp_path):
    """README's torchrun profile (8 GPUs -> 2 gloo processes on the CPU, --workers 8 -> 1): the list's
    relative paths under --data-root, class names from --labels; each rank writes its shard and the
    run holds every video once."""
    from atfr_analysis import load_run

    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "val.csv").write_text((demo_classes / "test.csv").read_text())  # test/<class>/<clip>.mp4 lines
    (lists / "labels.json").write_text((demo_classes / "labels.json").read_text())
    out = tmp_path / "runs" / "sf"
    argv = [
        _torchrun(),
        "--nproc_per_node",
        "2",
        "-m",
        "atfr_cli.main",
        "profile",
        str(SHIPPED / "slow_tiny_atfr.pyth"),
        "--model",
        "slow_tiny_atfr",
        "--data",
        str(lists / "val.csv"),
        "--data-root",
        str(demo_classes),
        "--labels",
        str(lists / "labels.json"),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--workers",
        "1",
    ]
    p = subprocess.run(argv, env=_env(_free_port()), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    log = load_run(out)
    assert sorted(log.drop_duplicates("video_id").video_id) == [0, 1, 2, 3]
    assert set(log.status) == {"ok"}
    assert all(str(demo_classes) in path for path in log.path)
    assert sorted(set(log.class_name)) == sorted(json.loads((lists / "labels.json").read_text()))
    parts = {f.name.split("-")[1] for f in out.glob("videos-*.parquet")}
    assert parts == {"000of002", "001of002"}


# ----------------------------------------------------------------------------- training
def _train_options(d: Path, **values) -> list[str]:
    """The options of README's training commands, their values shrunk."""
    v = dict(batch_size="2", workers="1", epochs="2") | values
    return [
        "--data",
        str(d / "train.csv"),
        "--labels",
        str(d / "labels.json"),
        "--init-from",
        str(SHIPPED / "slow_tiny_atfr.pyth"),  # SLOW_8x8_R50.pkl: the shipped model (calibrated with SGS)
        "--batch-size",
        v["batch_size"],
        "--lr",
        "0.01",
        "--epochs",
        v["epochs"],
        "--warmup-epochs",
        "1",
        "--clip-grad",
        "10",
        "--freeze-bn",
        "--precision",
        "bf16",
        "--workers",
        v["workers"],
        "--threads",
        "1",
        "--quiet",
    ]


@pytest.mark.slow
def test_train_one_gpu(demo_classes, tmp_path, capsys):
    """README's one-GPU fine-tuning (slow_8x8_r50_atfr from a Caffe2 baseline -> slow_tiny_atfr from
    the shipped checkpoint, 10 epochs -> 2): validation only every --val-every 2 epochs, a state every
    --checkpoint-every step, bf16 autocast, frozen BN; the validation run opens with `atfr report`."""
    out = tmp_path / "runs" / "slow_atfr"
    code, stdout, err = run_cli(
        capsys,
        "train",
        "slow_tiny_atfr",
        *_train_options(demo_classes),
        "--val",
        demo_classes / "test.csv",
        "--checkpoint-every",
        "1",
        "--val-every",
        "2",
        "--out",
        out,
    )
    assert code == 0, err
    rec = _record(out / "model.pyth")
    assert rec["steps"] == 4 and rec["train"]["precision"] == "bf16" and rec["train"]["freeze_bn"] is True
    assert sorted(p.name for p in (out / "val").iterdir() if p.is_dir()) == ["epoch_002"]  # not after epoch 1
    assert len(list((out / "checkpoints").glob("*.pyth"))) == 2  # --keep-last 2 of the per-step states
    assert rec["val_videos"] == 4 and "val top-1" in stdout
    code, _, err = run_cli(capsys, "report", out / "val" / "epoch_002", "--out", tmp_path / "rep")
    assert code == 0, err
    assert (tmp_path / "rep" / "report.md").is_file()


def _torchrun_train(argv_launcher: list[str], d: Path, out: Path, *options: str) -> dict:
    argv = [_torchrun(), *argv_launcher, "-m", "atfr_cli.main", "train", "slow_tiny_atfr", *options, "--out", str(out)]
    p = subprocess.run(argv, env=_env(_free_port()), capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    return _record(out / "model.pyth")


@pytest.mark.slow
def test_torchrun_train(demo_classes, tmp_path):
    """README's eight-GPU command on 2 gloo processes: the global batch split over them."""
    out = tmp_path / "runs" / "slow_atfr"
    options = _train_options(demo_classes, batch_size="4", epochs="1")
    rec = _torchrun_train(["--nproc_per_node", "2"], demo_classes, out, *options)
    assert rec["processes"] == 2 and rec["global_batch"] == 4 and rec["steps"] == 1
    assert rec["videos_trained"] == 4 and rec["train"]["precision"] == "bf16"


@pytest.mark.slow
def test_torchrun_train_several_machines(demo_classes, tmp_path):
    """README's several-machines command as one machine of one (--nnodes 4 -> 1, node 0), the c10d
    rendezvous at a local endpoint; `...` is the options of the commands before it."""
    out = tmp_path / "runs" / "slow_atfr"
    launcher = [
        "--nnodes",
        "1",
        "--node_rank",
        "0",
        "--nproc_per_node",
        "2",
        "--rdzv_backend",
        "c10d",
        "--rdzv_endpoint",
        f"127.0.0.1:{_free_port()}",
    ]
    rec = _torchrun_train(launcher, demo_classes, out, *_train_options(demo_classes, batch_size="4", epochs="1"))
    assert rec["processes"] == 2 and rec["global_batch"] == 4 and rec["steps"] == 1
