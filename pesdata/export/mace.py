"""``--to mace``: extended XYZ with MACE's ``REF_*`` keys and per-frame property weights.

What is written (one ``<part>.xyz`` per part: ``train.xyz``, ``test.xyz`` or ``all.xyz``):

* ``REF_energy`` (eV) and ``REF_stress`` (the 3×3 tensor as 9 values, eV/Å³, ASE sign, as
  :func:`~pesdata.export.extxyz.write_part` writes it) on the comment line, ``REF_forces``
  (eV/Å) as a per-atom column; plain ``energy``, ``forces`` and ``stress`` are never written,
  so ASE ≥ 3.23 cannot turn them into a calculator and MACE never takes its legacy-key path;
* ``config_energy_weight``, ``config_forces_weight`` and ``config_stress_weight`` on every
  frame: 1.0 where the label is stored, 0.0 where it is missing — and a missing label's key is
  absent, never 0;
* ``id``, ``config_type``, ``group``, ``method`` and the frame's other scalar info keys;
  positions, cell and every float exactly (:mod:`pesdata.export._extxyz`);
* with ``--e0 isolated``, the single-atom non-periodic frames as ``config_type=IsolatedAtom``
  (their stored ``config_type`` kept as ``pesdata_config_type``), from which MACE takes its E0s;
  in the other modes (or without an energy) a one-atom frame stored as ``IsolatedAtom`` is
  written as ``isolated_atom`` (``pesdata_config_type=IsolatedAtom``), since MACE would take
  its energy — or 0 where it has none — as an E0 over ``--E0s``.

Checked against MACE's own source (mace-torch 0.3.16, ``mace/data/utils.py``,
``mace/tools/default_keys.py``, ``mace/tools/torch_tools.py``, ``mace/tools/scripts_utils.py``,
``mace/modules/utils.py``):

* ``DefaultKeys``: ``REF_energy``, ``REF_forces``, ``REF_stress`` are the defaults;
  ``load_from_xyz`` warns that the plain keys are unsafe since ASE 3.23 and, for them, reads
  the calculator (a failed read sets the label to None);
* ``config_from_atoms``: ``property_weights[name] = info.get(f"config_{name}_weight", 1.0)``
  for ``energy``, ``forces``, ``stress`` ... and 0.0 when the key is absent from
  ``info``/``arrays``;
* ``voigt_to_matrix`` takes 9 values as ``view(3, 3)`` (and 6 in ASE's Voigt order);
  ``compute_forces_virials`` gives ``stress = (dE/dε)/V``, ASE's sign;
* ``load_from_xyz(extract_atomic_energies=True)`` (training files only) takes a frame with one
  atom and ``config_type == "IsolatedAtom"`` as that element's E0 and drops it from training;
  otherwise ``--E0s`` must be ``average``, a ``{Z: E0}`` dict or a JSON file
  (``get_atomic_energies``): the manifest's ``notes`` give the dict and the command.
"""

from __future__ import annotations

from ase import Atoms
from ase.data import atomic_numbers

from ._base import UNITS, Exporter, is_isolated_atom, labels
from .extxyz import write_part

__all__ = ["MaceExporter", "isolated_mode"]

KEYS = {"energy": "REF_energy", "forces": "REF_forces", "stress": "REF_stress"}
ISOLATED = "IsolatedAtom"
RENAMED = "isolated_atom"  # a stored IsolatedAtom frame MACE must not read as an E0


def isolated_mode(parts: dict[str, list[Atoms]], e0: dict[str, float],
                  mode: str | None = None) -> bool:
    """Whether the E0s came from isolated-atom frames (``--e0 isolated``).

    ``mode`` is the ``--e0`` mode when the caller knows it; without it, the E0s are taken as
    isolated when every element has a single-atom non-periodic frame whose energy is exactly
    its E0 (what :func:`pesdata.export._base.e0s` returns in that mode; a least-squares
    average cannot match them all bit for bit).
    """
    if mode is not None:
        return mode == "isolated"
    if not e0:
        return False
    found = {}
    for frames in parts.values():
        for atoms in frames:
            energy = labels(atoms).get("energy")
            if is_isolated_atom(atoms) and energy is not None:
                found.setdefault(atoms.get_chemical_symbols()[0], set()).add(energy)
    return all(found.get(sym) == {value} for sym, value in e0.items())


