"""The descriptor cache's index, read compactly: which structure ids a group holds, and where.

The index (``<group>/index/*.parquet``, one file per computed batch) has one entry per cached
structure: ``id``, ``segment``, ``first_row``, ``n_atoms``. Read as an Arrow table it costs
~90 bytes per structure (the id and segment name as text), and the table's copies more. Here it
is read file by file and batch by batch into preallocated NumPy arrays: the id as a 16-byte key
(its 32 hex digits decoded, :func:`id_keys`), the segment as an int32 code, the first row as
int64 and the atom count as int32: 32 bytes per cached structure, and no Arrow table of the
whole index ever in memory. Lookups are binary searches over the sorted keys
(:func:`sorted_positions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .._ids import fixed_width, id_keys, sorted_positions
from ..errors import StoreCorruptError

__all__ = ["IndexArrays", "fixed_width", "id_keys", "index_files", "iter_index",
           "read_index_arrays", "sorted_positions"]

INDEX_SCHEMA = pa.schema(
    [("id", pa.string()), ("segment", pa.string()), ("first_row", pa.int64()),
     ("n_atoms", pa.int64())]
)
READ_ROWS = 65_536  # index entries converted per batch

@dataclass
class IndexArrays:
    """A descriptor group's index entries as arrays, in file order (see the module doc).

    Attributes
    ----------
    keys : numpy.ndarray of S16
        Each entry's structure id (:func:`id_keys`).
    segments : numpy.ndarray of object
        The segment names; ``codes`` index into it (``None`` when read without locations).
    codes, first, n_atoms : numpy.ndarray or None
        Segment code (int32), first row in the segment (int64) and atom count (int32) of each
        entry (``None`` when read without locations).
    """

    keys: np.ndarray
    segments: np.ndarray | None = None
    codes: np.ndarray | None = None
    first: np.ndarray | None = None
    n_atoms: np.ndarray | None = None


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


def read_index_arrays(root: Path, locations: bool = True) -> IndexArrays:
    """Read a descriptor group's index compactly (keys only unless ``locations``).

    Raises
    ------
    StoreCorruptError
        An index file is unreadable or lacks a column (the message names it).
    """
    files, total = index_files(root, locations)
    out = IndexArrays(np.empty(total, "S16"))
    if locations:
        out.codes = np.empty(total, np.int32)
        out.first = np.empty(total, np.int64)
        out.n_atoms = np.empty(total, np.int64)
    segments: dict[str, int] | None = {} if locations else None
    at = 0
    for keys, codes, first, n_atoms in iter_index(files, segments):
        m = len(keys)
        if at + m > total:
            raise StoreCorruptError(f"{Path(root) / 'index'}: the index files hold more "
                                    f"entries than their metadata says ({total})")
        out.keys[at:at + m] = keys
        if locations:
            out.codes[at:at + m] = codes
            out.first[at:at + m] = first
            out.n_atoms[at:at + m] = n_atoms
        at += m
    if at != total:
        raise StoreCorruptError(f"{Path(root) / 'index'}: the index files hold {at} entries, "
                                f"their metadata {total}")
    if locations:
        out.segments = np.array(list(segments), dtype=object)
    return out
