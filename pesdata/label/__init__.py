"""Labelling queues: export selected frames, label them with any ASE calculator, import results.

A queue directory (:func:`write_queue`, written by ``pesdata select --out``) carries the
selected frames out; :func:`export_queue` writes them for a labelling code (extxyz, VASP
folders); :func:`label_queue` labels them in-process with an ASE calculator; and
:func:`import_results` brings the labels back into the store as one new version.
"""

from .calculators import CalculatorSpec, parse_calculator
from .export import export_queue
from .importer import GEOMETRY_TOL, ImportReport, geometry_deviation, import_results
from .queue import STATUSES, Queue, read_queue, strip_labels, write_queue
from .run import RunReport, label_queue

__all__ = [
    "GEOMETRY_TOL",
    "STATUSES",
    "CalculatorSpec",
    "ImportReport",
    "Queue",
    "RunReport",
    "export_queue",
    "geometry_deviation",
    "import_results",
    "label_queue",
    "parse_calculator",
    "read_queue",
    "strip_labels",
    "write_queue",
]
