"""A small neighbour search for the curate validators (numpy + scipy, no torch).

The overlap validator only needs the pairs closer than a short cutoff (about one covalent
radius) in frames that already passed the finite-value and cell checks. vesin is faster on
large cutoffs but imports torch (over a second of start-up), so curate uses a KD-tree over the
periodic images instead: positions are wrapped into the cell along periodic directions, the
atoms are replicated over the lattice shifts that can bring a pair within the cutoff
(``ceil(cutoff / plane spacing)`` per periodic direction, so cells smaller than twice the
cutoff are handled) keeping only the images within reach of the cell, and scipy's
:class:`~scipy.spatial.cKDTree` finds the pairs inside the cell and with the images.
Each pair (i, j, shift) is returned once, as vesin's half list does.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["MAX_IMAGES", "neighbour_pairs"]

MAX_IMAGES = 20_000_000  # atom images a search may generate (a cell far smaller than the cutoff)


def _complete(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """``cell`` with its non-periodic vectors replaced by unit vectors normal to the periodic ones.

    Only periodic directions are wrapped and shifted, so the non-periodic vectors are free; this
    choice makes the matrix invertible even when a slab or wire comes with zero vectors there,
    and the reciprocal vectors give the in-plane spacing of the periodic lattice.
    """
    out = cell.copy()
    periodic = cell[pbc]
    if len(periodic):
        _, _, vt = np.linalg.svd(periodic)
        out[~pbc] = vt[len(periodic):]
    else:
        out[:] = np.eye(3)
    return out


def neighbour_pairs(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of atoms closer than ``cutoff``, periodic images included, each pair once.

    Parameters
    ----------
    positions : (n, 3) array
        Cartesian positions (Å); must be finite.
    cell : (3, 3) array
        Cell vectors as rows (Å); non-singular along the periodic directions.
    pbc : (3,) bool array
        Periodic directions.
    cutoff : float
        Cutoff radius (Å), > 0.

    Raises
    ------
    ValueError
        The cell is so small against the cutoff that more than :data:`MAX_IMAGES` atom images
        would be needed.

    Returns
    -------
    i, j : int arrays
        Atom indices of each pair (``i == j`` for an atom and its own periodic image).
    d : float array
        Their distances (Å), all ``< cutoff``.
    """
    pos = np.asarray(positions, dtype=float)
    pbc = np.asarray(pbc, dtype=bool)
    n = len(pos)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, float))
    if n == 0:
        return empty
    if not pbc.any():
        tree = cKDTree(pos)
        pairs = tree.query_pairs(cutoff, output_type="ndarray")
        if len(pairs) == 0:
            return empty
        i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
        d = np.linalg.norm(pos[j] - pos[i], axis=1)
        keep = d < cutoff
        return i[keep], j[keep], d[keep]
    cell = np.asarray(cell, dtype=float)
    if not pbc.all():
        cell = _complete(cell, pbc)
    frac = np.linalg.solve(cell.T, pos.T).T
    frac[:, pbc] -= np.floor(frac[:, pbc])  # wrap along the periodic directions only
    wrapped = frac @ cell
    spacing = 1.0 / np.linalg.norm(np.linalg.inv(cell).T, axis=1)
    reach = np.where(pbc, cutoff / spacing, np.inf)  # the cutoff in fractional units
    n_shift = np.where(pbc, np.ceil(np.minimum(reach, 1e6)), 0).astype(np.int64)
    n_images = int(np.prod(2 * n_shift + 1)) * n
    if n_images > MAX_IMAGES:
        raise ValueError(
            f"the cell is too small for a {cutoff:.3g} Å neighbour search: {n_images} periodic "
            f"images (> {MAX_IMAGES}); plane spacings {np.round(spacing[pbc], 6).tolist()} Å"
        )
    shifts = np.array(
        list(itertools.product(*[range(-k, k + 1) for k in n_shift])), dtype=np.int64
    )
    centre = int(np.flatnonzero((shifts == 0).all(axis=1))[0])
    # images of every atom, kept only where they can reach the cell (the skin around it)
    img_frac = frac[None, :, :] + shifts[:, None, :]
    near = ((img_frac >= -reach) & (img_frac <= 1.0 + reach)).all(axis=2)
    near[centre] = False
    s_idx, atom = np.nonzero(near)
    images = img_frac[s_idx, atom] @ cell
    tree = cKDTree(wrapped)
    ii, jj = [], []
    pairs = tree.query_pairs(cutoff, output_type="ndarray")  # inside the cell, i < j
    if len(pairs):
        ii.append(pairs[:, 0].astype(np.int64))
        jj.append(pairs[:, 1].astype(np.int64))
        img_of = [np.zeros(len(pairs), np.int64) - 1]
    else:
        img_of = []
    if len(images):
        found = tree.sparse_distance_matrix(cKDTree(images), cutoff, output_type="ndarray")
        i = found["i"].astype(np.int64)
        k = found["j"].astype(np.int64)
        j, s = atom[k], s_idx[k]
        # each pair through the images appears as (i, j, S) and (j, i, -S): keep i < j, and
        # for an atom and its own image the shift after the centre in itertools order
        keep = (i < j) | ((i == j) & (s > centre))
        ii.append(i[keep])
        jj.append(j[keep])
        img_of.append(k[keep])
    if not ii:
        return empty
    i, j, k = np.concatenate(ii), np.concatenate(jj), np.concatenate(img_of)
    other = np.where(k[:, None] >= 0, images[np.maximum(k, 0)] if len(images) else 0.0,
                     wrapped[j])
    d = np.linalg.norm(other - wrapped[i], axis=1)
    inside = d < cutoff
    return i[inside], j[inside], d[inside]
