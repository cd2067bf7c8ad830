"""Small Arrow ⇄ numpy helpers for the nested list columns of the structure table."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["flat_values", "fsl_values", "list_array"]


def list_array(values: np.ndarray, counts: np.ndarray, width: int | None, mask=None) -> pa.Array:
    """List<(fixed_size_list<)T(, width>)> from concatenated rows and per-structure counts."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    inner = pa.array(values.reshape(-1))
    if width is not None:
        inner = pa.FixedSizeListArray.from_arrays(inner, width)
    mask_arr = None if mask is None else pa.array(mask, type=pa.bool_())
    return pa.ListArray.from_arrays(pa.array(offsets), inner, mask=mask_arr)


def flat_values(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Values and offsets of a (possibly nested) list column, one chunk.

    Rows of ``list<fixed_size_list<T, k>>`` and of ``list<list<T>>`` (with the same length
    ``k`` everywhere) come as an ``(n, k)`` array; ragged inner lists as an object array of
    1-D arrays, one per atom.
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    offsets = col.offsets.to_numpy()
    values = col.values
    if pa.types.is_fixed_size_list(values.type):
        width = values.type.list_size
        flat = values.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
    elif pa.types.is_list(values.type):  # k values per atom as variable lists (strings)
        lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
        leaf = values.flatten().to_numpy(zero_copy_only=False)
        if lengths.size == 0 or (lengths == lengths[0]).all():
            flat = leaf.reshape(len(lengths), -1 if lengths.size and lengths[0] else 0)
        else:  # widths differ between rows: one array per atom
            flat = np.empty(len(lengths), dtype=object)
            flat[:] = np.split(leaf, np.cumsum(lengths)[:-1])
    else:
        flat = values.to_numpy(zero_copy_only=False)
    return flat, offsets


def fsl_values(col: pa.Array, width: int) -> np.ndarray:
    """All slots of a fixed-size-list array (null rows included) as an (n, width) array."""
    values = col.values.slice(col.offset * width, len(col) * width)
    return values.to_numpy(zero_copy_only=False).reshape(-1, width)
