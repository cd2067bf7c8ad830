"""Export a version or a split to the trainers people use: MACE, NequIP, DeePMD-kit, fairchem
(ASE LMDB), pacemaker, GAP and plain extxyz, losslessly and with the split's provenance.

>>> from pesdata.export import export                                  # doctest: +SKIP
>>> export(store, "mace-in", to="mace", split="cv", fold=0, e0="average")  # doctest: +SKIP

Each target lives in its own module and is found by name (:func:`get_exporter`); the names below
are imported on first use.
"""

from .._lazy import lazy_getattr
from ._base import E0_MODES, Exporter, e0s, exporters, get_exporter, labels

_LAZY = {"export": "pesdata.export._base", "gather": "pesdata.export._base"}

__all__ = ["E0_MODES", "Exporter", "e0s", "exporters", "get_exporter", "labels", *sorted(_LAZY)]

__getattr__ = lazy_getattr("pesdata.export", _LAZY, globals())
