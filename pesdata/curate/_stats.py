"""What a curate run remembers per spooled row, kept compact.

A run must remember every row it spooled: which ids it has seen (duplicates within the run) and
the scalars the population (outlier) validators compare once all rows are in. Kept as Python
objects (an id string, a :class:`~pesdata.curate.dedup.Seen`, a position tuple, a source string
and a population key per row) that cost ~750 bytes per structure, so a million-frame curate
grew by ~0.7 GB. Here a row costs one dict entry (16-byte id digest → packed int, ~130 bytes) in
:class:`SeenIndex` and 29 bytes of typed arrays in :class:`RunStats`; the source of a rejected
outlier is read back from the spool.
"""

from __future__ import annotations

from array import array

import numpy as np

from .dedup import Seen

__all__ = ["RunStats", "SeenIndex"]

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


class SeenIndex:
    """id → :class:`Seen` for the rows a run has spooled (a mapping of the calls
    :func:`~pesdata.curate.dedup.classify` makes: ``get``, ``in``, ``[id] =``, ``del``)."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: dict = {}

    @staticmethod
    def _key(sid: str):
        try:
            return bytes.fromhex(sid)  # ids are hex digests: 16 bytes instead of a 32-char str
        except ValueError:
            return sid

    def get(self, sid: str) -> Seen | None:
        v = self._rows.get(self._key(sid))
        return None if v is None else Seen(*_unpack(v))

    def __contains__(self, sid: str) -> bool:
        return self._key(sid) in self._rows

    def __setitem__(self, sid: str, seen: Seen) -> None:
        self._rows[self._key(sid)] = _pack(seen.pos, seen.labelled, seen.kind)

    def __delitem__(self, sid: str) -> None:
        del self._rows[self._key(sid)]

    def __len__(self) -> int:
        return len(self._rows)


class RunStats:
    """Per spooled row: spool position, kind, population, largest force, energy per atom."""

    def __init__(self) -> None:
        self._pos = array("q")
        self._group = array("i")
        self._fmax = array("d")
        self._energy = array("d")
        self.keys: list[str] = []  # population keys, in order of first appearance
        self.populations: dict[str, dict] = {}  # key → its fields (method, composition, ...)
        self._key_index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._pos)

    def record(self, pos: tuple[int, int], kind: str, key: str, population: dict,
               fmax: float, energy_per_atom: float) -> None:
        """Remember a spooled row."""
        k = self._key_index.get(key)
        if k is None:
            k = self._key_index[key] = len(self.keys)
            self.keys.append(key)
            self.populations[key] = population
        self._pos.append(_pack(pos, False, kind))
        self._group.append(k)
        self._fmax.append(fmax)
        self._energy.append(energy_per_atom)

    def row(self, idx: int) -> tuple[tuple[int, int], str]:
        """Spool position and kind of row ``idx``."""
        pos, _, kind = _unpack(self._pos[idx])
        return pos, kind

    def arrays(self) -> dict:
        """What the population validators read: ``group`` (object array of keys), ``fmax``,
        ``energy_per_atom`` and ``populations``."""
        keys = np.array(self.keys, dtype=object)
        return {"group": keys[np.frombuffer(self._group, dtype=np.int32)],
                "fmax": np.frombuffer(self._fmax, dtype=float),
                "energy_per_atom": np.frombuffer(self._energy, dtype=float),
                "populations": self.populations}
