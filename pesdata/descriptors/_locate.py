"""Where each structure of a version lies in the descriptor cache, found in bounded memory.

``describe`` must know which structures of a version are not cached yet, and
:class:`~pesdata.descriptors._stream.DescriptorStream` where each one's rows are: both join the
version's rows (in row order) with the cache index (one entry per cached structure, in file
order, keyed by id). Held as sorted arrays that join costs 32 bytes per cached structure plus
12 per row of the version: 3.5 GB for 10⁸ structures. :func:`locate` bounds it by a constant
instead, with a partitioned (grace) hash join spilled to a temporary directory once either side
has more than :data:`MEM_ENTRIES` entries:

1. the index entries are split by the leading bits of their id into ``P`` partition files, in
   file order (so the first entry of an id still wins), 36 bytes each;
2. the version's rows (id, row, atom count) are split the same way, 32 bytes each;
3. partition by partition, both sides are joined in memory (a binary search over the sorted
   index part) and each row's location is written to the file of its window of rows;
4. window by window, the locations are put in row order and appended to one file of 12 bytes
   per row, which :meth:`Locations.read` serves a range at a time.

The temporary directory is the system's (``$TMPDIR``; point it at a disk, not a RAM-backed
``tmpfs``, for large versions): select reads the store without writing to it, so a read-only
store works. It is removed by :meth:`Locations.close` or when the object is collected.

``P`` and the windows are sized so that no step holds more than :data:`MEM_ENTRIES` entries of a
side (a few tens of MB); the disk traffic is about 100 bytes per structure. Ids are 128-bit
digests, so partitions come out even (up to 2¹⁶ of them: bounded up to 1.7·10¹⁰ entries a side).
Below the limit the same steps run on arrays in memory.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._ids import fixed_width, id_keys, sorted_positions
from .._spill import Parts, key_part, part_bits
from ..errors import from_os_error
from ._index import index_files, iter_index

__all__ = ["LOCATION", "MEM_ENTRIES", "Locations", "Mismatch", "locate"]

#: A row's location: segment code (-1: not cached) and its first row in the segment.
LOCATION = np.dtype([("code", "<i4"), ("first", "<i8")])
#: Entries of one side (index or version) joined in memory at a time.
MEM_ENTRIES = 1 << 18
#: Version rows read per table scan batch.
SCAN_ROWS = 65_536

_INDEX_REC = np.dtype([("key", "S16"), ("code", "<i4"), ("first", "<i8"), ("n", "<i8")])
_ROW_REC = np.dtype([("key", "S16"), ("row", "<i8"), ("n", "<i8")])
_OUT_REC = np.dtype([("row", "<i8"), ("code", "<i4"), ("first", "<i8")])


@dataclass(frozen=True)
class Mismatch:
    """The first row (in row order) whose cached atom count differs from the table's."""

    row: int
    id: str
    segment: str
    cached: int
    table: int


class Locations:
    """Each row's :data:`LOCATION`, in the version's row order.

    Attributes
    ----------
    version : int or None
        The version joined (the snapshot's ``version``).
    n_rows, n_atoms : int
        Rows (structures) of the version and their atoms.
    missing : int
        Rows with no cache entry (code -1).
    mismatch : Mismatch or None
        The first row whose cached atom count is not the table's.
    segments : numpy.ndarray of object
        Segment names; codes index into it.
    """

    def __init__(self, n_rows: int, n_atoms: int, missing: int, mismatch: Mismatch | None,
                 segments: np.ndarray, data: np.ndarray | None = None,
                 tmp: tempfile.TemporaryDirectory | None = None) -> None:
        self.n_rows, self.n_atoms, self.missing = n_rows, n_atoms, missing
        self.mismatch, self.segments = mismatch, segments
        self._data, self._tmp = data, tmp
        self.version: int | None = None

    @property
    def spilled(self) -> bool:
        """Whether the locations live in a file (the join was spilled)."""
        return self._tmp is not None

    def read(self, lo: int, hi: int) -> np.ndarray:
        """The locations of rows ``lo`` to ``hi`` (exclusive)."""
        lo, hi = max(0, lo), min(hi, self.n_rows)
        if hi <= lo:
            return np.zeros(0, LOCATION)
        if self._data is not None:
            return self._data[lo:hi]
        return np.fromfile(Path(self._tmp.name) / "locations", dtype=LOCATION, count=hi - lo,
                           offset=lo * LOCATION.itemsize)

    def close(self) -> None:
        """Remove the spill directory (also done when the object is collected)."""
        if self._tmp is not None:
            self._tmp.cleanup()


