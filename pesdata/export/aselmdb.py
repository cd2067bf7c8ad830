"""``--to aselmdb``: ASE LMDB databases (``ase-db-backends``), one ``<part>.aselmdb`` per part.

Each structure is one row: positions, numbers, cell and pbc; its stored labels in a
``SinglePointCalculator`` (``energy`` eV, ``forces`` eV/Å, ``stress`` Voigt eV/Å³, ASE sign —
only those present); ``key_value_pairs`` ``pesdata_id``, ``config_type``, ``group`` and
``method`` (searchable: ``db.select(config_type="bulk")``; a value ASE refuses as a key-value
pair, e.g. the string ``"1"``, stays in ``data`` only); and in ``data`` every ``info`` key
under ``__info__`` (``id`` included) and every extra per-atom array under ``__arrays__``, so
nothing is lost.

Sources checked:

- ``ase_db_backends/aselmdb.py`` (0.11.0, installed): ``LMDBDatabase`` (``ase.db.connect(path,
  type="aselmdb")`` in ``ase/db/core.py``) stores the ``AtomsRow`` (calculator results
  included), ``key_value_pairs`` and ``data``; one LMDB file (``subdir=False``) plus a
  ``-lock`` file, removed here after the writer closes; ``with db:`` writes in one
  transaction.
- fairchem ``src/fairchem/core/datasets/ase_datasets.py`` (``31c0963``): ``AseDBDataset`` opens
  ``*.aselmdb`` with ``ase.db.connect(address, readonly=True, use_lock_file=False)``, rebuilds
  the structure with ``row.toatoms()`` (labels in the calculator) and puts ``row.data`` into
  ``atoms.info``; ``AtomsToGraphs`` reads ``atoms.get_potential_energy/get_forces/
  get_stress`` — a missing label raises there, it is never read as 0.
- MACE ``mace/data/lmdb_dataset.py`` and ``mace/tools/fairchem_dataset/lmdb_dataset_tools.py``
  (``AseDBDataset.get_atoms``): key-value pairs and data go into ``atoms.info``, ``__arrays__``
  back into ``atoms.arrays``, ``__info__`` into ``atoms.info`` (the layout of MACE's own LMDB
  writer); calculator ``energy``/``forces``/``stress`` become ``REF_*`` keys only when present,
  and ``config_from_atoms`` gives a property absent from a frame weight 0.
"""

from __future__ import annotations

import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator

from ..errors import OutputError, ParameterError
from ._base import UNITS, Exporter, labels

__all__ = ["AselmdbExporter"]

_META = ("config_type", "group", "method")


def _key_value_pairs(atoms) -> dict:
    """The metadata ASE accepts as searchable key-value pairs (``ase.db.core.check``)."""
    from ase.db.core import check

    candidates = {"pesdata_id": str(atoms.info["id"])}
    candidates.update({k: atoms.info[k] for k in _META if atoms.info.get(k) is not None})
    out = {}
    for key, value in candidates.items():
        try:
            check({key: value})
        except ValueError:
            continue
        out[key] = value
    return out


def _data(atoms) -> dict:
    """``__info__`` (every info key) and ``__arrays__`` (per-atom arrays besides the geometry)."""
    data = {"__info__": {k: (np.asarray(v) if isinstance(v, (list, tuple)) else v)
                         for k, v in atoms.info.items()}}
    arrays = {k: np.asarray(v) for k, v in atoms.arrays.items()
              if k not in ("numbers", "positions")}
    if arrays:
        data["__arrays__"] = arrays
    return data


class AselmdbExporter(Exporter):
    """ASE LMDB (``<part>.aselmdb``), the format fairchem's and MACE's ``AseDBDataset`` read."""

    name = "aselmdb"

    def write(self, parts, out, e0):
        try:
            import ase.db
            import ase_db_backends.aselmdb  # noqa: F401 - the backend ase.db.connect loads
        except ImportError as exc:
            raise ParameterError("--to aselmdb needs the ASE LMDB backend: "
                                 "pip install ase-db-backends") from exc
        files, counts = {}, {}
        for part, frames in parts.items():
            name = f"{part}.aselmdb"
            path = out / name
            try:
                db = ase.db.connect(str(path), type="aselmdb", use_lock_file=False,
                                    append=False)
                with db:
                    for atoms in frames:
                        row = atoms.copy()
                        row.calc = SinglePointCalculator(row, **labels(atoms))
                        try:
                            db.write(row, key_value_pairs=_key_value_pairs(atoms),
                                     data=_data(atoms))
                        except (TypeError, ValueError) as exc:
                            raise OutputError(f"{name}: structure {atoms.info['id']} cannot "
                                              f"be written: {exc}") from exc
            except OSError as exc:
                raise OutputError(f"cannot write {path}: {exc}") from exc
            lock = out / f"{name}-lock"
            if lock.exists():
                lock.unlink()
            files[part], counts[part] = [name], len(frames)
        return {"files": files, "counts": counts,
                "key_mapping": {"energy": "calculator energy", "forces": "calculator forces",
                                "stress": "calculator stress",
                                "id": "key_value_pairs pesdata_id, data __info__ id",
                                "info": "data __info__", "arrays": "data __arrays__"},
                "units": dict(UNITS),
                "missing_labels": "absent from the row's calculator: MACE's LMDB reader gives "
                                  "it weight 0, fairchem's AtomsToGraphs raises rather than "
                                  "read 0",
                "notes": ["read with ase.db.connect(path) (ase-db-backends installed), "
                          "fairchem AseDBDataset(config={'src': path}) or MACE "
                          "--train_file=OUT/train.aselmdb (MACE then needs --atomic_numbers "
                          "and --E0s given: it does not scan LMDB files for them)"]}
