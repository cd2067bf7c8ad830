"""Extended XYZ, read with ASE's own parsers and a vectorised atom block.

ASE's extxyz reader converts every token of every atom line with a Python call, which makes
parsing the bulk of ingest time. This reader gives the same frames as
``ase.io.iread(path, format="extxyz")`` — it uses ASE's comment-line parser
(``key_val_str_to_dict``), ASE's ``parse_properties`` and ASE's ``set_calc_and_arrays`` — but
parses the atom lines of a run of frames that share one ``Properties`` string in a single
pandas C-parser call. Any frame it cannot take whole (wrong token count, odd booleans or NaN
spellings, constraints, VEC cell lines) goes through ASE's own ``_read_xyz_frame``, so edge
cases behave and fail exactly as in ASE. A test compares the
two readers frame by frame on every extxyz file of the shared data sets.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from ase.calculators.calculator import all_properties
from ase.data import atomic_numbers
from ase.io import extxyz as _ase_extxyz

from ..frames import AtomsParts

__all__ = ["VecFile", "iread_extxyz"]

_BOOL = {"T": True, "F": False, "True": True, "False": False}
_DEFAULT_PROPERTIES = "species:S:1:pos:R:3"
_NUMBERS = "\0numbers"  # parsed column of atomic numbers derived from 'species'


def _header(comment: str) -> tuple[dict, str]:
    info = _ase_extxyz.key_val_str_to_dict(comment) if comment.strip() else {}
    props = info.get("Properties", _DEFAULT_PROPERTIES)
    return info, props if isinstance(props, str) else ""


def _parse_block(lines: list[str], dtype: np.dtype, n_total: int) -> dict | None:
    """Columns of a run of atom lines with pandas' C parser; None when ASE must decide."""
    ncols = len(dtype.names)
    text_cols = {j: str for j, f in enumerate(dtype.names) if dtype.fields[f][0].kind in "Ob"}
    try:
        df = pd.read_csv(
            io.StringIO("".join(lines)), sep=r"\s+", header=None, names=range(ncols),
            dtype=text_cols, na_filter=False, engine="c",
        )
    except (ValueError, pd.errors.ParserError):
        return None
    if df.shape != (n_total, ncols):
        return None
    out = {}
    for j, field in enumerate(dtype.names):
        kind = dtype.fields[field][0].kind
        col = df[j]
        if kind == "f":
            if col.dtype.kind not in "fi":
                return None  # nan/inf spelled oddly, or a missing token: ASE decides
            out[field] = col.to_numpy(dtype=np.float64)
        elif kind == "i":
            if col.dtype.kind != "i":
                return None
            out[field] = col.to_numpy(dtype=dtype.fields[field][0])
        elif kind == "b":
            values = col.to_numpy(dtype=object)
            if not np.isin(values, list(_BOOL)).all():
                return None
            out[field] = np.isin(values, ("T", "True"))
        else:
            out[field] = col.to_numpy(dtype=object)
    species = [f for f in dtype.names if f == "species"]
    if species:
        try:
            out[_NUMBERS] = _species_numbers(out["species"])
        except KeyError:
            return None  # an unknown symbol: ASE's error
    return out


def _build(info: dict, props: str, columns: dict, a: int, b: int) -> AtomsParts:
    """One frame from its header and rows a:b of the parsed columns.

    Mirrors ``ase.io.extxyz._read_xyz_frame`` + ``set_calc_and_arrays`` without building an
    ``ase.Atoms``: per-atom names in ``all_properties`` and per-config keys ASE treats as
    results become calculator results, a 3×3 stress becomes Voigt.
    """
    properties, names, _, _ = _ase_extxyz.parse_properties(props)
    n = b - a
    pbc = info.pop("pbc", None)
    if pbc is None and "Lattice" in info:
        pbc = True
    cell = info.pop("Lattice").T if "Lattice" in info else np.zeros((3, 3))
    info.pop("Properties", None)
    arrays = {}
    for name in names:
        ase_name, cols = properties[name]
        if cols == 1:
            arrays[ase_name] = columns[name][a:b]
        else:
            arrays[ase_name] = np.stack([columns[f"{name}{c}"][a:b] for c in range(cols)], 1)
    numbers = arrays.pop("numbers", None)
    symbols = arrays.pop("symbols", None)
    if numbers is None and symbols is not None:
        numbers = columns[_NUMBERS][a:b]
    positions = arrays.pop("positions", None)
    if "initial_charges" in arrays:
        arrays["initial_charges"] = arrays["initial_charges"].astype(float)
    results = {k: arrays.pop(k) for k in list(arrays) if k in all_properties}
    for key in list(info):
        if key in _ase_extxyz.per_config_properties:
            value = info.pop(key)
            if key == "stress" and np.shape(value) == (3, 3):
                value = np.array(
                    [value[0, 0], value[1, 1], value[2, 2], value[1, 2], value[0, 2], value[0, 1]]
                )
            results[key] = value
    return AtomsParts(
        numbers=np.asarray(numbers if numbers is not None else np.zeros(n), dtype=np.int64),
        positions=np.zeros((n, 3)) if positions is None else np.asarray(positions, dtype=float),
        cell=np.asarray(cell, dtype=float),
        pbc=np.broadcast_to(np.asarray(False if pbc is None else pbc, dtype=bool), 3).copy(),
        info=info,
        arrays=arrays,
        results=results,
    )


