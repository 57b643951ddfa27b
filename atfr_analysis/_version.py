"""The package version (one place; ``atfr_analysis.__version__`` re-exports it)."""

__version__ = "0.1.0"
