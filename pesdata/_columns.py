"""Extra per-atom array columns (``arr_*``) of the structure table: kinds, clashes, building.

Used by :func:`pesdata.frames.frames_to_table`; the rules are documented in :mod:`pesdata.frames`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from .errors import SchemaError
from .schema import ARRAY_PREFIX, array_field, array_kind, column_kind

if TYPE_CHECKING:
    from .frames import Frame

__all__ = ["array_column", "with_array_columns"]


def _describe(kind: str, width: int | None) -> str:
    return f"{kind} (n_atoms,)" if width is None else f"{kind} (n_atoms, {width})"


def _fits(kind: str, column: str) -> bool:
    """Whether values of ``kind`` may go into a column of kind ``column`` without loss."""
    return kind == column or (kind == "int" and column == "float")


def with_array_columns(frames: Sequence[Frame], schema: pa.Schema) -> pa.Schema:
    """``schema`` with a column for every per-atom array of ``frames``; clashes raise.

    Parameters
    ----------
    frames : sequence of Frame
        The frames of one batch.
    schema : pyarrow.Schema
        The store's (or the batch's) schema so far.

    Returns
    -------
    pyarrow.Schema
        ``schema`` with an ``arr_<name>`` column appended for every new array name.

    Raises
    ------
    SchemaError
        An array's kind or width clashes with its column or with another frame of the batch;
        the message names the frame's source (``file#frame``) and both types. Also raised for
        a string array holding an empty string or one with whitespace (see
        :func:`_check_strings`).
    """
    new: dict[str, list] = {}  # name -> [kind, width, source of the first frame]
    for f in frames:
        for name, value in f.arrays.items():
            kind, width = array_kind(name, value, f.source)
            if kind == "string":
                _check_strings(name, value, f.source)
            col = ARRAY_PREFIX + name
            idx = schema.get_field_index(col)
            if idx >= 0:
                ckind, cwidth = column_kind(schema.field(idx))
                same_width = cwidth == width or (cwidth == -1 and width is not None)
                if not same_width or not _fits(kind, ckind):
                    raise SchemaError(
                        f"{f.source}: per-atom array '{name}' is {_describe(kind, width)} but "
                        f"the store's column '{col}' holds {_describe(ckind, cwidth)}; rename "
                        "the array or convert it"
                    )
                continue
            first = new.setdefault(name, [kind, width, f.source])
            if first[1] != width or not (_fits(kind, first[0]) or _fits(first[0], kind)):
                raise SchemaError(
                    f"{f.source}: per-atom array '{name}' is {_describe(kind, width)} but "
                    f"frame {first[2]} of the same batch has it as "
                    f"{_describe(first[0], first[1])}; rename the array or convert it"
                )
            if kind == "float":  # int and float in one batch: a float column
                first[0] = "float"
    for name, (kind, width, _) in new.items():
        schema = schema.append(array_field(name, kind, width))
    return schema


_WHITESPACE = re.compile(r"\s")


def _check_strings(name: str, values: np.ndarray, source: str) -> None:
    """Refuse per-atom strings that extxyz cannot hold: empty, or with whitespace in them.

    An extxyz atom line is split on whitespace, so ``'a b'`` would be read back as two tokens
    (``ase.io.read`` fails or shifts the columns) and ``''`` as none.

    Raises
    ------
    SchemaError
        Names the frame's source, the array, the first bad value (quoted, capped at 80
        characters) and its atom.
    """
    flat = np.asarray(values).reshape(-1).tolist()
    if not flat:
        return
    if isinstance(flat[0], bytes):
        flat = [v.decode("utf-8", "replace") for v in flat]
    if min(map(len, flat)) > 0 and not _WHITESPACE.search("".join(flat)):
        return
    k = next(i for i, v in enumerate(flat) if not v or _WHITESPACE.search(v))
    atom = k // (len(flat) // len(values)) if np.ndim(values) == 2 else k
    bad = flat[k]
    shown = repr(bad) if len(bad) <= 80 else f"{bad[:80]!r}... ({len(bad)} characters)"
    where = f"{source}: " if source else ""
    raise SchemaError(
        f"{where}per-atom array '{name}' holds {shown} at atom {atom}; per-atom strings must "
        "be non-empty and free of whitespace to be written to extxyz"
    )


_CONVERSION_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError)


def _leaf_values(flat: np.ndarray, leaf: pa.DataType) -> pa.Array:
    """Flat numpy values as an Arrow array of the column's leaf type."""
    if pa.types.is_string(leaf):
        return pa.array(flat.astype(object), pa.string())
    if pa.types.is_floating(leaf):
        return pa.array(flat.astype(np.float64), type=leaf)
    return pa.array(flat, type=leaf)  # int64 (overflow of uint64 values is an error) or bool


def _converts(values: np.ndarray, leaf: pa.DataType) -> bool:
    """Whether one frame's values convert to ``leaf`` (to name the frame that does not)."""
    try:
        _leaf_values(values.reshape(-1), leaf)
    except _CONVERSION_ERRORS:
        return False
    return True


def array_column(fld: pa.Field, frames: Sequence[Frame], n: np.ndarray) -> pa.Array:
    """One extra per-atom array column, built from concatenated numpy values.

    Kinds and widths were checked by :func:`with_array_columns`.

    Parameters
    ----------
    fld : pyarrow.Field
        The ``arr_<name>`` column.
    frames : sequence of Frame
        The frames of the batch; those without the array get a null.
    n : numpy.ndarray of int
        Atom count of each frame.

    Returns
    -------
    pyarrow.ListArray

    Raises
    ------
    SchemaError
        Values that do not convert to the column's type (a uint64 beyond int64, say); the
        message names the first failing frame's source.
    """
    name = fld.name[len(ARRAY_PREFIX) :]
    vtype = fld.type.value_type
    width = vtype.list_size if pa.types.is_fixed_size_list(vtype) else None
    nested = pa.types.is_list(vtype)  # k strings per atom, one variable list each
    leaf = vtype.value_type if width or nested else vtype
    values = [f.arrays.get(name) for f in frames]
    present = np.array([v is not None for v in values], dtype=bool)
    if not present.any():
        return pa.nulls(len(frames), fld.type)
    arrays = [np.asarray(v) for v in values if v is not None]
    try:
        flat = _leaf_values(np.concatenate([v.reshape(-1) for v in arrays]), leaf)
    except _CONVERSION_ERRORS as exc:
        bad = next(
            (f for f, v in zip(frames, values, strict=True)
             if v is not None and not _converts(np.asarray(v), leaf)),
            None,
        )
        where = f"{bad.source}: " if bad is not None else ""
        raise SchemaError(
            f"{where}per-atom array '{name}' does not fit column type {vtype}: {exc}"
        ) from exc
    if width:
        flat = pa.FixedSizeListArray.from_arrays(flat, width)
    elif nested:
        lengths = np.concatenate([np.full(len(v), v.shape[1]) for v in arrays])
        inner = np.zeros(len(lengths) + 1, dtype=np.int32)
        np.cumsum(lengths, out=inner[1:])
        flat = pa.ListArray.from_arrays(pa.array(inner), flat)
    offsets = np.zeros(len(frames) + 1, dtype=np.int32)
    np.cumsum(np.where(present, n, 0), out=offsets[1:])
    mask = None if present.all() else pa.array(~present)
    return pa.ListArray.from_arrays(pa.array(offsets), flat, mask=mask)
