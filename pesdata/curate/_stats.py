"""What a curate run remembers per spooled row, kept compact.

A run must remember every row it spooled: which ids it has seen (duplicates within the run) and
the scalars the population (outlier) validators compare once all rows are in. Kept as Python
objects (an id string, a :class:`~pesdata.curate.dedup.Seen`, a position tuple, a source string
and a population key per row) that cost ~750 bytes per structure, so a million-frame curate
grew by ~0.7 GB. Here a row costs 24 bytes of sorted arrays in :class:`SeenIndex` (the id's
two 64-bit halves and the packed position), and its 28 bytes of statistics in
:class:`RunStats` go to a file in the spool directory every 65,536 rows (read back by
:mod:`pesdata.curate._population` in bounded memory); the source of a rejected outlier is read
back from the spool.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .dedup import Seen

__all__ = ["STAT_REC", "RunStats", "SeenIndex", "records_arrays"]

_KINDS = ("added", "relabelled")
_ROW_BITS = 32


def _pack(pos: tuple[int, int], labelled: bool, kind: str) -> int:
    b, r = pos
    if not 0 <= r < 2**_ROW_BITS:
        raise ValueError(f"spool row {r} out of range")
    return (b << (_ROW_BITS + 2)) | (r << 2) | (2 if labelled else 0) | _KINDS.index(kind)


def _unpack(v: int) -> tuple[tuple[int, int], bool, str]:
    return ((v >> (_ROW_BITS + 2), (v >> 2) & (2**_ROW_BITS - 1)), bool(v & 2),
            _KINDS[v & 1])


_MEM_ROWS = 1 << 16  # ids kept in a dict before they are sorted into a run
_MAX_RUN = 1 << 20  # runs merge up to this many rows (24 MB); larger ones stay apart
_DELETED = -1


def _hi_lo(keys: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """The two big-endian 64-bit halves of 16-byte keys, as native uint64 arrays."""
    both = np.frombuffer(b"".join(keys), dtype=">u8").reshape(-1, 2)
    return both[:, 0].astype(np.uint64), both[:, 1].astype(np.uint64)


class SeenIndex:
    """id → :class:`Seen` for the rows a run has spooled (a mapping of the calls
    :func:`~pesdata.curate.dedup.classify` makes: ``get``, ``in``, ``[id] =``, ``del``).

    The ids are 128-bit digests (32 lower-case hex digits; any other string is kept in a plain
    dict). The newest :data:`_MEM_ROWS` live in a dict; older ones are sorted into runs of
    three arrays (high and low 64 bits of the id, the packed :class:`Seen`), 24 bytes per row,
    merged pairwise while they stay under :data:`_MAX_RUN` rows (a merge never copies more than
    ~24 MB; 10⁸ ids make ~100 runs). A deleted row keeps its place with the value ``-1`` until
    its run is merged. :meth:`prefetch` looks a batch of ids up in all runs at once
    (vectorised), and again after a flush moves rows; any other id is looked up on its own.
    """

    __slots__ = ("_mem", "_other", "_runs", "_hits", "_batch", "_n")

    def __init__(self) -> None:
        self._mem: dict[bytes, int] = {}
        self._other: dict[str, int] = {}  # ids that are not 32 hex digits (none from pesdata)
        self._runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._hits: dict[bytes, tuple[int, int] | None] = {}  # key → (run, row), looked up
        self._batch: list[bytes] = []  # the keys of the last prefetch
        self._n = 0

    @staticmethod
    def _key(sid: str) -> bytes | None:
        """The 16-byte digest of a pesdata id (32 lower-case hex digits), else None."""
        if len(sid) != 32:
            return None
        try:
            key = bytes.fromhex(sid)
        except ValueError:
            return None
        return key if len(key) == 16 and key.hex() == sid else None  # no spaces, lower case

    def _lookup(self, keys: list[bytes]) -> dict[bytes, tuple[int, int] | None]:
        """(run, row) of each key's live entry in the runs; ``None`` where it has none."""
        found: dict[bytes, tuple[int, int] | None] = dict.fromkeys(keys)
        if not self._runs or not keys:
            return found
        hi, lo = _hi_lo(keys)
        for r, (rhi, rlo, rval) in enumerate(self._runs):
            todo = np.arange(len(keys))
            at = np.searchsorted(rhi, hi)
            while todo.size:  # rows of equal high bits follow each other (sorted by hi, lo)
                j = at[todo]
                ok = j < len(rhi)
                todo, j = todo[ok], j[ok]
                ok = rhi[j] == hi[todo]
                todo, j = todo[ok], j[ok]
                match = rlo[j] == lo[todo]
                for q, row in zip(todo[match].tolist(), j[match].tolist(), strict=True):
                    if rval[row] != _DELETED:
                        found[keys[q]] = (r, row)
                todo = todo[~match]
                at[todo] = j[~match] + 1
        return found

    def prefetch(self, sids: list[str]) -> None:
        """Look a batch of ids up in the runs at once, for the calls that follow."""
        keys = [k for k in map(self._key, sids) if k is not None]
        self._batch = list(dict.fromkeys(keys))
        self._hits = self._lookup(self._batch)

    def _find(self, key: bytes) -> tuple[int, int] | None:
        if key not in self._hits:
            self._hits.update(self._lookup([key]))
        loc = self._hits[key]
        if loc is not None and self._runs[loc[0]][2][loc[1]] == _DELETED:
            return None
        return loc

    def _value(self, sid: str) -> int | None:
        key = self._key(sid)
        if key is None:
            return self._other.get(sid)
        v = self._mem.get(key)
        if v is None:
            loc = self._find(key)
            v = None if loc is None else int(self._runs[loc[0]][2][loc[1]])
        return v

    def get(self, sid: str) -> Seen | None:
        v = self._value(sid)
        return None if v is None else Seen(*_unpack(v))

    def __contains__(self, sid: str) -> bool:
        return self._value(sid) is not None

    def __setitem__(self, sid: str, seen: Seen) -> None:
        v = _pack(seen.pos, seen.labelled, seen.kind)
        key = self._key(sid)
        if key is None:
            self._n += sid not in self._other
            self._other[sid] = v
        elif key in self._mem:
            self._mem[key] = v
        elif (loc := self._find(key)) is not None:
            self._runs[loc[0]][2][loc[1]] = v
        else:
            self._mem[key] = v
            self._n += 1
            if len(self._mem) >= _MEM_ROWS:
                self._flush()

    def __delitem__(self, sid: str) -> None:
        key = self._key(sid)
        if key is None:
            del self._other[sid]
        elif key in self._mem:
            del self._mem[key]
        elif (loc := self._find(key)) is not None:
            self._runs[loc[0]][2][loc[1]] = _DELETED
        else:
            raise KeyError(sid)
        self._n -= 1

    def __len__(self) -> int:
        return self._n

    def _flush(self) -> None:
        """Sort the dict into a new run; merge it with the last run while that is no larger."""
        hi, lo = _hi_lo(list(self._mem))
        val = np.fromiter(self._mem.values(), dtype=np.int64, count=len(self._mem))
        self._mem = {}
        while self._runs and len(self._runs[-1][0]) <= len(hi) and (
                len(self._runs[-1][0]) + len(hi) <= _MAX_RUN):
            rhi, rlo, rval = self._runs.pop()
            live = rval != _DELETED
            hi = np.concatenate([rhi[live], hi])
            lo = np.concatenate([rlo[live], lo])
            val = np.concatenate([rval[live], val])
        order = np.lexsort((lo, hi))
        self._runs.append((hi[order], lo[order], val[order]))
        self._hits = self._lookup(self._batch)  # rows moved: the batch's keys, looked up again


