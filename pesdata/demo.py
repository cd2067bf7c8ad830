"""Make the small, real data set that ``make demo`` curates (``python -m pesdata.demo DIR``).

Everything is computed here with ASE's EMT calculator for copper, so the demo needs no
downloaded data:

* ``cu_md.extxyz`` — 24 snapshots of a 108-atom Cu cell from Langevin MD at 300 K (labelled
  with EMT energy, forces and stress) plus 2 rattled cells without labels (awaiting a
  calculation);
* ``cu_more.extxyz`` — 12 new cells (strained, with a vacancy, a (111) slab), 5 exact
  duplicates of MD snapshots, 1 MD snapshot with an energy 0.5 eV (4.6 meV/atom) higher (a
  label conflict)
  and the 2 formerly unlabelled cells, now labelled (relabelled);
* ``cu_broken.extxyz`` — 4 good cells, 1 with NaN forces and 1 with two overlapping atoms;
* ``cu_candidates.extxyz`` — 14 unlabelled 32-atom candidates for ``pesdata select``: 6 cells
  rattled as at 300 K (familiar) and 8 snapshots of Langevin MD at 1200 K (novel).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

__all__ = ["make_demo_data"]


def _label(atoms: Atoms, shift: float = 0.0) -> Atoms:
    """A copy of ``atoms`` with EMT labels frozen into a SinglePointCalculator."""
    atoms = atoms.copy()
    atoms.calc = EMT()
    results = {
        "energy": atoms.get_potential_energy() + shift,
        "forces": atoms.get_forces(),
    }
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def make_demo_data(directory: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write the three demo files into ``directory``; return their paths by short name."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    cell = bulk("Cu", "fcc", a=3.61, cubic=True) * (3, 3, 3)
    cell.calc = EMT()
    with warnings.catch_warnings():  # renamed thermalize_momenta in ASE 3.29; keep both working
        warnings.simplefilter("ignore", DeprecationWarning)
        MaxwellBoltzmannDistribution(cell, temperature_K=300, rng=rng)
    dyn = Langevin(cell, 2 * units.fs, temperature_K=300, friction=0.02, rng=rng, fixcm=False)
    md = []
    for _ in range(24):
        dyn.run(10)
        snap = _label(cell)
        del snap.arrays["momenta"]
        md.append(snap)
    pending = []
    for _ in range(2):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        a.rattle(0.08, seed=int(rng.integers(1 << 30)))
        pending.append(a)
    ase.io.write(out / "cu_md.extxyz", md + pending, format="extxyz")

    new = []
    for strain in (-0.03, -0.015, 0.015, 0.03):
        a = bulk("Cu", "fcc", a=3.61 * (1 + strain), cubic=True) * (2, 2, 2)
        a.rattle(0.03, seed=int(rng.integers(1 << 30)))
        new.append(_label(a))
    for _ in range(4):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (3, 3, 3)
        del a[int(rng.integers(len(a)))]
        a.rattle(0.05, seed=int(rng.integers(1 << 30)))
        new.append(_label(a))
    for _ in range(4):
        slab = fcc111("Cu", size=(3, 3, 4), vacuum=6.0, periodic=True)
        slab.rattle(0.04, seed=int(rng.integers(1 << 30)))
        slab.info.pop("adsorbate_info", None)
        new.append(_label(slab))
    duplicates = [md[i] for i in (1, 5, 9, 13, 17)]
    conflict = _label(md[20], shift=0.5)
    relabelled = [_label(a) for a in pending]
    ase.io.write(
        out / "cu_more.extxyz", new + duplicates + [conflict] + relabelled, format="extxyz"
    )

    good = []
    for _ in range(4):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        a.rattle(0.06, seed=int(rng.integers(1 << 30)))
        good.append(_label(a))
    nan_forces = good[0].copy()
    forces = good[0].get_forces().copy()
    forces[3, 1] = np.nan
    nan_forces.calc = SinglePointCalculator(
        nan_forces, energy=good[0].get_potential_energy(), forces=forces
    )
    overlap = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    overlap.positions[1] = overlap.positions[0] + [0.3, 0.0, 0.0]
    overlap = _label(overlap)
    ase.io.write(out / "cu_broken.extxyz", good + [nan_forces, overlap], format="extxyz")

    familiar = []
    for _ in range(6):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        a.rattle(0.06, seed=int(rng.integers(1 << 30)))
        a.info["config_type"] = "rattled-300K"
        familiar.append(a)
    hot = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    hot.calc = EMT()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        MaxwellBoltzmannDistribution(hot, temperature_K=1200, rng=rng)
    dyn = Langevin(hot, 2 * units.fs, temperature_K=1200, friction=0.05, rng=rng, fixcm=False)
    hot_frames = []
    for _ in range(8):
        dyn.run(25)
        a = Atoms(hot.numbers, hot.positions, cell=hot.cell, pbc=True)
        a.info["config_type"] = "md-1200K"
        hot_frames.append(a)
    ase.io.write(out / "cu_candidates.extxyz", familiar + hot_frames, format="extxyz")
    names = ("cu_md", "cu_more", "cu_broken", "cu_candidates")
    return {name: out / f"{name}.extxyz" for name in names}


if __name__ == "__main__":  # pragma: no cover - used by `make demo`
    paths = make_demo_data(sys.argv[1] if len(sys.argv) > 1 else "demo-out")
    for path in paths.values():
        print(f"wrote {path} ({len(ase.io.read(path, ':'))} frames)")