def _weights(atoms: Atoms, lab: dict, isolated: bool) -> dict:
    info = {f"config_{name}_weight": 1.0 if name in lab else 0.0 for name in KEYS}
    stored = atoms.info.get("config_type")
    if isolated and is_isolated_atom(atoms) and "energy" in lab:
        kind = ISOLATED
    elif len(atoms) == 1 and stored == ISOLATED:
        # MACE would take this frame's energy (0 when it has none) as an E0
        kind = RENAMED
    else:
        return info
    info["config_type"] = kind
    if stored not in (None, kind):
        info["pesdata_config_type"] = stored
    return info


def e0_dict(e0: dict[str, float]) -> str:
    """MACE's ``--E0s`` value: ``{Z: E0, ...}`` by atomic number, floats exactly."""
    items = sorted((atomic_numbers[s], v) for s, v in e0.items())
    return "{" + ", ".join(f"{z}: {float(v)!r}" for z, v in items) + "}"


class MaceExporter(Exporter):
    """MACE extxyz: ``REF_*`` keys, per-frame weights 0 for missing labels, IsolatedAtom E0s."""

    name = "mace"

    def write(self, parts, out, e0):
        isolated = isolated_mode(parts, e0, getattr(self, "e0_mode", None))
        files, counts = {}, {}
        for part, frames in parts.items():
            name = f"{part}.xyz"
            counts[part] = write_part(out / name, frames, KEYS["energy"], KEYS["forces"],
                                      KEYS["stress"],
                                      extra_info=lambda a, lab: _weights(a, lab, isolated))
            files[part] = [name]
        return {"files": files, "counts": counts, "key_mapping": dict(KEYS),
                "units": {**UNITS, "stress": "eV/Å³ (the 3x3 tensor as 9 values, ASE sign)"},
                "missing_labels": "the REF_ key is absent and config_<label>_weight = 0 on "
                                  "that frame: MACE gives the label weight 0 (never a 0 target)",
                "notes": _notes(files, e0 or _fitted_e0(parts), isolated, fitted=not e0)}


def _fitted_e0(parts) -> dict[str, float]:
    """For ``--e0 none``: E0s fitted on the labelled training frames, to give MACE as a dict —
    MACE's own ``--E0s average`` turns a training frame without energy into NaN E0s."""
    from ..errors import ParameterError
    from ._base import e0s

    try:
        return e0s(parts.get("train", parts.get("all", [])), "average")
    except ParameterError:
        return {}


def _notes(files: dict[str, list[str]], e0: dict[str, float], isolated: bool,
           fitted: bool = False) -> list[str]:
    train = files.get("train", files.get("all", ["all.xyz"]))[0]
    command = (f"mace_run_train --name model --train_file {train} "
               + (f"--valid_file {files['validation'][0]} " if "validation" in files
                  else "--valid_fraction 0.1 ")
               + (f"--test_file {files['test'][0]} " if "test" in files else "")
               + "--energy_key REF_energy --forces_key REF_forces --stress_key REF_stress "
               + (f"--E0s '{e0_dict(e0)}'" if e0 else "--E0s <a dict Z: E0>")
               + " --r_max 5.0 --max_num_epochs 100 --device cpu")
    notes = [f"train with: {command}"]
    if e0:
        notes.append(f"E0s (eV, by atomic number) for --E0s: {e0_dict(e0)}"
                     + (" — a least-squares fit on the labelled training frames (--e0 none "
                        "records none in the manifest; MACE's own --E0s average would turn a "
                        "frame without energy into NaN E0s)" if fitted else ""))
    else:
        notes.append("no E0s could be fitted (too few labelled training compositions): give "
                     "--E0s yourself, or export with --e0 isolated")
    if isolated:
        notes.append("isolated-atom frames are written with config_type=IsolatedAtom: MACE "
                     "reads its E0s from those in the training file (and leaves them out of "
                     "training); --E0s gives the same values for elements they do not cover")
    else:
        notes.append("no frame is marked IsolatedAtom (--e0 is not isolated), so MACE takes "
                     "its E0s from --E0s only")
    notes.append("add --compute_stress True --stress_weight 1.0 to fit REF_stress")
    return notes
