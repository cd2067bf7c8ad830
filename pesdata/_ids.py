"""Structure ids as 16-byte keys, and string columns as fixed-width bytes: how the joins and
logs that must not hold Python strings per structure (the descriptor cache index, curate's run
log) store, sort and search ids.

A pesdata id is a 128-bit digest written as 32 lower-case hex digits; its key is the digest
itself, half the text's size, and keys sort as the ids do. Any other string (no pesdata id is
one) is keyed by its own 128-bit BLAKE2b digest under a separate personalisation.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

__all__ = ["fixed_width", "id_key", "id_keys", "sorted_positions"]

_HEX = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
_ODD_PERSON = b"pesdata-odd-id"  # keys of ids that are not 32 hex digits (none from pesdata)


def id_key(sid: str) -> bytes:
    """One id's key (see :func:`id_keys`), without NumPy: for one id at a time."""
    if len(sid) == 32:
        try:
            key = bytes.fromhex(sid)
        except ValueError:
            key = b""
        if key.hex() == sid:
            return key
    return hashlib.blake2b(sid.encode(), digest_size=16, person=_ODD_PERSON).digest()


def fixed_width(column) -> np.ndarray:
    """A string column as fixed-width bytes, without a Python string per row when every
    value has the same length (ids are hex digests): a view of Arrow's data buffer. A chunked
    column is converted chunk by chunk (combined, its offsets would overflow at 2 GiB)."""
    if isinstance(column, pa.ChunkedArray):
        parts = [fixed_width(c) for c in column.chunks]
        if not parts:
            return np.zeros(0, "S1")
        width = max(p.dtype.itemsize for p in parts)
        return np.concatenate([p.astype(f"S{width}") for p in parts])
    arr = column
    if arr.type == pa.string() and arr.null_count == 0 and len(arr):
        offsets = np.frombuffer(arr.buffers()[1], np.int32, len(arr) + 1, arr.offset * 4)
        width = int(offsets[1] - offsets[0])
        if width > 0 and np.all(np.diff(offsets) == width):
            return np.frombuffer(arr.buffers()[2], f"S{width}", len(arr),
                                 int(offsets[0])).copy()
    # UTF-8, as the fast path's bytes are (NumPy's own "S" conversion is ASCII-only)
    return np.array([(v or "").encode() for v in arr.to_pylist()], dtype="S")


def id_keys(ids) -> np.ndarray:
    """Structure ids as 16-byte keys (``S16``) that sort, compare and search like the ids.

    A pesdata id is a 128-bit digest written as 32 lower-case hex digits; its key is the
    digest itself, half the text's size, and keys sort as the ids do. Any other string (no
    pesdata id is one) is keyed by its own 128-bit BLAKE2b digest under a separate
    personalisation, so it still has one key that nothing else shares in practice.

    Parameters
    ----------
    ids : pyarrow string array or chunked array, or numpy bytes array
        The ids.

    Returns
    -------
    numpy.ndarray of dtype S16, shape (n,)
    """
    raw = ids if isinstance(ids, np.ndarray) else fixed_width(ids)
    n = len(raw)
    out = np.zeros((n, 16), dtype=np.uint8)
    ok = np.zeros(n, dtype=bool)
    width = raw.dtype.itemsize
    if n and width >= 32:  # row by row: a wider id elsewhere in the batch changes nothing
        b = raw.view(np.uint8).reshape(n, width)
        nib = _HEX[b[:, :32]]
        ok = (nib != 255).all(axis=1) & (b[:, 32:] == 0).all(axis=1)
        out[:] = (nib[:, 0::2] << 4) | nib[:, 1::2]
    for k in np.flatnonzero(~ok):
        digest = hashlib.blake2b(bytes(raw[k]), digest_size=16, person=_ODD_PERSON).digest()
        out[k] = np.frombuffer(digest, dtype=np.uint8)
    return out.view("S16").reshape(n)


def sorted_positions(sorted_keys: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Position of each of ``q`` in ``sorted_keys`` by binary search (-1 where absent)."""
    if not len(sorted_keys):
        return np.full(len(q), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(sorted_keys, q), len(sorted_keys) - 1)
    return np.where(sorted_keys[pos] == q, pos, -1)
