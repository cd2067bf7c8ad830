"""On-disk spool of the rows a curate run will commit.

Rows are written batch by batch as Arrow IPC files in a private directory of the store, so
memory stays flat with input size; a row can be read back (memory-mapped) to compare labels of a
later duplicate, and rows can be dropped (later copies of an id, superseded unlabelled copies,
outliers) before the one commit reads them all back.
"""

from __future__ import annotations

import shutil
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from .._arrow import flat_values
from .._spill import Parts, RecordLog

__all__ = ["Spool", "pack_pos", "unpack_pos"]

_OPEN_FILES = 8  # spool files kept mapped for reads of single rows


def pack_pos(pos: tuple[int, int]) -> int:
    """A spool position (file, row) as one int64, ``file << 32 | row``; packed positions sort
    in spool order."""
    if not (0 <= pos[0] < 2**31 and 0 <= pos[1] < 2**32):
        raise ValueError(f"spool position {pos} out of range")
    return (pos[0] << 32) | pos[1]


def unpack_pos(v: int) -> tuple[int, int]:
    """The (file, row) of a packed position (:func:`pack_pos`)."""
    return int(v) >> 32, int(v) & 0xFFFFFFFF


class Spool:
    """Append-only spool of structure rows under ``root/<uuid>``."""

    def __init__(self, root: Path) -> None:
        for stale in root.glob("spool-*"):  # left by a killed writer; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        self.dir = root / f"spool-{uuid.uuid4().hex}"
        self.dir.mkdir(parents=True)
        self.n_files = 0  # files 000000.arrow, 000001.arrow, ...
        self._drops = _Drops(self.dir)
        self.schema: pa.Schema | None = None
        self.n_rows = 0
        self._cache: OrderedDict[int, pa.Table] = OrderedDict()  # the last files read

    def append(self, table: pa.Table) -> list[tuple[int, int]]:
        """Write ``table`` as the next spool file; return the (file, row) position of each row."""
        b = self.n_files
        path = self._path(b)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        self.n_files += 1
        self.schema = table.schema
        self.n_rows += table.num_rows
        return [(b, r) for r in range(table.num_rows)]

    def _path(self, b: int) -> Path:
        return self.dir / f"{b:06d}.arrow"

    def _table(self, b: int) -> pa.Table:
        table = self._cache.pop(b, None)
        if table is None:
            table = pa.ipc.open_file(pa.memory_map(str(self._path(b)))).read_all()
            if len(self._cache) >= _OPEN_FILES:
                self._cache.popitem(last=False)
        self._cache[b] = table
        return table

    def labels(self, pos: tuple[int, int]) -> tuple[float | None, np.ndarray | None, int, str]:
        """Energy, forces, n_atoms and source of the spooled row at ``pos``."""
        row = self._table(pos[0]).slice(pos[1], 1)
        energy = row.column("energy")[0].as_py()
        fcol = row.column("forces").combine_chunks()
        forces = None
        if fcol.is_valid()[0].as_py():
            flat, offs = flat_values(fcol)
            forces = flat[offs[0] : offs[1]]
        return energy, forces, row.column("n_atoms")[0].as_py(), row.column("source")[0].as_py()

    def value(self, pos: tuple[int, int], column: str):
        """One column's value of the spooled row at ``pos``."""
        return self._table(pos[0]).column(column)[pos[1]].as_py()

    def drop(self, pos: tuple[int, int]) -> None:
        """Exclude the row at ``pos`` from the commit."""
        self._drops.add(pack_pos(pos))

    def dropped(self, lo: int = 0, hi: int = 2**63 - 1) -> np.ndarray:
        """The dropped positions packed as ``file << 32 | row`` in ``[lo, hi)``, sorted, unique
        (read a range at a time: all of them may not fit)."""
        return self._drops.between(lo, hi, self.n_files)

    @property
    def n_kept(self) -> int:
        return self.n_rows - self._drops.count(self.n_files)

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The kept rows, batch by batch."""
        for b in range(self.n_files):
            table = self._table(b)
            drop = (self.dropped(b << 32, (b + 1) << 32) & 0xFFFFFFFF).astype(np.int64)
            if len(drop):
                keep = np.ones(table.num_rows, dtype=bool)
                keep[drop] = False
                table = table.filter(pa.array(keep))
            yield from table.to_batches()
        self._cache.clear()

    def close(self) -> None:
        """Remove the spool directory."""
        self._cache.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


_DROP = np.dtype([("pos", "<i8")])
_DROP_WINDOW = 1 << 18  # dropped positions sorted in memory at a time
_DROP_MEM = 1 << 16  # dropped positions kept in memory before they go to the file


class _Drops:
    """Dropped spool positions: appended in any order to a file in the spool directory (every
    :data:`_DROP_MEM`), read back sorted and unique window by window of spool files, so a run
    that drops 10⁸ duplicates does not hold them. Windows are cut by the drops' running count
    per file: each holds at most :data:`_DROP_WINDOW` positions plus one file's rows."""

    def __init__(self, dir: Path) -> None:
        self.dir = dir
        self._log = RecordLog(_DROP, dir / "drops.bin", _DROP_MEM)
        self._built: tuple | None = None  # (window of each file, windows, unique count)
        self._cache: tuple[int, np.ndarray] | None = None
        self._spill: Path | None = None
        self._builds = 0

    def add(self, packed: int) -> None:
        self._log.append((packed,))
        self._built = self._cache = None

    def _build(self, n_files: int) -> tuple:
        if self._built is not None:
            return self._built
        if self._spill is not None:  # the previous build's windows
            shutil.rmtree(self._spill, ignore_errors=True)
            self._spill = None
        per_file = np.zeros(max(n_files, 1), np.int64)
        for chunk in self._log.chunks(1 << 16):  # 1. drops per file
            files = chunk["pos"] >> 32
            per_file = np.pad(per_file, (0, max(0, int(files.max()) + 1 - len(per_file))))
            per_file += np.bincount(files, minlength=len(per_file))
        before = np.cumsum(per_file) - per_file
        window_of = np.unique(before // _DROP_WINDOW, return_inverse=True)[1].reshape(-1)
        count = int(window_of[-1]) + 1
        if self._log.spilled:
            self._builds += 1
            self._spill = self.dir / f"drops-{self._builds}"
        parts = Parts(count, _DROP, self._spill)
        for chunk in self._log.chunks(1 << 16):  # 2. into windows; 3. each sorted
            parts.add(window_of[chunk["pos"] >> 32], chunk)
        windows, total = [], 0
        for w in range(count):
            sorted_ = np.unique(parts.take(w)["pos"])
            total += len(sorted_)
            if self._spill is None:
                windows.append(sorted_)
            else:
                np.save(self._spill / f"w{w:05d}.npy", sorted_)
                windows.append(self._spill / f"w{w:05d}.npy")
        self._built = (window_of, windows, total)
        return self._built

    def _window(self, w: int, windows: list) -> np.ndarray:
        if isinstance(windows[w], np.ndarray):
            return windows[w]
        if self._cache is None or self._cache[0] != w:
            self._cache = (w, np.load(windows[w]))
        return self._cache[1]

    def count(self, n_files: int) -> int:
        return self._build(n_files)[2]

    def between(self, lo: int, hi: int, n_files: int) -> np.ndarray:
        window_of, windows, _ = self._build(n_files)
        if hi <= lo:
            return np.zeros(0, np.int64)
        last_file = len(window_of) - 1
        first = int(window_of[min(max(lo, 0) >> 32, last_file)])
        last = int(window_of[min((hi - 1) >> 32, last_file)]) if hi > 0 else -1
        out = []
        for w in range(first, last + 1):
            d = self._window(w, windows)
            a, b = np.searchsorted(d, [lo, hi])
            out.append(d[a:b])
        return np.concatenate(out) if out else np.zeros(0, np.int64)
