"""Per-structure fingerprints from per-atom descriptor rows, and near-duplicate detection.

A diversity strategy works on one vector per frame. :func:`structure_fingerprints` builds it
from the frame's per-atom descriptor rows (:class:`~pesdata.select._base.Environments`): for
each element of a fixed ``species`` list, the fraction of the frame's atoms of that element
and the mean (optionally the standard deviation and the maximum) of that element's
standardised rows. Every part is an average or an extreme over atoms, so the fingerprint does
not depend on the atom order nor on the cell size: a 2x2x2 supercell of a structure has the
fingerprint of the structure. An element absent from a frame contributes zeros (its fraction
is 0, which tells "absent" apart from "present at the reference mean").

Rows are standardised per element, ``(x - center[Z]) / scale[Z]``, with the *reference's*
statistics (:func:`element_scaling` of the reference environments) so that candidates and
reference live in the same units. The work is a sparse frame-by-row sum (one pass over the
rows per statistic); rows are never copied whole.

:func:`near_duplicates` marks rows within a distance of an earlier kept row (a KD-tree range
search, memory bounded by the neighbours of a chunk of rows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .._params import check_float
from ..errors import ParameterError
from ._base import Environments

__all__ = ["STATS", "element_scaling", "near_duplicates", "structure_fingerprints"]

#: The per-element statistics :func:`structure_fingerprints` can include, in output order.
STATS = ("mean", "std", "max")

_CHUNK = 16  # feature columns per pass (bounds the temporaries at rows × 16)


def _segment_stats(
    x: np.ndarray, key: np.ndarray, n_keys: int, stats: Sequence[str],
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Row count and raw ``stats`` (mean, std with ddof 0, max) of the rows of each key.

    ``rows`` (bool mask) restricts which rows count. Keys without rows get zeros. One sparse
    key-by-row sum per statistic and column chunk; the rows are never copied whole.
    """
    from scipy import sparse  # lazy: store commands never import scipy

    n_rows, d = x.shape
    idx = np.arange(n_rows) if rows is None else np.flatnonzero(rows)
    k = key[idx]
    summer = sparse.csr_matrix((np.ones(len(idx)), (k, idx)), shape=(n_keys, n_rows))
    count = np.bincount(k, minlength=n_keys).astype(np.float64)
    safe = np.where(count > 0, count, 1.0)[:, None]
    out = {s: np.zeros((n_keys, d)) for s in stats}
    if "max" in stats and len(idx):
        order = idx[np.argsort(k, kind="stable")]
        ks = key[order]
        starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    for lo in range(0, d, _CHUNK):
        cols = slice(lo, min(lo + _CHUNK, d))
        chunk = np.ascontiguousarray(x[:, cols], dtype=np.float64)
        mean = np.asarray(summer @ chunk) / safe
        if "mean" in stats:
            out["mean"][:, cols] = mean
        if "std" in stats:
            dev = mean[key]  # one temporary, reused in place
            np.subtract(chunk, dev, out=dev)
            np.multiply(dev, dev, out=dev)
            out["std"][:, cols] = np.sqrt(np.asarray(summer @ dev) / safe)
        if "max" in stats and len(idx):
            out["max"][ks[starts], cols] = np.maximum.reduceat(chunk[order], starts, axis=0)
    return count, out


