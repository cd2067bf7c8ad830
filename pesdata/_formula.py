"""Chemical formulas of frames: the table's ``formula`` column and reduced compositions.

Both are cached with :func:`functools.lru_cache` (a dataset holds few distinct ones):
:func:`chemical_formula` on the atomic numbers, :func:`reduced_formula` on the formula string.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from ase.formula import Formula
from ase.symbols import Symbols

__all__ = ["chemical_formula", "reduced_formula"]


def chemical_formula(numbers) -> str:
    """Hill formula of a structure's atomic numbers, as ``Atoms.get_chemical_formula()`` gives.

    Parameters
    ----------
    numbers : array of int, shape (n,)
        Atomic numbers.

    Returns
    -------
    str
        E.g. ``"CH2O"`` (carbon, hydrogen, then the others alphabetically; all alphabetically
        without carbon); ``""`` for no atoms.
    """
    return _hill(np.ascontiguousarray(numbers, dtype=np.int16).tobytes())


@lru_cache(maxsize=4096)
def _hill(numbers: bytes) -> str:
    """Hill formula of atomic numbers given as int16 bytes (hashable, so the result is cached)."""
    return Symbols(np.frombuffer(numbers, dtype=np.int16)).get_chemical_formula()


@lru_cache(maxsize=100_000)
def reduced_formula(formula: str) -> str:
    """Reduced (Hill) formula: ``Ti8O16`` → ``O2Ti``; groups compositions for outliers/splits.

    Parameters
    ----------
    formula : str
        A chemical formula (e.g. the table's ``formula`` column).

    Returns
    -------
    str
        The formula divided by the greatest common divisor of its counts, in Hill order.
    """
    return Formula(formula).reduce()[0].format("hill")
