"""Why a candidate frame cannot be used at all, checked before any criterion scores it.

A frame is invalid when its positions or cell hold NaN/inf, when it has no atoms, when a
periodic cell is degenerate (a periodic vector of near-zero length, or a near-zero volume),
when an atom lies absurdly far from the cell, or when two atoms are closer than curate's
``overlap`` validator allows. The last three are curate's own validators
(:class:`~pesdata.curate.CellValidator`, :class:`~pesdata.curate.CoordinateValidator`,
:class:`~pesdata.curate.MinDistanceValidator` with its batched neighbour search), run through
:func:`pesdata.curate.validate_batch` exactly as a curate run runs them, so a frame selection
refuses is a frame curate would refuse, with the same message. Such frames get the decision
``failed`` with the reason returned here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import ase
import numpy as np

from ..errors import ParameterError

__all__ = ["invalid_reasons", "label_reasons"]


@dataclass
class _Geometry:
    """The parts of a frame curate's geometry validators read (no hashing, no labels)."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)


def _overlap_validator(overlap):
    from ..curate import MinDistanceValidator

    if overlap is None:
        return MinDistanceValidator()  # curate's default factor
    if isinstance(overlap, MinDistanceValidator):
        return overlap
    if (isinstance(overlap, numbers.Real) and not isinstance(overlap, bool)
            and math.isfinite(overlap) and overlap >= 0):
        return MinDistanceValidator(float(overlap))
    raise ParameterError(f"overlap must be None (curate's default), a factor ≥ 0 of the sum of "
                         f"covalent radii (0 turns the check off) or a MinDistanceValidator, "
                         f"got {overlap!r}")


def _shown(idx: np.ndarray, limit: int = 5) -> str:
    text = ", ".join(str(int(i)) for i in idx[:limit])
    return text + (f", ... ({len(idx)} in all)" if len(idx) > limit else "")


def _non_finite(atoms: ase.Atoms) -> str | None:
    """Why positions or cell are not finite, naming atoms/vectors and values; else None."""
    parts = []
    pos = np.asarray(atoms.positions, dtype=float)
    bad = np.flatnonzero(~np.isfinite(pos).all(axis=1))
    if bad.size:
        first = pos[bad[0]]
        parts.append(f"non_finite: positions of atom(s) {_shown(bad)} are not finite "
                     f"(atom {int(bad[0])}: {first.tolist()})")
    cell = np.asarray(atoms.cell.array, dtype=float)
    vec = np.flatnonzero(~np.isfinite(cell).all(axis=1))
    if vec.size:
        parts.append(f"non_finite: cell vector(s) {', '.join('abc'[i] for i in vec)} are not "
                     f"finite ({cell[vec[0]].tolist()})")
    return "; ".join(parts) or None


def invalid_reasons(images: Sequence[ase.Atoms], overlap=None) -> list[str | None]:
    """Why each frame cannot be used, or None for a usable frame.

    Parameters
    ----------
    images : sequence of ase.Atoms
        The candidate frames.
    overlap : float or MinDistanceValidator, optional
        Closest allowed approach as a fraction of the sum of covalent radii (curate's
        ``overlap`` validator; None: its default, 0.5; 0 turns the check off).

    Returns
    -------
    list of str or None
        One entry per frame: None when valid, else the reasons (``validator: message``,
        joined by ``"; "``), e.g. ``"overlap: atoms 0 and 5 are 0.300 Å apart (< 1.320 Å)"``
        or ``"non_finite: positions of atom(s) 3 are not finite (atom 3: [nan, 0.0, 1.0])"``.

    Raises
    ------
    ParameterError
        ``overlap`` is negative, not finite or of the wrong kind.
    """
    from ..curate import CellValidator, CoordinateValidator, validate_batch

    checks = [CellValidator(), CoordinateValidator(), _overlap_validator(overlap)]
    images = list(images)
    reasons: list[str | None] = [None] * len(images)
    todo, geoms = [], []
    for k, atoms in enumerate(images):
        if len(atoms) == 0:
            reasons[k] = "shape: frame has no atoms"
            continue
        why = _non_finite(atoms)
        if why is not None:
            reasons[k] = why
            continue
        todo.append(k)
        geoms.append(_Geometry(np.asarray(atoms.numbers), np.asarray(atoms.positions, float),
                               np.asarray(atoms.cell.array, float), np.asarray(atoms.pbc, bool)))
    for k, issues in zip(todo, validate_batch(geoms, checks), strict=True):
        if issues:
            reasons[k] = "; ".join(f"{i.validator}: {i.message}" for i in issues)
    return reasons


def label_reasons(images: Sequence[ase.Atoms]) -> list[str | None]:
    """Why each frame's labels (if any) cannot be trusted: a NaN/inf energy, force or stress.

    A candidate's labels are not the labels it will get, but a non-finite one says the run
    that produced the frame broke, so the frame is ``failed`` rather than passed on.

    Parameters
    ----------
    images : sequence of ase.Atoms
        Frames whose labels sit in ``atoms.calc.results`` (as pesdata and ASE readers give).

    Returns
    -------
    list of str or None
        The reason per frame, None where every label present is finite.
    """
    out: list[str | None] = []
    for atoms in images:
        results = getattr(getattr(atoms, "calc", None), "results", None) or {}
        bad = []
        for key in ("energy", "free_energy", "forces", "stress"):
            if key not in results or results[key] is None:
                continue
            try:
                value = np.asarray(results[key], dtype=float)
            except (TypeError, ValueError):
                bad.append(f"{key} label is not a number ({str(results[key])[:40]!r})")
                continue
            if not np.isfinite(value).all():
                where = np.argwhere(~np.isfinite(value))
                at = f" at {tuple(int(i) for i in where[0])}" if value.ndim else ""
                bad.append(f"NaN/inf {key} label{at}")
        out.append("; ".join(bad) if bad else None)
    return out
