"""atfr-analysis: build, profile and report 3D CNNs with adaptive temporal feature resolution."""
import warnings as _warnings

# fvcore's import warns that torch.jit.script is deprecated; harmless here
_warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=DeprecationWarning)

__version__ = "0.1.0"

from atfr_analysis.models import build_model, list_models  # noqa: E402

__all__ = ["__version__", "build_model", "list_models"]
