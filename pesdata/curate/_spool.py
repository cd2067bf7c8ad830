"""On-disk spool of the rows a curate run will commit.

Rows are written batch by batch as Arrow IPC files in a private directory of the store, so
memory stays flat with input size; a row can be read back (memory-mapped) to compare labels of a
later duplicate, and rows can be dropped (outliers, superseded unlabelled copies) before the one
commit reads them all back.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from .._arrow import flat_values

__all__ = ["Spool"]


class Spool:
    """Append-only spool of structure rows under ``root/<uuid>``."""

    def __init__(self, root: Path) -> None:
        for stale in root.glob("spool-*"):  # left by a killed writer; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        self.dir = root / f"spool-{uuid.uuid4().hex}"
        self.dir.mkdir(parents=True)
        self.files: list[Path] = []
        self.dropped: set[tuple[int, int]] = set()
        self.schema: pa.Schema | None = None
        self.n_rows = 0
        self._cache: tuple[int, pa.Table] | None = None

    def append(self, table: pa.Table) -> list[tuple[int, int]]:
        """Write ``table`` as the next spool file; return the (file, row) position of each row."""
        b = len(self.files)
        path = self.dir / f"{b:06d}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        self.files.append(path)
        self.schema = table.schema
        self.n_rows += table.num_rows
        return [(b, r) for r in range(table.num_rows)]

    def _table(self, b: int) -> pa.Table:
        if self._cache is None or self._cache[0] != b:
            source = pa.memory_map(str(self.files[b]))
            self._cache = (b, pa.ipc.open_file(source).read_all())
        return self._cache[1]

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

    def drop(self, pos: tuple[int, int]) -> None:
        """Exclude the row at ``pos`` from the commit."""
        self.dropped.add(pos)

    @property
    def n_kept(self) -> int:
        return self.n_rows - len(self.dropped)

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The kept rows, batch by batch."""
        for b in range(len(self.files)):
            table = self._table(b)
            drop = [r for (fb, r) in self.dropped if fb == b]
            if drop:
                keep = np.ones(table.num_rows, dtype=bool)
                keep[drop] = False
                table = table.filter(pa.array(keep))
            yield from table.to_batches()
        self._cache = None

    def close(self) -> None:
        """Remove the spool directory."""
        self._cache = None
        shutil.rmtree(self.dir, ignore_errors=True)
