"""Real data with a real stress for the export tests: the mlearn Si test set."""

from __future__ import annotations

import ase.io
import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from .conftest import DATA


def si_with_stress() -> list[Atoms]:
    """The 25 mlearn Si test frames with ``virial_stress_vasp_kB`` turned into an ASE stress:
    VASP's xx yy zz xy yz zx in kbar, positive = compressive, → Voigt eV/Å³, positive =
    tensile (the conversion of ``ase.io.vasp``)."""
    frames = ase.io.read(DATA / "mlearn" / "Si_test.extxyz", ":")
    for a in frames:
        kb = np.asarray(a.info.pop("virial_stress_vasp_kB"), dtype=float)
        stress = -kb[[0, 1, 2, 4, 5, 3]] * 0.1 * units.GPa
        a.calc = SinglePointCalculator(a, energy=a.get_potential_energy(),
                                       forces=a.get_forces(), stress=stress)
    return frames
