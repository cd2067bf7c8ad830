"""aenet's XSF convention: ASE's XSF reader with aenet's units.

aenet writes training structures as XSF files with the total energy in a comment line
(``# total energy = -19959.48 eV``) and forces **already in eV/Å**. The XSF standard, and so
ASE's reader, takes forces in Hartree/Å and multiplies them by ``ase.units.Hartree``: read with
plain ASE, aenet forces come out 27.2× too large. This reader undoes that factor and attaches
the energy from the comment.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io.formats import open_with_compression
from ase.units import Hartree

__all__ = ["is_aenet_xsf", "read_aenet_xsf"]

_ENERGY = re.compile(r"#\s*total\s+energy\s*=\s*([-+0-9.eEdD]+)\s*(eV)?", re.IGNORECASE)


def is_aenet_xsf(path: Path) -> bool:
    """True when the first line of an ``.xsf`` file is aenet's ``# total energy = ...`` comment."""
    with open_with_compression(str(path), "rb") as fh:
        first = fh.readline(4096).decode("utf-8", errors="replace")
    return bool(_ENERGY.match(first.strip()))


def read_aenet_xsf(path: Path) -> Iterator[Atoms]:
    """Yield the single structure of an aenet XSF file with energy (eV) and forces (eV/Å)."""
    with open_with_compression(str(path), "rb") as fh:
        match = _ENERGY.match(fh.readline(4096).decode("utf-8", errors="replace").strip())
    atoms = ase.io.read(path, format="xsf")
    results = {}
    if match is not None:
        results["energy"] = float(match.group(1).replace("d", "e").replace("D", "e"))
    if atoms.calc is not None and "forces" in atoms.calc.results:
        results["forces"] = np.asarray(atoms.calc.results["forces"]) / Hartree
    atoms.calc = SinglePointCalculator(atoms, **results) if results else None
    yield atoms
