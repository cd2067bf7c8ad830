"""``--to pacemaker``: gzip-compressed pandas pickles for pacemaker (python-ace), one per part.

``OUT/<part>.pckl.gzip`` holds one row per structure with the columns pacemaker reads —
``ase_atoms`` (positions, cell, pbc; info and extra per-atom arrays kept, no calculator),
``energy`` (eV), ``forces`` ((n, 3) eV/Å) and ``energy_corrected`` (``energy - Σ E0``) — and,
for provenance, ``id``, ``config_type``, ``group``, ``method`` and ``stress`` (Voigt eV/Å³,
ASE sign; None where missing; pacemaker does not fit stress). Set ``data: {filename:
OUT/train.pckl.gzip, test_filename: OUT/test.pckl.gzip}`` in ``input.yaml``.

Sources checked (ICAMS/python-ace ``d1c213a``):

- ``docs/pacemaker/quickstart.md``: the DataFrame columns ``ase_atoms``, ``energy``,
  ``forces`` ([NumberOfAtoms, 3]), ``energy_corrected`` ("this is the energy that will be used
  for fitting"), saved with ``df.to_pickle(..., compression='gzip', protocol=4)``.
- ``src/pyace/preparedata.py`` ``ACEDataset.process_dataset``: ``ase_atoms``, ``energy`` or
  ``energy_corrected`` and ``forces`` are required, forces of shape (nat, 3), and NaN is
  refused in ``energy_corrected`` and ``forces`` — so a missing label cannot be a NaN.
- ``apply_weights``: when both ``w_energy`` and ``w_forces`` (per-atom array) columns exist
  and ``data: ignore_weights`` is not set, they are used as given (no other weighting
  policy); ``normalize_energy_forces_weights`` then rescales each to sum 1. Train and test
  frames are concatenated before weighting, so every part must carry the same columns.
- ``UniformWeightingPolicy``: ``w_energy = 1/N``, ``w_forces = w_energy`` per atom.

Missing labels: a frame without energy is refused (``energy_corrected`` must be a number and
feeds pacemaker's energy statistics). A frame without forces is kept with zero placeholder
forces and ``w_forces = 0`` on its atoms; then every part gets uniform ``w_energy``/``w_forces``
columns (as ``UniformWeightingPolicy``), which replace pacemaker's weighting policy — do not
set ``ignore_weights: True``, which would fit those zeros. Without such frames no weight
columns are written and pacemaker's own weighting applies.
"""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from ._base import UNITS, Exporter, labels

__all__ = ["PacemakerExporter"]

_META = ("config_type", "group", "method")


class PacemakerExporter(Exporter):
    """pandas DataFrame pickles (``<part>.pckl.gzip``) for ``pacemaker input.yaml``."""

    name = "pacemaker"

    def write(self, parts, out, e0):
        try:
            import pandas as pd
        except ImportError as exc:
            raise ParameterError("--to pacemaker needs pandas: pip install pandas") from exc
        refused, kept = [], {}
        for part, frames in parts.items():
            kept[part] = []
            for atoms in frames:
                lab = labels(atoms)
                if "energy" not in lab:
                    refused.append({"id": str(atoms.info["id"]),
                                    "reason": "no energy: pacemaker fits energy_corrected and "
                                              "cannot weight a structure's energy out"})
                    continue
                kept[part].append((atoms, lab))
        no_forces = [str(a.info["id"]) for rows in kept.values() for a, lab in rows
                     if "forces" not in lab]
        weighted = bool(no_forces)
        files, counts = {}, {}
        notes = [f"pickled with pandas {pd.__version__} (protocol 4); read it with "
                 "pandas.read_pickle(path, compression='gzip')"]
        for part, rows in kept.items():
            records = []
            for atoms, lab in rows:
                n = len(atoms)
                plain = atoms.copy()
                plain.calc = None
                energy = lab["energy"]
                reference = sum(e0[s] for s in atoms.get_chemical_symbols()) if e0 else 0.0
                rec = {"ase_atoms": plain, "energy": energy,
                       "forces": lab.get("forces", np.zeros((n, 3))),
                       "energy_corrected": energy - reference,
                       "id": str(atoms.info["id"])}
                rec.update({m: atoms.info.get(m) for m in _META})
                rec["stress"] = lab.get("stress")
                if weighted:
                    rec["w_energy"] = 1.0 / len(rows)
                    rec["w_forces"] = (np.full(n, 1.0 / len(rows)) if "forces" in lab
                                       else np.zeros(n))
                records.append(rec)
            columns = ["ase_atoms", "energy", "forces", "energy_corrected", "id", *_META,
                       "stress"] + (["w_energy", "w_forces"] if weighted else [])
            # object columns: a missing config_type/group/method/stress stays None (pandas 3
            # would otherwise infer a string dtype and turn None into NaN)
            df = pd.DataFrame({c: pd.Series([r[c] for r in records], dtype=object)
                               if c in (*_META, "id", "stress") else [r[c] for r in records]
                               for c in columns})
            name = f"{part}.pckl.gzip"
            df.to_pickle(out / name, compression="gzip", protocol=4)
            files[part], counts[part] = [name], len(records)
            if weighted and rows and not any("forces" in lab for _, lab in rows):
                notes.append(f"part {part!r} has no forces at all: its w_forces sum to 0, "
                             "which pacemaker cannot normalise")
        if e0:
            notes.append("energy_corrected = energy - sum of the E0s of pesdata-export.json")
        else:
            notes.append("--e0 none: energy_corrected = energy (total energy); pacemaker fits "
                         "energy_corrected, so give data::reference_energy in input.yaml or "
                         "export with --e0 isolated/average")
        if weighted:
            notes.append("w_energy/w_forces columns written (uniform, w_forces = 0 on the "
                         f"atoms of frames without forces: {no_forces}); they replace "
                         "pacemaker's weighting policy; never set data::ignore_weights: True")
        return {"files": files, "counts": counts,
                "key_mapping": {"energy": "energy (energy_corrected = energy - ΣE0)",
                                "forces": "forces", "stress": "stress (not fitted)",
                                "structure": "ase_atoms", "id": "id"},
                "units": dict(UNITS),
                "missing_labels": "frames without energy are refused; frames without forces "
                                  "get zero placeholder forces with w_forces = 0 (uniform "
                                  "w_energy/w_forces columns in every part)",
                "refused": refused, "notes": notes}