def _species_numbers(species: np.ndarray) -> np.ndarray:
    """Atomic numbers of a species column, as ASE maps capitalised symbols."""
    uniq, inverse = np.unique(species.astype(str), return_inverse=True)
    lut = np.array([atomic_numbers[s.capitalize()] for s in uniq], dtype=np.int64)
    return lut[inverse.reshape(-1)]


def _slow(comment: str, lines: list[str], natoms: int) -> AtomsParts:
    return AtomsParts.from_atoms(_ase_extxyz._read_xyz_frame(iter([comment, *lines]), natoms))


def _chunk(frames: list[tuple[str, list[str], int]]) -> Iterator[AtomsParts]:
    """Parse a chunk of raw frames: runs sharing one Properties string in one pandas call."""
    headers = [_header(comment) for comment, _, _ in frames]
    i = 0
    while i < len(frames):
        props = headers[i][1]
        j = i
        while j < len(frames) and headers[j][1] == props and props:
            j += 1
        if j == i or "move_mask" in props:  # constraints or odd headers: ASE per frame
            yield _slow(*frames[i])
            i += 1
            continue
        counts = [frames[k][2] for k in range(i, j)]
        dtype = _ase_extxyz.parse_properties(props)[2]
        lines = [ln for k in range(i, j) for ln in frames[k][1]]
        columns = _parse_block(lines, dtype, sum(counts)) if sum(counts) else None
        if columns is None:
            for k in range(i, j):
                yield _slow(*frames[k])
        else:
            offset = 0
            for k, n in zip(range(i, j), counts, strict=True):
                yield _build(headers[k][0], props, columns, offset, offset + n)
                offset += n
        i = j


def iread_extxyz(path: str | Path, chunk: int = 256) -> Iterator[AtomsParts]:
    """Yield the frames of an extxyz file as ASE's extxyz reader would, unassembled.

    ``Frame.from_parts`` of each equals ``Frame.from_atoms`` of ASE's ``Atoms``.

    Frames are read ``chunk`` at a time (memory stays flat with file size). Files whose first
    frame is followed by ``VEC`` cell lines (ADF-style XYZ) raise :class:`VecFile` before any
    frame is yielded, for the caller to hand them to ``ase.io.iread``.
    """
    pending: list[tuple[str, list[str], int]] = []
    with open(path) as fh:
        first = True
        while True:
            line = fh.readline()
            if not line or not line.strip():
                if fh.read().strip():  # a blank line inside the file
                    yield from _chunk(pending)
                    raise _ase_extxyz.XYZError(f"unexpected blank line after frame in {path}")
                break
            try:
                natoms = int(line.split()[0])
            except ValueError:
                yield from _chunk(pending)
                raise _ase_extxyz.XYZError(
                    f"ase.io.extxyz: expected number of atoms, got {line.strip()!r}"
                ) from None
            comment = fh.readline()
            lines = [fh.readline() for _ in range(natoms)]
            if first:
                pos = fh.tell()
                peek = fh.readline()
                fh.seek(pos)
                if peek.lstrip().startswith("VEC"):
                    raise VecFile
                first = False
            if any(not ln for ln in lines):  # truncated: ASE's own error
                yield from _chunk(pending)
                yield _slow(comment, [ln for ln in lines if ln], natoms)
                return
            pending.append((comment, lines, natoms))
            if len(pending) >= chunk:
                yield from _chunk(pending)
                pending = []
    yield from _chunk(pending)


class VecFile(Exception):
    """The file carries VEC cell lines; read it with ASE."""
