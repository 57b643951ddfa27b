"""pytest plugin (entry point ``pytest11``): the ``flops_regression`` fixture.

Pin a model's FLOPs in a test, the way ``pytest-regressions`` pins data::

    def test_my_net_cost(flops_regression):
        flops_regression.check(my_net(), [(1, 3, 16, 112, 112)])

The first run writes the golden file (``<test module>/<test name>.json`` next to the test, as
``pytest-regressions`` names its files) and fails, saying so; later runs count the model again
(on the ``meta`` device, :func:`atfr_analysis.flops.golden.golden`) and fail with a table of what
moved (module, convention, signature, before, after); a golden file that is not one (bad JSON, a
field of the wrong type) fails the test naming the file and the field. ``pytest --force-regen``
rewrites the files that differ or are corrupt (those tests fail once, saying so); ``--regen-all``
rewrites them all and passes.
File handling, names and flags are ``pytest-regressions``' (``pip install 'atfr-analysis[test]'``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

__all__ = ["FlopsRegression", "flops_regression"]


class FlopsRegression:
    """What the fixture gives: ``check(model, input_shapes=None, ...)``."""

    def __init__(self, request: pytest.FixtureRequest):
        self.request = request

    def check(
        self,
        model,
        input_shapes: Sequence[Sequence[int]] | None = None,
        *,
        depth: int = 2,
        signatures: Iterable[Iterable[int]] | None = None,
        max_signatures: int = 64,
        basename: str | None = None,
        fullpath: str | Path | None = None,
        list_input: bool | None = None,
    ) -> dict:
        """Count ``model`` at ``input_shapes`` (default: its spec's test input) and compare with the
        golden file; returns the record counted now."""
        __tracebackhide__ = True
        from atfr_analysis.errors import InputError
        from atfr_analysis.flops.golden import (
            compare,
            dumps_golden,
            format_rows,
            golden,
            read_golden,
        )

        try:
            from pytest_regressions.common import perform_regression_check
        except ImportError as e:  # pragma: no cover - the test extra
            raise pytest.UsageError(
                "flops_regression needs pytest-regressions: pip install 'atfr-analysis[test]'"
            ) from e
        record = golden(
            model,
            input_shapes,
            depth=depth,
            signatures=signatures,
            max_signatures=max_signatures,
            list_input=list_input,
        )

        def dump(path: Path) -> None:
            Path(path).write_text(dumps_golden(record))

        def check_fn(obtained: Path, expected: Path) -> None:
            __tracebackhide__ = True
            try:
                before = read_golden(expected)
            except InputError as e:  # a corrupt file fails the test (AssertionError: --force-regen rewrites it)
                raise AssertionError(f"{e}\nrewrite it with: pytest --force-regen") from None
            rows = compare(before, read_golden(obtained))
            if rows:
                raise AssertionError(f"FLOPs moved against {expected}:\n{format_rows(rows)}")

        config = self.request.config
        perform_regression_check(
            datadir=self.request.getfixturevalue("lazy_datadir"),
            original_datadir=self.request.getfixturevalue("original_datadir"),
            request=self.request,
            check_fn=check_fn,
            dump_fn=dump,
            extension=".json",
            basename=basename,
            fullpath=fullpath,
            force_regen=bool(_option(config, "force_regen")),
            with_test_class_names=bool(_option(config, "with_test_class_names")),
        )
        return record


def _option(config: Any, name: str):
    try:
        return config.getoption(name)
    except ValueError:  # pytest-regressions not loaded
        return False


@pytest.fixture
def flops_regression(request: pytest.FixtureRequest) -> FlopsRegression:
    """Pin a model's FLOPs in a golden file (see :mod:`atfr_analysis.testing.pytest_plugin`)."""
    return FlopsRegression(request)
