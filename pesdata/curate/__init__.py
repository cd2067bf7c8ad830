"""Curation: validators, deduplication and conflicts, the curate run and its report."""

from ._curate import ENERGY_TOL, FORCE_TOL, curate
from ._report import CurateReport
from ._validators import (
    CellValidator,
    ElementValidator,
    EnergyOutlierValidator,
    FiniteValidator,
    ForceOutlierValidator,
    Issue,
    LabelValidator,
    MinDistanceValidator,
    ShapeValidator,
    default_validators,
)

__all__ = [
    "ENERGY_TOL",
    "FORCE_TOL",
    "CellValidator",
    "CurateReport",
    "ElementValidator",
    "EnergyOutlierValidator",
    "FiniteValidator",
    "ForceOutlierValidator",
    "Issue",
    "LabelValidator",
    "MinDistanceValidator",
    "ShapeValidator",
    "curate",
    "default_validators",
]