def locate(snapshot, root: Path, mem_entries: int | None = None,
           spill_dir: str | Path | None = None) -> Locations:
    """Join a version's rows with a descriptor group's cache index.

    Parameters
    ----------
    snapshot : pesdata.store.Snapshot
        The version (its ``id`` and ``n_atoms`` columns are scanned once).
    root : Path
        The descriptor group's directory.
    mem_entries : int, optional
        Entries of one side held at a time (default :data:`MEM_ENTRIES`, see the module doc);
        the join is spilled to disk when either side is larger.
    spill_dir : str or Path, optional
        Where the temporary directory goes (default: the system's, ``$TMPDIR``).

    Returns
    -------
    Locations

    Raises
    ------
    StoreCorruptError
        An index file is unreadable or lacks a column.
    DiskFull, StoreReadOnly
        The temporary directory is full or not writable.
    """
    mem_entries = MEM_ENTRIES if mem_entries is None else max(1, int(mem_entries))
    files, n_index = index_files(root)
    n_rows = len(snapshot)
    bits = max(part_bits(n_index, mem_entries), part_bits(n_rows, mem_entries))
    wbits = max(0, int(mem_entries).bit_length() - 1)  # rows per window: 2**wbits
    tmp = None
    try:
        if bits:
            tmp = tempfile.TemporaryDirectory(prefix="pesdata-locate-", dir=spill_dir)
        out = _join(snapshot, files, n_rows, bits, wbits, tmp)
        out.version = getattr(snapshot, "version", None)
        return out
    except BaseException as exc:
        if tmp is not None:
            tmp.cleanup()
        where = tmp.name if tmp is not None else (spill_dir or tempfile.gettempdir())
        new = from_os_error(exc, f"{where} (the temporary files of the descriptor cache join; "
                                 f"set TMPDIR elsewhere)")
        if new is not None:
            raise new from exc
        raise


def _join(snapshot, files, n_rows: int, bits: int, wbits: int, tmp) -> Locations:
    spill = None if tmp is None else Path(tmp.name)
    parts = 1 << bits
    segments: dict[str, int] = {}
    index = Parts(parts, _INDEX_REC, spill and spill / "index")
    for keys, codes, first, n in iter_index(files, segments):  # 1. the index, partitioned
        rec = np.empty(len(keys), _INDEX_REC)
        rec["key"], rec["code"], rec["first"], rec["n"] = keys, codes, first, n
        index.add(key_part(keys, bits), rec)
    rows = Parts(parts, _ROW_REC, spill and spill / "rows")
    at = n_atoms = 0
    for batch in snapshot.batches(["id", "n_atoms"], SCAN_ROWS):  # 2. the version's rows
        keys = id_keys(fixed_width(batch.column(0)))
        rec = np.empty(len(keys), _ROW_REC)
        rec["key"], rec["row"], rec["n"] = keys, np.arange(at, at + len(keys)), \
            batch.column(1).to_numpy()
        n_atoms += int(rec["n"].sum())
        at += len(keys)
        rows.add(key_part(keys, bits), rec)
    names = np.array(list(segments), dtype=object)
    windows = max(1, -(-n_rows // (1 << wbits))) if spill is not None else 1
    out = Parts(windows, _OUT_REC, spill and spill / "out")
    missing, mismatch = 0, None
    for p in range(parts):  # 3. joined partition by partition
        idx = index.take(p)
        idx = idx[np.argsort(idx["key"], kind="stable")]  # equal ids: the first entry wins
        if len(idx):
            idx = idx[np.r_[True, idx["key"][1:] != idx["key"][:-1]]]
        mine = rows.take(p)
        pos = sorted_positions(idx["key"], mine["key"])
        found = pos >= 0
        hit = idx[np.maximum(pos, 0)] if len(idx) else np.zeros(len(mine), _INDEX_REC)
        missing += int((~found).sum())
        bad = np.flatnonzero(found & (hit["n"] != mine["n"]))
        if len(bad):
            b = bad[np.argmin(mine["row"][bad])]
            if mismatch is None or int(mine["row"][b]) < mismatch.row:
                key = mine["key"][b:b + 1].view(np.uint8).tobytes().hex()
                mismatch = Mismatch(int(mine["row"][b]), key, str(names[hit["code"][b]]),
                                    int(hit["n"][b]), int(mine["n"][b]))
        rec = np.empty(len(mine), _OUT_REC)
        rec["row"] = mine["row"]
        rec["code"] = np.where(found, hit["code"], -1)
        rec["first"] = np.where(found, hit["first"], 0)
        out.add(rec["row"] >> wbits if windows > 1 else np.zeros(len(rec), np.int64), rec)
    if spill is None:  # 4. in row order
        rec = out.take(0)
        data = np.empty(n_rows, LOCATION)
        data["code"][rec["row"]], data["first"][rec["row"]] = rec["code"], rec["first"]
        return Locations(n_rows, n_atoms, missing, mismatch, names, data=data)
    with open(spill / "locations", "wb") as fh:
        for w in range(windows):
            rec = out.take(w)
            lo = w << wbits
            loc = np.empty(min(n_rows - lo, 1 << wbits), LOCATION)
            loc["code"][rec["row"] - lo], loc["first"][rec["row"] - lo] = rec["code"], \
                rec["first"]
            fh.write(loc.tobytes())
    return Locations(n_rows, n_atoms, missing, mismatch, names, tmp=tmp)

