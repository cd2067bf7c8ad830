"""Canonical content hashes of frames: ``geometry_hash`` and the row ``id``."""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["geometry_hash", "structure_id"]

# |rint(x * 1e8)| below this fits int64 with room for the +50 of the half-up rounding.
_Q8_LIMIT = float(2**63 - 1024)
# Geometries with a coordinate beyond ~9.2e10 Å (or non-finite) hash in their own domain.
_WIDE_PERSON = b"pesdata-wide"


def _quantize(x) -> tuple[np.ndarray, np.ndarray | None]:
    """Integers of 1e-6 Å, rounding first to 1e-8 Å (the precision extxyz writes, so that a
    frame written by ASE and read back hashes the same), then half-up to 1e-6 Å.

    Returns
    -------
    q : numpy.ndarray of int64
        The quantized values; 0 where a value is out of range.
    wide : numpy.ndarray of float64 or None
        None when every value is finite and ``|x| ≲ 9.2e10 Å`` (the int64 range of ``q``);
        otherwise the raw values where ``q`` cannot hold them (NaN made canonical) and 0
        elsewhere. Such values are far coarser than 1e-6 Å apart, so they hash as they are.
    """
    x = np.asarray(x, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        q8 = np.rint(x * 1e8)
        ok = np.abs(q8) < _Q8_LIMIT  # False for NaN and inf
    if ok.all():
        return np.floor_divide(q8.astype("<i8") + 50, 100), None
    q = np.floor_divide(np.where(ok, q8, 0.0).astype("<i8") + 50, 100)
    q[~ok] = 0
    wide = np.where(ok, 0.0, np.where(np.isnan(x), np.nan, x)).astype("<f8")
    return q, wide


def geometry_hash(numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray, pbc) -> str:
    """Canonical hash of a geometry (positions and cell rounded to 1e-6 Å, see ``_quantize``).

    Geometries with a coordinate beyond the int64 range of the rounding (``|x| ≳ 9.2e10 Å``)
    or a non-finite one hash their raw values under a separate BLAKE2b personalisation, so they
    never collide with each other or with ordinary geometries, whose hashes are unchanged.

    Parameters
    ----------
    numbers : array of int, shape (n,)
    positions : array of float, shape (n, 3), Å
    cell : array of float, shape (3, 3), Å
    pbc : array of bool, shape (3,)

    Returns
    -------
    str
        32 hex characters (BLAKE2b, 128 bit).
    """
    pos_q, pos_wide = _quantize(positions)
    cell_q, cell_wide = _quantize(cell)
    wide = pos_wide is not None or cell_wide is not None
    h = hashlib.blake2b(digest_size=16, person=_WIDE_PERSON if wide else b"")
    h.update(np.ascontiguousarray(numbers, dtype="<i2").tobytes())
    h.update(pos_q.tobytes())
    h.update(cell_q.tobytes())
    h.update(np.asarray(pbc, dtype=bool).astype("u1").tobytes())
    if wide:
        for q, w in ((pos_q, pos_wide), (cell_q, cell_wide)):
            h.update((np.zeros(q.shape, "<f8") if w is None else w).tobytes())
    return h.hexdigest()


def structure_id(geom_hash: str, method: str) -> str:
    """Primary key of a row: hash of the geometry hash and the method string.

    Parameters
    ----------
    geom_hash : str
        The frame's :func:`geometry_hash`.
    method : str
        The level of theory (e.g. ``"PBE"``).

    Returns
    -------
    str
        32 hex characters (BLAKE2b, 128 bit).
    """
    return hashlib.blake2b(f"{geom_hash}|{method}".encode(), digest_size=16).hexdigest()