#: One spooled row's statistics: packed spool position and kind, population code, largest
#: force and energy per atom (28 bytes).
STAT_REC = np.dtype([("pos", "<i8"), ("group", "<i4"), ("fmax", "<f8"),
                     ("energy_per_atom", "<f8")])
#: Rows kept in memory before they are appended to the run's statistics file.
STAT_MEM_ROWS = 1 << 16


class RunStats:
    """Per spooled row: spool position, kind, population, largest force, energy per atom.

    The rows are appended to ``path`` (a file in the run's spool directory) every
    :data:`STAT_MEM_ROWS` rows, so memory does not grow with the run; without a path they stay
    in memory.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._buf = np.empty(STAT_MEM_ROWS, STAT_REC)
        self._n_buf = 0
        self._n_file = 0
        self.keys: list[str] = []  # population keys, in order of first appearance
        self.populations: dict[str, dict] = {}  # key → its fields (method, composition, ...)
        self._key_index: dict[str, int] = {}

    def __len__(self) -> int:
        return self._n_file + self._n_buf

    @property
    def spilled(self) -> bool:
        """Whether some rows were written to the file."""
        return self._n_file > 0

    def record(self, pos: tuple[int, int], kind: str, key: str, population: dict,
               fmax: float, energy_per_atom: float) -> None:
        """Remember a spooled row."""
        k = self._key_index.get(key)
        if k is None:
            k = self._key_index[key] = len(self.keys)
            self.keys.append(key)
            self.populations[key] = population
        if self._n_buf == len(self._buf):
            if self.path is None:
                self._buf = np.resize(self._buf, 2 * len(self._buf))
            else:
                self._flush()
        self._buf[self._n_buf] = (_pack(pos, False, kind), k, fmax, energy_per_atom)
        self._n_buf += 1

    def _flush(self) -> None:
        with open(self.path, "ab") as fh:
            fh.write(self._buf[:self._n_buf].tobytes())
        self._n_file += self._n_buf
        self._n_buf = 0

    def row(self, idx: int) -> tuple[tuple[int, int], str]:
        """Spool position and kind of row ``idx``."""
        if idx < self._n_file:
            rec = np.fromfile(self.path, dtype=STAT_REC, count=1,
                              offset=idx * STAT_REC.itemsize)[0]
        else:
            rec = self._buf[idx - self._n_file]
        pos, _, kind = _unpack(int(rec["pos"]))
        return pos, kind

    def chunks(self, rows: int = STAT_MEM_ROWS) -> Iterator[np.ndarray]:
        """All rows as :data:`STAT_REC` records, ``rows`` at a time (the file's, then memory's)."""
        for lo in range(0, self._n_file, rows):
            yield np.fromfile(self.path, dtype=STAT_REC, count=min(rows, self._n_file - lo),
                              offset=lo * STAT_REC.itemsize)
        if self._n_buf:
            yield self._buf[:self._n_buf]

    def arrays(self) -> dict:
        """What the population validators read, all rows at once: ``group`` (object array of
        keys), ``fmax``, ``energy_per_atom`` and ``populations``."""
        rec = np.concatenate(list(self.chunks())) if len(self) else np.zeros(0, STAT_REC)
        return records_arrays(rec, self.keys, self.populations)


def records_arrays(rec: np.ndarray, keys: list[str], populations: dict) -> dict:
    """The validators' view (see :meth:`RunStats.arrays`) of some :data:`STAT_REC` records."""
    names = np.array(keys, dtype=object)
    return {"group": names[rec["group"]] if len(names) else np.zeros(0, object),
            "fmax": np.ascontiguousarray(rec["fmax"]),
            "energy_per_atom": np.ascontiguousarray(rec["energy_per_atom"]),
            "populations": populations}
