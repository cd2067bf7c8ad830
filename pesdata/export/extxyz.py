"""``--to extxyz``: plain extended XYZ with ASE's own keys, losslessly.

``energy``, ``stress`` (3×3, eV/Å³, ASE sign) and the other info keys on the comment line,
``forces`` as a per-atom column, plus ``id``, ``config_type``, ``group`` and ``method``: what
``ase.io.read`` turns back into a calculator with the stored labels. Floats are written with
:mod:`pesdata.export._extxyz` (exact round trip, unlike ASE's 8-decimal positions). A missing
label is an absent key, which ASE reads as "not computed".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.stress import voigt_6_to_full_3x3_stress

from ._base import UNITS, Exporter, labels
from ._extxyz import write_frame

__all__ = ["ExtxyzExporter", "write_part"]

_META = ("id", "config_type", "group", "method")


def write_part(path: Path, frames: list[Atoms], energy_key: str, forces_key: str,
               stress_key: str, extra_info=None) -> int:
    """Write ``frames`` to ``path`` with the given label keys; returns the count.

    ``extra_info(atoms, labels) -> dict`` adds comment-line keys per frame (weights...).
    Per-atom arrays the frames carry besides ``numbers``/``positions`` are kept.
    """
    with open(path, "w", encoding="utf-8") as fh:
        for atoms in frames:
            lab = labels(atoms)
            info = {k: atoms.info[k] for k in _META if atoms.info.get(k) is not None}
            info.update({k: v for k, v in atoms.info.items()
                         if k not in info and k not in _META and _scalar(v)})
            if "energy" in lab:
                info[energy_key] = lab["energy"]
            if "stress" in lab:  # 9 values: ASE's reader refuses a 6-value stress/virial
                info[stress_key] = voigt_6_to_full_3x3_stress(lab["stress"]).ravel()
            if extra_info is not None:
                info.update(extra_info(atoms, lab))
            arrays = {k: v for k, v in atoms.arrays.items() if k not in ("numbers", "positions")}
            if "forces" in lab:
                arrays[forces_key] = lab["forces"]
            write_frame(fh, atoms.get_chemical_symbols(), atoms.positions, atoms.cell.array,
                        atoms.pbc, info, arrays)
    return len(frames)


def _scalar(v) -> bool:
    """Info values the comment line holds exactly: strings, bools, numbers, and numeric
    arrays (ASE writes those as quoted number lists and reads them back as arrays)."""
    if isinstance(v, (str, bool, int, float, np.integer, np.floating)):
        return True
    if isinstance(v, (list, tuple, np.ndarray)):
        a = np.asarray(v)
        return a.dtype.kind in "fiub" and 0 < a.size and a.ndim <= 2
    return False


class ExtxyzExporter(Exporter):
    """Plain extxyz, one file per part (``train.extxyz``, ``test.extxyz`` or ``all.extxyz``)."""

    name = "extxyz"

    def write(self, parts, out, e0):
        files, counts = {}, {}
        for part, frames in parts.items():
            name = f"{part}.extxyz"
            counts[part] = write_part(out / name, frames, "energy", "forces", "stress")
            files[part] = [name]
        return {"files": files, "counts": counts,
                "key_mapping": {"energy": "energy", "forces": "forces", "stress": "stress"},
                "units": dict(UNITS),
                "missing_labels": "the key is absent; ase.io.read gives no such property"}
