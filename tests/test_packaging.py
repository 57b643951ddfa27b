"""The package's torch requirement is a range (``torch>=`` the lowest version shown to work), not a
pin that would replace the torch of anyone on another version; the README and CI install that
lowest version first (the CPU wheel)."""

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _torch_requirement() -> Requirement:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = [Requirement(d) for d in deps]
    (torch,) = [r for r in reqs if r.name == "torch"]
    return torch


def test_torch_is_a_range_from_the_version_the_readme_installs():
    req = _torch_requirement()
    specs = list(req.specifier)
    assert len(specs) == 1 and specs[0].operator == ">=", f"torch must be 'torch>=X', got {req}"
    lowest = specs[0].version
    for text in ((ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()):
        installs = re.findall(r"pip install torch==(\S+) && pip install -e", text)
        assert installs and set(installs) == {lowest}, installs
    assert Version("2.99") in req.specifier and Version(lowest) in req.specifier  # a newer torch is kept
    assert Version(Version(version("torch")).base_version) in req.specifier  # the torch the suite runs on
