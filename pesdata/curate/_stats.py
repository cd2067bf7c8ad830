"""What a curate run remembers per spooled row for the population (outlier) validators.

The validators compare each row's largest force and energy per atom with its population's
once all rows are in. :class:`RunStats` keeps them as 28-byte records (packed spool position
and kind, population code, the two statistics) that go to a file in the spool directory every
65,536 rows; :mod:`pesdata.curate._population` reads them back in bounded memory. The source
of a rejected outlier is read back from the spool. (The ids a run has seen are logged the same
way: :class:`pesdata.curate.dedup.RunIds`.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .._spill import RecordLog
from ._spool import pack_pos, unpack_pos

__all__ = ["STAT_REC", "RunStats", "records_arrays"]

_KINDS = ("added", "relabelled")


def _pack(pos: tuple[int, int], kind: str) -> int:
    """A spooled row's packed position (:func:`~._spool.pack_pos`) shifted left by 2, its kind
    in the low bit: ``record >> 2`` is the spool's packed position."""
    return (pack_pos(pos) << 2) | _KINDS.index(kind)


def _unpack(v: int) -> tuple[tuple[int, int], str]:
    return unpack_pos(v >> 2), _KINDS[v & 1]


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
        self._log = RecordLog(STAT_REC, path, STAT_MEM_ROWS)
        self.keys: list[str] = []  # population keys, in order of first appearance
        self.populations: dict[str, dict] = {}  # key → its fields (method, composition, ...)
        self._key_index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._log)

    @property
    def spilled(self) -> bool:
        """Whether some rows were written to the file."""
        return self._log.spilled

    def record(self, pos: tuple[int, int], kind: str, key: str, population: dict,
               fmax: float, energy_per_atom: float) -> None:
        """Remember a spooled row."""
        k = self._key_index.get(key)
        if k is None:
            k = self._key_index[key] = len(self.keys)
            self.keys.append(key)
            self.populations[key] = population
        self._log.append((_pack(pos, kind), k, fmax, energy_per_atom))

    def row(self, idx: int) -> tuple[tuple[int, int], str]:
        """Spool position and kind of row ``idx``."""
        pos, kind = _unpack(int(self._log[idx]["pos"]))
        return pos, kind

    def chunks(self, rows: int = STAT_MEM_ROWS) -> Iterator[np.ndarray]:
        """All rows as :data:`STAT_REC` records, ``rows`` at a time (the file's, then memory's)."""
        return self._log.chunks(rows)

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
