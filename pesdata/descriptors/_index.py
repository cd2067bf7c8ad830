"""The descriptor cache's index, read compactly: which structure ids a group holds, and where.

The index (``<group>/index/*.parquet``, one file per computed batch) has one entry per cached
structure: ``id``, ``segment``, ``first_row``, ``n_atoms``. Read as an Arrow table it costs
~90 bytes per structure (the id and segment name as text), and the table's copies more. Here it
is read file by file (:func:`index_files`: the footers first) and batch by batch
(:func:`iter_index`) as arrays: the id as a 16-byte key (:func:`pesdata._ids.id_keys`), the
segment as an int32 code, the first row and the atom count as int64. The join that uses them
is :func:`pesdata.descriptors._locate.locate`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .._ids import id_keys
from ..errors import StoreCorruptError

__all__ = ["INDEX_SCHEMA", "index_files", "iter_index"]

INDEX_SCHEMA = pa.schema(
    [("id", pa.string()), ("segment", pa.string()), ("first_row", pa.int64()),
     ("n_atoms", pa.int64())]
)
READ_ROWS = 65_536  # index entries converted per batch

def index_files(root: Path, locations: bool = True) -> tuple[list[Path], int]:
    """A descriptor group's index files, in order, and their total number of entries (from the
    Parquet footers; one file open at a time, there are thousands).

    Raises
    ------
    StoreCorruptError
        An index file is unreadable or lacks a column (the message names it).
    """
    files = sorted((Path(root) / "index").glob("*.parquet"))
    names = set(INDEX_SCHEMA.names if locations else ("id",))
    total = 0
    for f in files:
        try:
            meta = pq.read_metadata(f)
            missing = names - set(meta.schema.to_arrow_schema().names)
            total += meta.num_rows
        except (OSError, pa.ArrowException) as exc:
            raise StoreCorruptError(f"{f}: unreadable descriptor cache index ({exc})") from exc
        if missing:
            raise StoreCorruptError(f"{f}: unreadable descriptor cache index (no column(s) "
                                    f"{', '.join(sorted(missing))})")
    return files, total


def iter_index(files: list[Path], segments: dict[str, int] | None = None):
    """The entries of ``files`` in order, :data:`READ_ROWS` at a time, as arrays.

    Parameters
    ----------
    files : list of Path
        Index files (:func:`index_files`).
    segments : dict, optional
        Segment name → code, filled as names are met; ``None``: keys only.

    Yields
    ------
    (keys, codes, first, n_atoms)
        ``S16`` keys (:func:`id_keys`); with ``segments``, int32 segment codes, int64 first rows
        and int64 atom counts, else ``None`` for the three.

    Raises
    ------
    StoreCorruptError
        An index file is unreadable (the message names it).
    """
    names = list(INDEX_SCHEMA.names if segments is not None else ("id",))
    for f in files:
        try:
            with pq.ParquetFile(f) as pf:
                for batch in pf.iter_batches(batch_size=READ_ROWS, columns=names):
                    keys = id_keys(batch.column("id").cast(pa.string()))
                    if segments is None:
                        yield keys, None, None, None
                        continue
                    seg = pc.dictionary_encode(batch.column("segment").cast(pa.string()))
                    local = np.array([segments.setdefault(s, len(segments))
                                      for s in seg.dictionary.to_pylist()], dtype=np.int32)
                    yield (keys, local[seg.indices.to_numpy()],
                           batch.column("first_row").cast(pa.int64()).to_numpy(),
                           batch.column("n_atoms").cast(pa.int64()).to_numpy())
        except (OSError, KeyError, pa.ArrowException) as exc:
            raise StoreCorruptError(f"{f}: unreadable descriptor cache index ({exc})") from exc
