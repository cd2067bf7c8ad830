"""``--to deepmd``: DeePMD-kit ``deepmd/npy`` systems, one per atom sequence, periodicity and
label set.

Layout (per part ``P`` — ``all``, or ``train`` and ``test``)::

    OUT/P/<formula>-<labels>[-nopbc][-<k>]/type.raw        per atom, ints (stored order)
                                          /type_map.raw    one element per line (whole export)
                                          /nopbc           only for non-periodic frames
                                          /set.000/coord.npy   (nframes, 3N) float64, Å
                                                  /box.npy     (nframes, 9)  float64, Å
                                                  /energy.npy  (nframes,)    float64, eV
                                                  /force.npy   (nframes, 3N) float64, eV/Å
                                                  /virial.npy  (nframes, 9)  float64, eV
    OUT/P.frames.json      which pesdata id is which frame of which system (+ config_type...)

Sources checked (DeePMD-kit ``bc902da``, dpdata 1.1.0):

- ``doc/data/system.md``: a system is frames with the same atom types *in the same order*
  (``type.raw``, ints from 0, mapped by name through ``type_map.raw`` when the training
  ``type_map`` is set); ``nopbc`` marks a non-periodic system; ``box`` is required only if
  periodic, ``XX XY XZ YX YY YZ ZX ZY ZZ`` (rows are lattice vectors); ``virial`` is in eV, same
  order. The ``virial`` convention, ``virial = -stress * volume``, is dpdata's
  (``dpdata/plugins/ase.py``: ``virials = -atoms.get_volume() * stress``, and back
  ``stress = -virials / vol``), with ASE's stress sign (positive = tensile).
- ``deepmd/pt/loss/ener.py`` (``label_requirement``): ``energy``, ``force`` and ``virial`` are
  ``DataRequirementItem(..., must=False)``; ``deepmd/utils/data.py`` (``DeepmdData.add``): when
  ``set.*/key.npy`` is absent and ``must`` is False, ``find_key`` is 0, and the loss multiplies
  that term's prefactor by ``find_key`` (``pref_f = pref_f * find_force``). So a missing label
  is a system without that ``.npy``: DeePMD skips that loss term for those frames.
- ``deepmd/utils/data.py``: for a ``nopbc`` system ``box`` is set to None (a written
  ``box.npy`` is ignored), so the stored cell is kept there harmlessly.
- ``deepmd/common.py`` ``expand_sys_str`` (used by ``deepmd/utils/data_system.py``
  ``process_systems``): a directory given as ``systems`` is searched recursively for
  directories holding ``type.raw`` — so ``"systems": "OUT/train"`` finds every system.
- ``dpdata/formats/deepmd/comp.py``: the reader ``deepmd/npy`` loads exactly these files
  (``_load_set``, optional ``energy``/``force``/``virial`` per ``LabeledSystem.DTYPES``).

Atoms are never re-sorted (``type.raw`` follows the stored order, so two frames of one
composition with different atom orders are two systems), ``type_map.raw`` is the sorted element
list of the whole export (every system agrees), and all floats are float64 (dpdata's own dump
would write float32). The E0s are not subtracted: DeePMD fits its own per-type energy bias.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ase import Atoms

from ._base import Exporter, labels

__all__ = ["DeepmdExporter", "virial"]

_META = ("config_type", "group", "method")


def virial(stress: np.ndarray, volume: float) -> np.ndarray:
    """DeePMD's virial (eV, 9 values ``XX XY XZ YX YY YZ ZX ZY ZZ``) of an ASE Voigt stress.

    Parameters
    ----------
    stress : numpy.ndarray
        ``(6,)`` Voigt ``xx yy zz yz xz xy`` in eV/Å³, ASE sign (positive = tensile).
    volume : float
        Cell volume in Å³.

    Returns
    -------
    numpy.ndarray
        ``-stress * volume`` as a full symmetric 3×3 matrix, flattened row by row.
    """
    xx, yy, zz, yz, xz, xy = np.asarray(stress, dtype=float)
    m = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    return (-m * volume).ravel()


def _label_code(has: dict) -> str:
    code = "".join(c for c, k in (("e", "energy"), ("f", "forces"), ("v", "virial")) if has[k])
    return code or "none"


class DeepmdExporter(Exporter):
    """DeePMD-kit ``deepmd/npy``: one directory of systems per part plus ``<part>.frames.json``."""

    name = "deepmd"

    def write(self, parts, out, e0):
        type_map = sorted({s for frames in parts.values() for a in frames
                           for s in a.get_chemical_symbols()})
        index_of = {s: i for i, s in enumerate(type_map)}
        files, counts, refused = {}, {}, []
        partial_pbc, dropped_stress = [], []
        for part, frames in parts.items():
            systems: dict[tuple, dict] = {}
            for atoms in frames:
                fid = str(atoms.info["id"])
                lab = labels(atoms)
                pbc = [bool(p) for p in atoms.pbc]
                nopbc = not any(pbc)
                if not nopbc and not all(pbc):
                    if atoms.cell.volume <= 0:
                        refused.append({"id": fid, "reason": f"partly periodic (pbc={pbc}) with "
                                        "a cell of no volume: DeePMD has no partial "
                                        "periodicity"})
                        continue
                    partial_pbc.append(fid)
                if "stress" in lab and nopbc:
                    dropped_stress.append(fid)
                    del lab["stress"]
                if not lab:
                    refused.append({"id": fid, "reason": "no energy, forces or stress: "
                                    "nothing to train on"})
                    continue
                has = {"energy": "energy" in lab, "forces": "forces" in lab,
                       "virial": "stress" in lab}
                types = tuple(index_of[s] for s in atoms.get_chemical_symbols())
                key = (types, nopbc, has["energy"], has["forces"], has["virial"])
                sys = systems.setdefault(key, {"formula": atoms.get_chemical_formula(),
                                               "types": types, "nopbc": nopbc, "has": has,
                                               "frames": []})
                sys["frames"].append((atoms, lab))
            names: set[str] = set()
            index, written = [], []
            for sys in systems.values():
                base = f"{sys['formula']}-{_label_code(sys['has'])}" + (
                    "-nopbc" if sys["nopbc"] else "")
                name, k = base, 1
                while name in names:
                    k += 1
                    name = f"{base}-{k}"
                names.add(name)
                rel = f"{part}/{name}"
                _write_system(out / rel, sys, type_map)
                written.append(rel)
                for j, (atoms, _) in enumerate(sys["frames"]):
                    row = {"id": str(atoms.info["id"]), "system": rel, "frame": j}
                    row.update({m: atoms.info[m] for m in _META
                                if atoms.info.get(m) is not None})
                    index.append(row)
            index_name = f"{part}.frames.json"
            (out / index_name).write_text(json.dumps(
                {"type_map": type_map, "frames": index}, indent=1) + "\n", encoding="utf-8")
            files[part] = [*written, index_name]
            counts[part] = len(index)
        notes = [f"type_map {json.dumps(type_map)} (type_map.raw in every system); set "
                 "\"type_map\" in input.json to these elements",
                 "point training_data.systems (or validation_data.systems) at OUT/<part>: "
                 "DeePMD finds the systems below it",
                 "energies are total energies; the E0s of pesdata-export.json are not "
                 "subtracted (DeePMD fits a per-type energy bias)",
                 "ids, config_type, group and method are not part of deepmd/npy: "
                 "OUT/<part>.frames.json maps each id to its system and frame"]
        if partial_pbc:
            notes.append("partly periodic frames written as periodic (DeePMD has no partial "
                         f"periodicity; the cell's vacuum must isolate them): {partial_pbc}")
        if dropped_stress:
            notes.append(f"stress of non-periodic frames not written (no volume): "
                         f"{dropped_stress}")
        return {"files": files, "counts": counts,
                "key_mapping": {"energy": "set.000/energy.npy", "forces": "set.000/force.npy",
                                "stress": "set.000/virial.npy (virial = -stress * volume)",
                                "positions": "set.000/coord.npy", "cell": "set.000/box.npy",
                                "numbers": "type.raw + type_map.raw"},
                "units": {"energy": "eV", "forces": "eV/Å", "virial": "eV", "positions": "Å",
                          "cell": "Å"},
                "missing_labels": "frames missing a label go to their own systems without that "
                                  ".npy (energy/force/virial): DeePMD sets find_<label>=0 there "
                                  "and skips that loss term; frames with no label are refused",
                "refused": refused, "notes": notes}


def _write_system(path: Path, sys: dict, type_map: list[str]) -> None:
    """One ``deepmd/npy`` system: ``type.raw``, ``type_map.raw``, [``nopbc``], ``set.000``."""
    frames: list[tuple[Atoms, dict]] = sys["frames"]
    n = len(sys["types"])
    sets = path / "set.000"
    sets.mkdir(parents=True)
    (path / "type.raw").write_text("".join(f"{t}\n" for t in sys["types"]), encoding="utf-8")
    (path / "type_map.raw").write_text("".join(f"{s}\n" for s in type_map), encoding="utf-8")
    if sys["nopbc"]:
        (path / "nopbc").write_text("", encoding="utf-8")
    np.save(sets / "coord.npy", np.array([a.positions.reshape(3 * n) for a, _ in frames],
                                         dtype=np.float64))
    np.save(sets / "box.npy", np.array([a.cell.array.reshape(9) for a, _ in frames],
                                       dtype=np.float64))
    if sys["has"]["energy"]:
        np.save(sets / "energy.npy", np.array([lab["energy"] for _, lab in frames],
                                              dtype=np.float64))
    if sys["has"]["forces"]:
        np.save(sets / "force.npy", np.array([lab["forces"].reshape(3 * n) for _, lab in frames],
                                             dtype=np.float64))
    if sys["has"]["virial"]:
        np.save(sets / "virial.npy", np.array([virial(lab["stress"], a.cell.volume)
                                               for a, lab in frames], dtype=np.float64))
