"""Record lists spilled to disk: the building block of the joins and group-bys that keep memory
flat in the number of structures (:mod:`pesdata.descriptors._locate`,
:mod:`pesdata.curate._population`).

A :class:`Parts` is ``n`` append-only lists of NumPy records, kept in memory when the caller
knows they are small and as one raw file each otherwise: records are appended in batches (each
routed to its part), and a part is taken back whole, in the order it was appended, once the
caller has bounded its size (by partitioning on a hash or a row window).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["Parts", "RecordLog", "key_part", "part_bits"]


def part_bits(n: int, limit: int) -> int:
    """Fewest leading key bits (≤ 16) that split ``n`` uniformly spread keys into parts of at
    most ``limit``: ``n ≤ limit · 2**bits``."""
    bits = 0
    while bits < 16 and n > limit << bits:
        bits += 1
    return bits


def key_part(keys: np.ndarray, bits: int) -> np.ndarray:
    """The part of each 16-byte key (``S16``, e.g. a structure id's digest): its leading
    ``bits`` bits."""
    if bits == 0:
        return np.zeros(len(keys), np.int64)
    b = np.ascontiguousarray(keys).view(np.uint8).reshape(-1, 16)
    return ((b[:, 0].astype(np.int64) << 8) | b[:, 1]) >> (16 - bits)


class Parts:
    """``n`` append-only record lists, in memory or as files under ``dir``."""

    def __init__(self, n: int, dtype: np.dtype, dir: Path | None) -> None:
        self.n, self.dtype, self.dir = n, dtype, dir
        self._mem: list[list[np.ndarray]] | None = [[] for _ in range(n)] if dir is None else None
        if dir is not None:
            dir.mkdir()

    def add(self, part: np.ndarray, recs: np.ndarray) -> None:
        """Append ``recs[i]`` to part ``part[i]`` (order within a part kept)."""
        if len(part) and (int(part.min()) < 0 or int(part.max()) >= self.n):
            raise ValueError(f"part out of range 0..{self.n - 1}")
        if self.n == 1:
            groups = [(0, recs)]
        else:
            order = np.argsort(part, kind="stable")
            bounds = np.searchsorted(part[order], np.arange(self.n + 1))
            groups = [(p, recs[order[bounds[p]:bounds[p + 1]]]) for p in range(self.n)
                      if bounds[p + 1] > bounds[p]]
        for p, chunk in groups:
            if self._mem is not None:
                self._mem[p].append(chunk)
            else:
                with open(self.dir / f"{p:05d}", "ab") as fh:
                    fh.write(chunk.tobytes())

    def take(self, p: int) -> np.ndarray:
        """Part ``p``'s records (its memory or file is released)."""
        if self._mem is not None:
            chunks, self._mem[p] = self._mem[p], []
            return np.concatenate(chunks) if chunks else np.zeros(0, self.dtype)
        path = self.dir / f"{p:05d}"
        if not path.exists():
            return np.zeros(0, self.dtype)
        out = np.fromfile(path, dtype=self.dtype)
        path.unlink()
        return out

    def size(self, p: int) -> int:
        """Records in part ``p``."""
        if self._mem is not None:
            return sum(len(c) for c in self._mem[p])
        path = self.dir / f"{p:05d}"
        return path.stat().st_size // self.dtype.itemsize if path.exists() else 0

    def chunks(self, p: int, rows: int):
        """Part ``p``'s records, ``rows`` at a time, in order (the part is kept)."""
        if self._mem is not None:
            yield from self._mem[p]
            return
        path = self.dir / f"{p:05d}"
        n = self.size(p)
        for lo in range(0, n, rows):
            yield np.fromfile(path, dtype=self.dtype, count=min(rows, n - lo),
                              offset=lo * self.dtype.itemsize)


class RecordLog:
    """An append-only list of NumPy records that goes to ``path`` every ``mem_rows`` records
    (kept in memory, growing, when ``path`` is None).

    Parameters
    ----------
    dtype : numpy.dtype
        The records' dtype.
    path : Path, optional
        The file (created on the first flush, appended to after).
    mem_rows : int
        Records buffered before a flush.
    """

    def __init__(self, dtype: np.dtype, path: Path | None, mem_rows: int) -> None:
        self.dtype, self.path = np.dtype(dtype), path
        self._buf = np.empty(max(1, int(mem_rows)), self.dtype)
        self._n_buf = self._n_file = 0

    def __len__(self) -> int:
        return self._n_file + self._n_buf

    @property
    def spilled(self) -> bool:
        """Whether some records are in the file."""
        return self._n_file > 0

    def append(self, record: tuple) -> None:
        """Append one record (a tuple in the dtype's field order)."""
        if self._n_buf == len(self._buf):
            if self.path is None:
                self._buf = np.resize(self._buf, 2 * len(self._buf))
            else:
                with open(self.path, "ab") as fh:
                    fh.write(self._buf.tobytes())
                self._n_file += self._n_buf
                self._n_buf = 0
        self._buf[self._n_buf] = record
        self._n_buf += 1

    def __getitem__(self, idx: int) -> np.void:
        if not 0 <= idx < len(self):
            raise IndexError(idx)
        if idx < self._n_file:
            return np.fromfile(self.path, dtype=self.dtype, count=1,
                               offset=idx * self.dtype.itemsize)[0]
        return self._buf[idx - self._n_file]

    def chunks(self, rows: int):
        """All records, ``rows`` at a time, in order (the file's, then the buffer's)."""
        for lo in range(0, self._n_file, rows):
            yield np.fromfile(self.path, dtype=self.dtype, count=min(rows, self._n_file - lo),
                              offset=lo * self.dtype.itemsize)
        if self._n_buf:
            yield self._buf[:self._n_buf]
