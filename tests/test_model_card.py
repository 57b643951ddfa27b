"""The model card's training commands run on any machine (paths relative to the folder they run in,
after the command that rebuilds the train split), and docs/training.md's reference recipe is the one the
shipped checkpoints' records hold (the generated block of ``shipped.readme_recipe``)."""

import re
import shlex
from pathlib import Path

from atfr_analysis.data.synthetic import SyntheticConfig, folder_name
from atfr_analysis.shipped import (
    ATFR,
    BASELINE,
    CHECKPOINT_DIR,
    DATA_ROOT,
    README_RECIPE_BEGIN,
    README_RECIPE_END,
    REBUILD_COMMAND,
    STAGE1,
    TRAINING_DATA,
    readme_recipe,
    training_command,
)

ROOT = Path(__file__).resolve().parents[1]
_ABSOLUTE = r"(?:^|[\s,`\"'(=])(?:~/|/[A-Za-z]|[A-Za-z]:\\)"


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_card_commands_name_no_folder_of_the_machine_they_ran_on():
    card = (CHECKPOINT_DIR / "MODEL_CARD.md").read_text()
    hits = [line[:120] for line in card.splitlines() if re.search(_ABSOLUTE, line)]
    assert not hits, hits
    data = f"{DATA_ROOT}/{folder_name(SyntheticConfig(**TRAINING_DATA))}/"
    cmds = {n: shlex.split(training_command(n)) for n in (STAGE1, BASELINE, ATFR)}
    for name, args in cmds.items():
        assert f"`{shlex.join(args)}`" in card, name  # the card quotes each command as rendered here
        assert _option(args, "--data") == data + "train.csv" and _option(args, "--labels") == data + "labels.json"
        assert _option(args, "--out") == f"{name}.pyth"
    for name in (BASELINE, ATFR):  # stage 2 reads what stage 1 wrote, in the same folder
        assert _option(cmds[name], "--init-from") == _option(cmds[STAGE1], "--out")
    assert REBUILD_COMMAND in card


def test_the_rebuild_command_writes_the_folder_the_commands_read(tmp_path, monkeypatch):
    """REBUILD_COMMAND (its Python, make_dataset faked) in an empty folder: the lists every command
    names exist there, relative to it."""
    from test_demo import _fake_make_dataset

    import atfr_analysis.data.synthetic as synthetic

    monkeypatch.setattr(synthetic, "make_dataset", _fake_make_dataset)
    monkeypatch.chdir(tmp_path)
    python, flag, code = shlex.split(REBUILD_COMMAND)
    assert (python, flag) == ("python", "-c")
    exec(code, {})
    for name in (STAGE1, BASELINE, ATFR):
        args = shlex.split(training_command(name))
        for opt in ("--data", "--labels"):
            assert (tmp_path / _option(args, opt)).is_file(), (name, opt)


def test_readme_recipe_is_the_generated_one():
    readme = (ROOT / "docs" / "training.md").read_text()
    assert README_RECIPE_BEGIN in readme and README_RECIPE_END in readme, "docs/training.md lacks the generated recipe"
    start = readme.index(README_RECIPE_BEGIN)
    block = readme[start : readme.index(README_RECIPE_END) + len(README_RECIPE_END)] + "\n"
    assert block == readme_recipe()
    quoted = re.search(r"with `([^`]*)`", block.replace("\n", " ")).group(1).split()
    card_cmd = shlex.split(training_command(ATFR))
    paths = {i for i, a in enumerate(card_cmd) for i in (i, i + 1) if a in ("--data", "--labels", "--out")}
    options = [a for i, a in enumerate(card_cmd) if i >= 3 and i not in paths and a != "--quiet"]
    assert quoted == options  # the card's own options, in its order (its paths and --quiet aside)
    for opt in ("--lr", "--epochs", "--weight-decay", "--init-from"):
        assert _option(quoted, opt) == _option(card_cmd, opt), opt
