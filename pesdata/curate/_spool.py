"""On-disk spool of the rows a curate run will commit.

Rows are written batch by batch as Arrow IPC files in a private directory of the store, so
memory stays flat with input size; a row can be read back (memory-mapped) to compare labels of a
later duplicate, and rows can be dropped (later copies of an id, superseded unlabelled copies,
outliers) before the one commit reads them all back.
"""

from __future__ import annotations

import shutil
import uuid
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from .._arrow import flat_values

__all__ = ["Spool"]

_OPEN_FILES = 8  # spool files kept mapped for reads of single rows


class Spool:
    """Append-only spool of structure rows under ``root/<uuid>``."""

    def __init__(self, root: Path) -> None:
        for stale in root.glob("spool-*"):  # left by a killed writer; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        self.dir = root / f"spool-{uuid.uuid4().hex}"
        self.dir.mkdir(parents=True)
        self.n_files = 0  # files 000000.arrow, 000001.arrow, ...
        self._dropped = array("q")  # packed positions (file << 32 | row), in the order dropped
        self._sorted: np.ndarray | None = None
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
        """Exclude the row at ``pos`` from the commit (8 bytes kept per dropped row)."""
        self._dropped.append((pos[0] << 32) | pos[1])
        self._sorted = None

    def dropped(self) -> np.ndarray:
        """The dropped positions, packed (``file << 32 | row``), sorted and unique."""
        if self._sorted is None:
            self._sorted = np.unique(np.frombuffer(self._dropped, dtype=np.int64))
        return self._sorted

    @property
    def n_kept(self) -> int:
        return self.n_rows - len(self.dropped())

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The kept rows, batch by batch."""
        for b in range(self.n_files):
            table = self._table(b)
            d = self.dropped()
            lo, hi = np.searchsorted(d, [b << 32, (b + 1) << 32])
            drop = (d[lo:hi] & 0xFFFFFFFF).astype(np.int64)
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
