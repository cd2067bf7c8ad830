"""A small neighbor search for the curate validators (numpy + scipy, no torch).

The overlap validator only needs the pairs closer than a short cutoff (about one covalent
radius) in frames that already passed the finite-value and cell checks. vesin is faster on
large cutoffs but imports torch (over a second of start-up), so curate uses a KD-tree over the
periodic images instead: positions are wrapped into the cell along periodic directions, the
atoms are replicated over the lattice shifts that can bring a pair within the cutoff
(``ceil(cutoff / plane spacing)`` per periodic direction, so cells smaller than twice the
cutoff are handled) keeping only the images within reach of the cell, and scipy's
:class:`~scipy.spatial.cKDTree` finds the pairs inside the cell and with the images.
Each pair (i, j, shift) is returned once, as vesin's half list does.

:func:`neighbor_pairs_batch` searches many frames at once: their points (atoms and skin images)
are laid side by side, far enough apart that no pair crosses from one frame to another, in one
tree with one query — the per-call cost of building and querying a small tree for each frame
(~0.2 ms, most of the overlap check's time) is paid once per batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["MAX_IMAGES", "neighbor_pairs", "neighbor_pairs_batch"]

MAX_IMAGES = 20_000_000  # atom images a search may generate (a cell far smaller than the cutoff)
_BUDGET = 1_000_000  # values of one vectorised image array


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


_EMPTY = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, float))


@lru_cache(maxsize=64)
def _shifts(n_shift: tuple[int, int, int]) -> tuple[np.ndarray, int]:
    """Lattice shifts in itertools order and the index of the zero shift."""
    shifts = np.array(
        list(itertools.product(*[range(-k, k + 1) for k in n_shift])), dtype=np.int64
    ).reshape(-1, 3)
    return shifts, int(np.flatnonzero((shifts == 0).all(axis=1))[0])


def _lattice(cells: np.ndarray, pbc: np.ndarray, cutoffs: np.ndarray):
    """Completed cells, their inverses, the cutoff in fractional units and the shifts needed."""
    cells = cells.copy()
    for k in np.flatnonzero(pbc.any(axis=1) & ~pbc.all(axis=1)):  # slabs and wires
        cells[k] = _complete(cells[k], pbc[k])
    cells[~pbc.any(axis=1)] = np.eye(3)  # molecules: never wrapped or shifted
    inv = np.linalg.inv(cells)
    spacing = 1.0 / np.linalg.norm(np.swapaxes(inv, 1, 2), axis=2)
    reach = np.where(pbc, cutoffs[:, None] / spacing, np.inf)
    n_shift = np.where(pbc, np.ceil(np.minimum(reach, 1e6)), 0).astype(np.int64)
    return cells, inv, spacing, reach, n_shift


def _points(pos, cells, inv, pbc, reach, n_shift):
    """Atoms wrapped into their cells and the images within reach of the cell, for frames that
    share atom count, pbc and shifts (leading axis: frame).

    Returns the points and, per point, its frame (index into the group), atom, shift and
    whether it is the atom itself (the zero shift).
    """
    b, n = pos.shape[:2]
    frac = np.einsum("bnj,bjk->bnk", pos, inv)
    periodic = pbc[0]
    frac[:, :, periodic] -= np.floor(frac[:, :, periodic])
    shifts, centre = _shifts(tuple(int(k) for k in n_shift[0]))
    width = shifts.max(axis=0)  # k per direction
    m = np.arange(-int(width.max()), int(width.max()) + 1)
    # allowed[b, atom, direction, m]: the image shifted by m along that direction stays within
    # reach of the cell; an image is kept when its shift is allowed along all three directions
    moved = frac[:, :, :, None] + m
    r = reach[:, None, :, None]
    allowed = (moved >= -r) & (moved <= 1.0 + r)
    col = shifts + int(width.max())
    near = (allowed[:, :, 0, col[:, 0]] & allowed[:, :, 1, col[:, 1]]
            & allowed[:, :, 2, col[:, 2]])  # (b, atom, shift)
    near[:, :, centre] = True  # the atoms themselves, always
    f, a, s = np.nonzero(near)
    points = np.einsum("pj,pjk->pk", frac[f, a] + shifts[s], cells[f])
    return points, f, a, s, s == centre, centre


def neighbor_pairs_batch(
    geometries: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    cutoffs: Sequence[float],
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`neighbor_pairs` of many frames, searched in one KD-tree.

    Frames alike in atom count, pbc and the lattice shifts they need are handled together in
    numpy; all points go into one tree, each frame laid clear of the others.

    Parameters
    ----------
    geometries : sequence of (positions, cell, pbc)
        One per frame, as for :func:`neighbor_pairs`.
    cutoffs : sequence of float
        The cutoff of each frame (Å), > 0.

    Returns
    -------
    list of (i, j, d)
        Per frame, the pairs :func:`neighbor_pairs` returns.

    Raises
    ------
    ValueError
        As :func:`neighbor_pairs`, for the first frame whose cell is too small.
    numpy.linalg.LinAlgError
        A periodic cell is singular.
    """
    n_frames = len(geometries)
    out = [_EMPTY] * n_frames
    if n_frames == 0:
        return out
    cut = np.asarray(cutoffs, dtype=float)
    counts = np.array([len(g[0]) for g in geometries], dtype=np.int64)
    pbc = np.array([np.broadcast_to(np.asarray(g[2], dtype=bool), 3) for g in geometries])
    cells = np.array([np.asarray(g[1], dtype=float).reshape(3, 3) for g in geometries])
    cells, inv, spacing, reach, n_shift = _lattice(cells, pbc, cut)
    n_images = np.prod(2 * n_shift + 1, axis=1) * counts
    for k in np.flatnonzero(n_images > MAX_IMAGES)[:1]:
        raise ValueError(
            f"the cell is too small for a {cut[k]:.3g} Å neighbor search: {n_images[k]} "
            f"periodic images (> {MAX_IMAGES}); plane spacings "
            f"{np.round(spacing[k][pbc[k]], 6).tolist()} Å"
        )
    groups: dict[tuple, list[int]] = {}
    for k in range(n_frames):
        if counts[k]:
            key = (int(counts[k]), *pbc[k].tolist(), *n_shift[k].tolist())
            groups.setdefault(key, []).append(k)
    chunks = []
    for key, members in groups.items():
        # frames per numpy pass: keep the (frames, shifts, atoms, 3) image array near 1e6 values
        per = max(1, _BUDGET // (key[0] * int(np.prod(2 * np.array(key[4:]) + 1)) * 3))
        for lo_ in range(0, len(members), per):
            idx = np.array(members[lo_ : lo_ + per])
            pos = np.stack([np.asarray(geometries[k][0], dtype=float) for k in idx])
            pts, f, a, s, own, centre = _points(
                pos, cells[idx], inv[idx], pbc[idx], reach[idx], n_shift[idx]
            )
            chunks.append((pts, idx[f], a, s, own, np.full(len(pts), centre)))
    if not chunks:
        return out
    points, frame, atom, shift, own, centre = (np.concatenate(c) for c in zip(*chunks, strict=True))
    # lay the frames side by side along x, each 2 cutoffs clear of the next
    lo = np.full(n_frames, np.inf)
    hi = np.full(n_frames, -np.inf)
    np.minimum.at(lo, frame, points[:, 0])
    np.maximum.at(hi, frame, points[:, 0])
    width = np.where(np.isfinite(lo), hi - lo, 0.0) + 2.0 * float(cut.max()) + 1.0
    start = np.concatenate([[0.0], np.cumsum(width)[:-1]])
    laid = points.copy()
    laid[:, 0] += (start - np.where(np.isfinite(lo), lo, 0.0))[frame]
    pairs = cKDTree(laid).query_pairs(float(cut.max()), output_type="ndarray")
    if len(pairs) == 0:
        return out
    pairs = pairs[own[pairs[:, 0]] | own[pairs[:, 1]]]  # image-image: copies of atom-image
    # orient every pair from an atom of the cell: (a, b) with a an atom, b an atom or image
    swap = ~own[pairs[:, 0]]
    a = np.where(swap, pairs[:, 1], pairs[:, 0])
    b = np.where(swap, pairs[:, 0], pairs[:, 1])
    i, j, s, f = atom[a], atom[b], shift[b], frame[a]
    # two atoms of the cell are found once (kept, as i < j); a pair through the images shows
    # up as (i, j, S) and (j, i, -S): keep i < j, and for an atom and its own image the shift
    # after the centre in itertools order
    both = own[b]
    keep = both | (i < j) | ((i == j) & (s > centre[a]))
    d = np.linalg.norm(points[b] - points[a], axis=1)
    keep &= d < cut[f]
    ii = np.where(both, np.minimum(i, j), i)[keep]
    jj = np.where(both, np.maximum(i, j), j)[keep]
    dd, ff = d[keep], f[keep]
    order = np.argsort(ff, kind="stable")
    ii, jj, dd, ff = ii[order], jj[order], dd[order], ff[order]
    bounds = np.searchsorted(ff, np.arange(n_frames + 1))
    for k in np.flatnonzero(np.diff(bounds)):
        lo_, hi_ = bounds[k], bounds[k + 1]
        out[k] = (ii[lo_:hi_].astype(np.int64), jj[lo_:hi_].astype(np.int64), dd[lo_:hi_])
    return out


def neighbor_pairs(
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
    return neighbor_pairs_batch([(positions, cell, pbc)], [cutoff])[0]
