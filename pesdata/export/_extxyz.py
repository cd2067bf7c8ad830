"""A lossless extended-XYZ writer: every float as the shortest string that reads back exactly.

ASE's extxyz writer prints positions and per-atom arrays with ``%16.8f`` — 1e-8 Å, which moves
a stiff structure's energy by ~1e-6 eV against the label computed at the exact positions. This
writer keeps ASE's comment-line format (``key_val_dict_to_str``: ``Lattice``, ``Properties``,
``pbc``, info keys) and writes every number with Python's ``repr`` (17 significant digits at
most, exact round trip through ``float``), so ASE's own reader returns the stored values bit for
bit. Only what the caller puts in ``info`` and ``arrays`` is written; no calculator is consulted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import IO

import numpy as np

__all__ = ["write_frame"]

_TYPE = {"f": "R", "i": "I", "b": "L", "U": "S", "O": "S"}


def _fmt(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "T" if value else "F"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def write_frame(fh: IO[str], symbols: Iterable[str], positions: np.ndarray, cell: np.ndarray,
                pbc: Iterable[bool], info: Mapping, arrays: Mapping[str, np.ndarray]) -> None:
    """Write one frame.

    Parameters
    ----------
    fh : text file
        Where to write.
    symbols : iterable of str
        Chemical symbols, one per atom.
    positions : numpy.ndarray
        ``(n, 3)`` Cartesian positions in Å.
    cell : numpy.ndarray
        ``(3, 3)`` lattice vectors (written as ``Lattice`` when any ``pbc`` or non-zero).
    pbc : iterable of bool
        Periodicity.
    info : mapping
        Comment-line keys (numbers, strings, bools, small arrays), in this order.
    arrays : mapping of str to numpy.ndarray
        Per-atom columns after ``species`` and ``pos``, each ``(n,)`` or ``(n, k)``.
    """
    from ase.io.extxyz import key_val_dict_to_str

    symbols = list(symbols)
    n = len(symbols)
    positions = np.asarray(positions, dtype=float).reshape(n, 3)
    cell = np.asarray(cell, dtype=float).reshape(3, 3)
    pbc = [bool(p) for p in pbc]
    columns: list[tuple[str, np.ndarray]] = [("species", np.array(symbols, dtype=object)),
                                             ("pos", positions)]
    for name, values in arrays.items():
        values = np.asarray(values)
        if len(values) != n:
            raise ValueError(f"array {name!r} has {len(values)} rows for {n} atoms")
        columns.append((name, values))
    props = []
    for name, values in columns:
        kind = _TYPE.get(values.dtype.kind, "S")
        width = 1 if values.ndim == 1 else values.shape[1]
        props += [name, kind, str(width)]
    header: dict = {}
    if any(pbc) or np.any(cell):
        header["Lattice"] = cell.T  # key_val_dict_to_str flattens Fortran-order, as ASE writes
    header["Properties"] = ":".join(props)
    header.update({k: v for k, v in info.items() if k not in ("Lattice", "Properties", "pbc")})
    header["pbc"] = np.array(pbc)
    comment = key_val_dict_to_str(header)
    comment = _exact_floats_in_comment(comment, header)
    fh.write(f"{n}\n{comment}\n")
    flat = [v.reshape(n, -1) if v.ndim > 1 else v.reshape(n, 1) for _, v in columns]
    for i in range(n):
        fh.write(" ".join(_fmt(x) for col in flat for x in col[i]) + "\n")


def _exact_floats_in_comment(comment: str, header: Mapping) -> str:
    """ASE prints comment-line floats with ``repr`` already (``Lattice`` too); nothing to do
    unless it ever stops: checked here so a change in ASE cannot silently round labels."""
    from ase.io.extxyz import key_val_str_to_dict

    back = key_val_str_to_dict(comment)
    for key, value in header.items():
        if key in ("Properties",):
            continue
        got = back.get(key)
        if isinstance(value, (float, np.floating)) and got != float(value):
            raise ValueError(f"extxyz comment key {key!r} does not round-trip exactly")
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.array_equal(
                np.asarray(got, dtype=float).reshape(value.shape), value):
            raise ValueError(f"extxyz comment key {key!r} does not round-trip exactly")
    return comment
