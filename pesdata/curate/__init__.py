"""Curation: validators, deduplication and conflicts, the curate run and its report.

Where things are: the run (read → validate → deduplicate → one commit → report) in
``_curate.py``; the identity, duplicate and conflict rules in :mod:`pesdata.curate.dedup`; the
validators in ``_validators.py`` (with the torch-free neighbor search of the overlap check in
``_neighbors.py``); the report in ``_report.py``; the warnings about label-like keys that were
not mapped in ``_unmapped.py``.
"""

from . import dedup
from ._curate import curate, curate_new, validate_batch
from ._report import CurateReport
from ._unmapped import UnmappedLabels
from ._validators import (
    CellValidator,
    CoordinateValidator,
    ElementValidator,
    EnergyOutlierValidator,
    FiniteValidator,
    ForceOutlierValidator,
    Issue,
    LabelValidator,
    LabelValueValidator,
    MinDistanceValidator,
    ShapeValidator,
    default_validators,
)
from .dedup import ENERGY_TOL, FORCE_TOL

__all__ = [
    "ENERGY_TOL",
    "FORCE_TOL",
    "CellValidator",
    "CoordinateValidator",
    "CurateReport",
    "ElementValidator",
    "EnergyOutlierValidator",
    "FiniteValidator",
    "ForceOutlierValidator",
    "Issue",
    "LabelValidator",
    "LabelValueValidator",
    "MinDistanceValidator",
    "ShapeValidator",
    "UnmappedLabels",
    "curate",
    "curate_new",
    "dedup",
    "default_validators",
    "validate_batch",
]
