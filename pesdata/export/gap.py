"""``--to gap``: extended XYZ for ``gap_fit`` (libAtoms GAP/QUIP), one ``<part>.xyz`` per part.

What is written:

* ``energy`` (eV) on the comment line, ``forces`` (eV/Å) as a per-atom column, and
  ``virial`` = −σ·V (eV; 9 values, the 3×3 tensor; σ the stored stress in ASE's sign, V the
  cell volume) — no ``stress`` key, which ``gap_fit`` would read as well
  (``stress_parameter_name`` defaults to ``stress``);
* ``config_type``, with every single-atom non-periodic frame as ``config_type=isolated_atom``
  (its stored ``config_type`` kept as ``pesdata_config_type``), plus ``id``, ``group``,
  ``method`` and the frame's other scalar info keys; every float exact
  (:mod:`pesdata.export._extxyz`);
* a non-periodic frame without a cell gets a cubic ``Lattice`` of its extent + 20 Å (positions
  and ``pbc="F F F"`` unchanged), since ``gap_fit`` needs a ``Lattice`` on every frame;
* a missing label is an absent key: ``gap_fit`` counts and fits per frame only the energy,
  forces and virial that frame has.

Checked against libAtoms/GAP (``doc_src/gap_fit.rst``, ``gap_fit_module.F90``):

* the defaults are ``energy_parameter_name=energy``, ``force_parameter_name=force`` (hence
  ``force_parameter_name=forces`` in the command), ``virial_parameter_name=virial``,
  ``stress_parameter_name=stress``, ``config_type_parameter_name=config_type``;
* ``fit_n_from_xyz``: ``has_ener = get_value(params, energy_parameter_name, ...)``,
  ``has_force = assign_pointer(at, force_parameter_name, ...)``, ``has_virial = ...`` per frame
  — a frame contributes only what it has ("there is no restriction on having to include the
  same type of data for all configurations");
* the virial is "the regular stress multiplied by the volume" in eV, QUIP's sign being the
  opposite of VASP's: virial = −σ_ASE·V (QUIP issue 227: "virial = -stress x volume");
* "All structures ... need a periodic lattice unit cell (and defined by the Lattice key)";
* ``e0_from_xyz`` (``e0_method=isolated``, the default) takes a one-atom frame with no
  neighbour as its element's e0 and aborts on two of one element; ``e0={Si:-158.5:O:...}``
  on the command line replaces that scan (the docs' example uses ``config_type=isolated_atom``).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from ._base import Exporter, is_isolated_atom
from .extxyz import write_part

__all__ = ["GapExporter"]

ISOLATED = "isolated_atom"
PADDING = 20.0  # Å of vacuum around a non-periodic frame that has no cell


def _with_lattice(atoms: Atoms) -> Atoms:
    """``atoms`` itself, or for a non-periodic frame without a cell a copy with a box."""
    if any(atoms.pbc) or np.any(atoms.cell.array):
        return atoms
    box = atoms.copy()
    extent = np.ptp(atoms.positions, axis=0).max() if len(atoms) else 0.0
    box.cell = np.eye(3) * (extent + PADDING)
    box.calc = atoms.calc  # labels() reads calc.results: the labels stay the stored ones
    return box


def _extra(atoms: Atoms, lab: dict) -> dict:
    info: dict = {}
    if "stress" in lab:
        s = lab["stress"]
        sigma = np.array([[s[0], s[5], s[4]], [s[5], s[1], s[3]], [s[4], s[3], s[2]]])
        # replaces the 'virial' key write_part set to the stress: only the virial is written
        info["virial"] = -sigma * abs(np.linalg.det(atoms.cell.array))
    if is_isolated_atom(atoms):
        stored = atoms.info.get("config_type")
        if stored not in (None, ISOLATED):
            info["pesdata_config_type"] = stored
        info["config_type"] = ISOLATED
    return info


def gap_e0(e0: dict[str, float]) -> str:
    """``gap_fit``'s ``e0={Si:-158.5:O:-432.1}``, floats exactly."""
    return "{" + ":".join(f"{s}:{float(v)!r}" for s, v in sorted(e0.items())) + "}"


class GapExporter(Exporter):
    """GAP extxyz: ``energy``, ``forces``, ``virial`` (−σV), ``config_type=isolated_atom``."""

    name = "gap"

    def write(self, parts, out, e0):
        files, counts = {}, {}
        for part, frames in parts.items():
            name = f"{part}.xyz"
            counts[part] = write_part(out / name, [_with_lattice(a) for a in frames],
                                      "energy", "forces", "virial", extra_info=_extra)
            files[part] = [name]
        train = files.get("train", files.get("all"))[0]
        e0_arg = f"e0={gap_e0(e0)}" if e0 else "e0_method=isolated"
        command = (f"gap_fit at_file={train} energy_parameter_name=energy "
                   "force_parameter_name=forces virial_parameter_name=virial "
                   f"config_type_parameter_name=config_type {e0_arg} "
                   "default_sigma={0.008 0.04 0.05 0.0} "
                   "gap={distance_2b cutoff=5.0 covariance_type=ard_se delta=1.0 "
                   "theta_uniform=1.0 sparse_method=uniform add_species=T n_sparse=20} "
                   "gp_file=gap.xml")
        notes = [f"fit with: {command}"]
        notes.append("without e0=, gap_fit needs exactly one isolated_atom frame per element "
                     "in at_file (e0_method=isolated) or takes the mean energy per atom "
                     "(e0_method=average, sensible for one element only)")
        return {"files": files, "counts": counts,
                "key_mapping": {"energy": "energy", "forces": "forces", "stress": "virial"},
                "units": {"energy": "eV", "forces": "eV/Å",
                          "virial": "eV (3x3, -stress x volume, QUIP sign)", "positions": "Å"},
                "missing_labels": "the key is absent; gap_fit fits per frame only the energy, "
                                  "forces and virial it has",
                "notes": notes}