def element_scaling(env: Environments) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Per-element mean and standard deviation of the descriptor rows of ``env``.

    Rows holding NaN or inf are left out of the statistics. A feature with zero (or
    undefined) spread gets scale 1, so it is centred but not blown up.

    Parameters
    ----------
    env : Environments or StreamedReference
        Usually the reference's environments (a streamed reference gives the same statistics
        from its chunks).

    Returns
    -------
    center, scale : dict of int to ndarray, shape (n_features,)
        Keyed by atomic number; pass them to :func:`structure_fingerprints`.
    """
    if not isinstance(env, Environments):  # a StreamedReference: from its chunked statistics
        stats = env.stats()
        sd = {z: np.sqrt(st.var) for z, st in stats.items()}
        return ({z: stats[z].mean for z in sd},
                {z: np.where(np.isfinite(s) & (s > 0), s, 1.0) for z, s in sd.items()})
    x = np.asarray(env.features)
    elements = env.elements
    lookup = np.zeros(max(elements + [0]) + 1, dtype=np.int64)
    lookup[elements] = np.arange(len(elements))
    key = lookup[np.asarray(env.numbers)]
    _, st = _segment_stats(x, key, len(elements), ("mean", "std"),
                           rows=np.isfinite(x).all(axis=1))
    s = st["std"]
    s = np.where(np.isfinite(s) & (s > 0), s, 1.0)
    return ({z: st["mean"][i] for i, z in enumerate(elements)},
            {z: s[i] for i, z in enumerate(elements)})


def _per_element(name: str, given, el: int, default: np.ndarray, d: int) -> np.ndarray:
    if given is None or el not in given:
        return default
    v = np.asarray(given[el], dtype=np.float64)
    if v.ndim == 0:
        v = np.full(d, float(v))
    if v.shape != (d,):
        raise ParameterError(f"{name}[{el}] must be a scalar or have shape ({d},), "
                             f"got shape {v.shape}")
    if not np.all(np.isfinite(v)) or (name == "scale" and np.any(v <= 0)):
        what = "finite and > 0" if name == "scale" else "finite"
        raise ParameterError(f"{name}[{el}] must be {what}, got {v.tolist()}")
    return v


def structure_fingerprints(
    env: Environments,
    species: Sequence[int],
    center: Mapping[int, np.ndarray | float] | None = None,
    scale: Mapping[int, np.ndarray | float] | None = None,
    stats: Sequence[str] = ("mean", "std"),
) -> np.ndarray:
    """One fingerprint per frame from its per-atom descriptor rows.

    Layout, for each element ``Z`` of ``species`` in the given order: the fraction of the
    frame's atoms that are ``Z``, then for each statistic of ``stats`` (in :data:`STATS`
    order) the ``n_features`` values of that statistic over the frame's ``Z`` rows, each row
    standardised as ``(x - center[Z]) / scale[Z]``. ``std`` is the population standard
    deviation (ddof 0), so it is size-intensive too. Zeros where the frame has no ``Z`` atom.

    Parameters
    ----------
    env : Environments
        Per-atom rows of the frames.
    species : sequence of int
        Atomic numbers, in the order their blocks appear; must include every element of
        ``env``.
    center, scale : dict of int to array (n_features,) or scalar, optional
        Per-element standardisation, normally :func:`element_scaling` of the reference, so
        candidates are measured in the reference's units. An element missing from a dict
        (e.g. one the reference lacks) is standardised with ``env``'s own statistics.
    stats : sequence of str
        Which of ``"mean"``, ``"std"``, ``"max"`` to include. Default mean and std: on the
        mlearn Si frames (train + test, default ACSF) leave-one-out 1-NN recovers the
        frame's group (Elastic, AIMD-NVT, Surface, Vacancy) for 95.4 % with the mean alone,
        97.9 % with mean + std (surfaces 86 → 100 %), 91.2 % with mean + max.

    Returns
    -------
    ndarray, shape (n_frames, len(species) * (1 + len(stats) * n_features)), float64
        A frame with a NaN or inf descriptor row gets NaN in that element's block (never a
        silent number), so the caller can mark it failed.

    Raises
    ------
    ParameterError
        ``species`` misses an element of ``env`` or repeats one, ``stats`` has an unknown
        entry, or a ``center``/``scale`` entry has the wrong shape or is not finite
        (``scale`` not > 0).
    """
    species = [int(z) for z in species]
    if len(set(species)) != len(species):
        raise ParameterError(f"species must not repeat an element, got {species}")
    missing = sorted(set(env.elements) - set(species))
    if missing:
        raise ParameterError(f"species {species} misses element(s) {missing} of the frames")
    bad = [s for s in stats if s not in STATS]
    if bad or not stats:
        raise ParameterError(f"stats must be a non-empty subset of {STATS}, got {list(stats)}")
    stats = [s for s in STATS if s in stats]

    x = np.asarray(env.features)
    n_rows, d = x.shape
    nf, ns = env.n_frames, len(species)
    lookup = np.full(max(species + [0]) + 1, -1)
    lookup[species] = np.arange(ns)
    eidx = lookup[np.asarray(env.numbers)]
    key = np.asarray(env.structure, dtype=np.int64) * ns + eidx
    n_keys = nf * ns
    frame_atoms = np.bincount(np.asarray(env.structure), minlength=nf).astype(np.float64)

    own_c, own_s = (None, None)
    if (center is None or scale is None or any(z not in center or z not in scale
                                               for z in env.elements)):
        own_c, own_s = element_scaling(env)
    zeros, ones = np.zeros(d), np.ones(d)
    cen = np.stack([_per_element("center", center, z, (own_c or {}).get(z, zeros), d)
                    for z in species])
    sca = np.stack([_per_element("scale", scale, z, (own_s or {}).get(z, ones), d)
                    for z in species])

    count, raw = _segment_stats(x, key, n_keys, stats)
    key_c = np.tile(cen, (nf, 1))  # per-key centre and scale (key = frame * ns + element)
    key_s = np.tile(sca, (nf, 1))
    blocks = {s: (raw[s] if s == "std" else raw[s] - key_c) / key_s for s in stats}
    for s in stats:
        blocks[s][count == 0] = 0.0
    frac = count / np.where(frame_atoms > 0, frame_atoms, 1.0)[np.arange(n_keys) // ns]
    parts = [frac[:, None]] + [blocks[s] for s in stats]
    return np.concatenate(parts, axis=1).reshape(nf, ns * (1 + len(stats) * d))


def near_duplicates(fingerprints: np.ndarray, tol: float) -> np.ndarray:
    """For each row, the earliest earlier *kept* row within ``tol``, or -1.

    Rows are visited in order; a row is a near-duplicate when some earlier row that is not
    itself a near-duplicate lies within Euclidean distance ``tol`` (``<=``); it then points
    to the lowest such index. So kept rows (``-1``) are pairwise more than ``tol`` apart and
    ``out[out[i]] == -1`` whenever ``out[i] >= 0``; ``tol = 0`` finds exact copies.

    Parameters
    ----------
    fingerprints : ndarray, shape (n, d)
        Finite rows (see :func:`structure_fingerprints`).
    tol : float
        Distance at or below which two rows are the same, ≥ 0.

    Returns
    -------
    ndarray of int, shape (n,)

    Raises
    ------
    ParameterError
        ``tol`` is negative or not finite, ``fingerprints`` not 2-D or not finite.

    Notes
    -----
    A KD-tree (``scipy.spatial.cKDTree``) range search over chunks of rows: memory grows with
    the number of neighbours of a chunk, not with n².
    """
    tol = check_float("tol", tol, low=0.0)
    x = np.asarray(fingerprints, dtype=np.float64)
    if x.ndim != 2:
        raise ParameterError(f"fingerprints must be 2-D (frames × features), got shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise ParameterError(f"fingerprints of row(s) {bad[:10].tolist()} are not finite")
    n = len(x)
    out = np.full(n, -1, dtype=np.int64)
    if n < 2:
        return out
    from scipy.spatial import cKDTree  # lazy

    tree = cKDTree(x)
    chunk = 256
    for lo in range(0, n, chunk):
        hoods = tree.query_ball_point(x[lo:lo + chunk], r=tol, return_sorted=True)
        for k, hood in enumerate(hoods):
            i = lo + k
            for j in hood:  # sorted ascending: the first earlier kept one is the lowest
                if j >= i:
                    break
                if out[j] < 0:
                    out[i] = j
                    break
    return out
