"""Models trained on store versions (issue 4, in progress): the linear baseline and metrics."""

from .linear import LinearPotential
from .metrics import error_metrics

__all__ = ["LinearPotential", "error_metrics"]
