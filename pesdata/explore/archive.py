"""The minima archive of a walk: distinct local minima, whatever their rotation, translation or
atom order, and the fragmentation guard for clusters.

Two minima are the same when they have the same composition, energies within ``energy_tol``
(eV), and the same sorted list of interatomic distances within ``distance_tol`` (Å) — every pair
for a cluster, every pair up to a cutoff (with periodic images) for a periodic cell, whose
volume must also agree within ``volume_tol`` (relative). Sorted distances do not change under
rotation, translation or a permutation of the atoms, nor under another choice of periodic cell
for the same crystal; two different minima with equal energies and distances are, in practice,
mirror images (enantiomers), which count as one.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Minimum", "MinimaArchive", "distance_fingerprint", "is_degenerate_cell",
           "is_fragmented",
           "nearest_neighbour_distance"]


def nearest_neighbour_distance(atoms) -> float:
    """Median over atoms of the distance to the nearest other atom (periodic images included)."""
    if len(atoms) < 2:
        return 1.0
    if not any(atoms.pbc):
        from scipy.spatial.distance import pdist, squareform

        d = squareform(pdist(atoms.positions))
        np.fill_diagonal(d, np.inf)
        return float(np.median(d.min(axis=1)))
    d = atoms.get_all_distances(mic=True)
    np.fill_diagonal(d, np.inf)
    nearest = d.min(axis=1)
    return float(np.median(nearest[np.isfinite(nearest)])) if np.isfinite(nearest).any() else 1.0


def distance_fingerprint(atoms, cutoff: float) -> np.ndarray:
    """Sorted interatomic distances: all pairs of a cluster (each once); for a periodic cell
    every ordered pair within ``cutoff`` (Å) over periodic images (each pair twice), which
    does not depend on the choice of cell."""
    if not any(atoms.pbc):
        from scipy.spatial.distance import pdist

        return np.sort(pdist(atoms.positions))
    from ase.neighborlist import neighbor_list

    # every ordered pair (i, j, image) once — so each pair twice — whatever the cell: an
    # atom's pairs with its own images count like any other pair
    d = neighbor_list("d", atoms, cutoff)
    return np.sort(d[d > 0])


def is_fragmented(atoms, bond: float) -> bool:
    """True when a cluster falls apart: its graph of pairs closer than ``bond`` (Å) has more
    than one connected component. Periodic structures are never called fragmented."""
    if any(atoms.pbc) or len(atoms) < 2:
        return False
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial.distance import pdist, squareform

    adjacency = squareform(pdist(atoms.positions)) < bond
    n_parts, _ = connected_components(adjacency, directed=False)
    return n_parts > 1


def is_degenerate_cell(atoms, nearest: float, start_volume: float) -> bool:
    """True for a variable cell gone bad: its thinnest height below half the nearest-neighbour
    distance ``nearest`` (a flattened cell, whose neighbour lists need countless periodic
    images), or a volume above ten times ``start_volume``."""
    cell = np.asarray(atoms.cell)
    volume = abs(float(np.linalg.det(cell)))
    areas = np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    return bool(volume <= 0 or (volume / areas).min() < 0.5 * nearest
                or volume > 10 * start_volume)


@dataclass
class Minimum:
    """One archived minimum."""

    energy: float
    formula: str
    volume: float
    fingerprint: np.ndarray = field(repr=False)
    atoms: object = field(repr=False)
    step: int = 0
    walker: int = 0
    evaluations: int = 0
    visits: int = 1


class MinimaArchive:
    """Distinct minima found by one or more walkers, in order of discovery.

    Parameters
    ----------
    cutoff : float
        Distance cutoff (Å) of the fingerprint of periodic structures.
    energy_tol : float
        Energies closer than this (eV) may be the same minimum.
    distance_tol : float
        Largest difference (Å) between sorted distances of the same minimum.
    volume_tol : float
        Largest relative volume difference of the same periodic minimum.
    """

    def __init__(self, cutoff: float = 6.0, energy_tol: float = 1e-3,
                 distance_tol: float = 0.02, volume_tol: float = 0.01) -> None:
        self.cutoff = cutoff
        self.energy_tol = energy_tol
        self.distance_tol = distance_tol
        self.volume_tol = volume_tol
        self.minima: list[Minimum] = []
        self._energies: list[float] = []  # sorted, for the energy window
        self._order: list[int] = []  # index into minima, same order as _energies

    def __len__(self) -> int:
        return len(self.minima)

    def find(self, atoms, energy: float) -> int | None:
        """Index of the archived minimum equal to ``atoms`` (energy ``energy``), or None."""
        return self._find(atoms, energy, self._fingerprint(atoms))

    def add(self, atoms, energy: float, step: int = 0, walker: int = 0,
            evaluations: int = 0) -> tuple[int, bool]:
        """Archive ``atoms`` unless an equal minimum is there; returns ``(index, is_new)``.

        A copy of ``atoms`` (geometry only) is kept with the walk's ``step``, ``walker`` and
        ``evaluations`` count at discovery; a repeat raises the ``visits`` count.
        """
        fp = self._fingerprint(atoms)
        hit = self._find(atoms, energy, fp)
        if hit is not None:
            self.minima[hit].visits += 1
            return hit, False
        from ase import Atoms

        copy = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                     pbc=atoms.pbc)
        index = len(self.minima)
        self.minima.append(Minimum(float(energy), atoms.get_chemical_formula(),
                                   _volume(atoms), fp, copy, step, walker,
                                   evaluations))
        pos = bisect.bisect(self._energies, float(energy))
        self._energies.insert(pos, float(energy))
        self._order.insert(pos, index)
        return index, True

    def lowest(self) -> Minimum | None:
        """The archived minimum of lowest energy."""
        return self.minima[self._order[0]] if self.minima else None

    # -- internals ------------------------------------------------------------------------------

    def _fingerprint(self, atoms) -> np.ndarray:
        return distance_fingerprint(atoms, self.cutoff)

    def _find(self, atoms, energy: float, fp: np.ndarray) -> int | None:
        lo = bisect.bisect_left(self._energies, energy - self.energy_tol)
        hi = bisect.bisect_right(self._energies, energy + self.energy_tol)
        formula, volume = atoms.get_chemical_formula(), _volume(atoms)
        for k in range(lo, hi):
            m = self.minima[self._order[k]]
            if m.formula != formula:
                continue
            if volume and abs(m.volume - volume) > self.volume_tol * volume:
                continue
            # a pair distance right at a periodic cutoff may fall on either side of it: the
            # lists may differ by a few entries at their (sorted) ends
            n = min(len(m.fingerprint), len(fp))
            if abs(len(m.fingerprint) - len(fp)) > max(2, n // 100):
                continue
            if n == 0 or float(np.max(np.abs(m.fingerprint[:n] - fp[:n]))) <= self.distance_tol:
                return self._order[k]
        return None


def _volume(atoms) -> float:
    return float(atoms.get_volume()) if all(atoms.pbc) else 0.0
