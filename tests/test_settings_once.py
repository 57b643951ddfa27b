"""Each setting declared once (issue 31): a command derived from its config has as options exactly
the config fields that declare one (``atfr_analysis.settings.option``) plus the few options of its
own (where to write, what to print), never a field declared twice. Commands still spelled out in
``cli/`` (flops, views, explain, report, export, demo) are not derived yet."""

from __future__ import annotations

import dataclasses

import pytest
import typer
import typer.main
from test_cli_options import cli_options

from atfr_analysis.bench.config import BenchConfig
from atfr_analysis.profile.config import ProfileConfig
from atfr_analysis.settings import option, options_of
from atfr_analysis.train.config import TrainConfig
from atfr_cli.derive import config_command, config_values

#: command -> (its config, the options the command declares itself)
DERIVED = {
    "bench": (BenchConfig, {"--suite", "--smoke", "--json", "--out", "--report", "--from-json"}),
    "train": (TrainConfig, {"--out", "--frames"}),
    "profile": (ProfileConfig, set()),
}


def _flags(cls) -> set[str]:
    return {f for _, o in options_of(cls) for spelled in o.flags for f in spelled.split("/")}


@pytest.mark.parametrize("command", sorted(DERIVED))
def test_a_derived_commands_options_are_its_configs_and_its_own(command):
    cls, own = DERIVED[command]
    shown = cli_options()[command]
    assert shown == _flags(cls) | own, f"{command}: {sorted(shown ^ (_flags(cls) | own))}"
    assert not _flags(cls) & own


def test_a_field_the_command_declares_again_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Cfg:
        lr: float = option(0.1, "--lr", help="learning rate")

    app = typer.Typer()

    with pytest.raises(TypeError, match="lr declared by the command and by Cfg"):

        @config_command(app, "x", Cfg)
        def x(cfg: dict, lr: float = typer.Option(0.2, "--lr")) -> None:
            pass


def test_a_derived_command_passes_the_parsed_config(capsys):
    @dataclasses.dataclass(frozen=True)
    class Cfg:
        workers: tuple[int, ...] = option(
            (0, 1), "--workers", help="counts", cli_type=str, parse=lambda s: tuple(map(int, s.split(","))), shown="0,1"
        )
        quiet: bool = option(False, "--quiet", help="no progress")
        internal: int = 3  # no option

    seen = {}
    app = typer.Typer()

    @config_command(app, "run", Cfg)
    def run(cfg: dict, out: str = typer.Option("x", "--out")) -> None:
        seen.update(cfg=Cfg(**cfg), out=out)

    @app.command("other")
    def other() -> None:  # a second command keeps "run" a subcommand
        pass

    typer.main.get_command(app)(["run", "--workers", "2,3", "--out", "y"], standalone_mode=False)
    assert seen == {"cfg": Cfg(workers=(2, 3)), "out": "y"}
    assert config_values(Cfg, {"workers": "0,1", "quiet": True}) == {"workers": (0, 1), "quiet": True}


def test_the_profile_command_line_in_run_json_spells_the_declared_flags():
    """run.json's equivalent command is written from the same declarations as the parser reads."""
    cfg = ProfileConfig(
        "c.pyth", "slow_tiny", "val.csv", "runs/x", cuda_graphs=False, class_subset="0,2", views=2, skip_missing=True
    )
    cmd = cfg.command_line()
    assert cmd[:9] == ["atfr", "profile", "c.pyth", "--model", "slow_tiny", "--data", "val.csv", "--out", "runs/x"]
    assert {"--no-cuda-graphs", "--skip-missing"} <= set(cmd) and cmd[cmd.index("--views") + 1] == "2"
    assert cmd[cmd.index("--class-subset") + 1] == "0,2"
    assert set(w for w in cmd if w.startswith("--")) <= cli_options()["profile"]
