"""Testing helpers for users of the toolkit: the ``flops_regression`` pytest fixture
(:mod:`atfr_analysis.testing.pytest_plugin`, registered through the ``pytest11`` entry point)."""
