"""Read-only view of one store version."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import lance
import numpy as np
import pyarrow as pa

from .._arrow import flat_values, fsl_values
from ..errors import ParameterError, PesdataError, StoreCorruptError

if TYPE_CHECKING:  # imported where used: `pesdata info/log/diff` need neither
    import ase
    import pandas as pd

__all__ = ["ArrayCache", "Snapshot"]

CREATED = "_row_created_at_version"
UPDATED = "_row_last_updated_at_version"
_READS = ("to_table", "to_batches", "take", "count_rows")
#: Lance scanner options of :meth:`Snapshot.batches`, the flat-memory scan.
SCAN_OPTIONS = {"fragment_readahead": 1, "batch_readahead": 2, "io_buffer_size": 16 << 20}


def _translate(exc: Exception, ds: lance.LanceDataset) -> Exception | None:
    """pesdata's error for a Lance read error (None: let it through as it is).

    Lance reports damaged or missing data files as Arrow or OS errors ("External error: Not
    found", "failed to fill whole buffer") and a bad column or filter as a plain ValueError
    ("Invalid user input").
    """
    if isinstance(exc, PesdataError):
        return None
    text = " ".join(str(exc).split())
    text = text if len(text) <= 300 else text[:300] + "..."
    if "Invalid user input" in text and isinstance(exc, (ValueError, OSError)):
        return ParameterError(f"bad column or filter for version {ds.version}: {text}")
    if isinstance(exc, (pa.ArrowException, OSError)):
        return StoreCorruptError(
            f"{ds.uri}: version {ds.version}: the table's data files cannot be read ({text})"
        )
    return None


class _CheckedReads:
    """A snapshot's Lance dataset whose reads raise pesdata's errors (see :func:`_translate`)."""

    def __init__(self, ds: lance.LanceDataset) -> None:
        self._ds = ds

    def __getattr__(self, name: str):
        attr = getattr(self._ds, name)
        if name not in _READS:
            return attr

        def read(*args, **kwargs):
            try:
                out = attr(*args, **kwargs)
            except Exception as exc:
                new = _translate(exc, self._ds)
                if new is None:
                    raise
                raise new from exc
            return self._batches(out) if name == "to_batches" else out

        return read

    def _batches(self, batches):
        try:
            yield from batches
        except Exception as exc:
            new = _translate(exc, self._ds)
            if new is None:
                raise
            raise new from exc


class Snapshot:
    """An immutable version of a store.

    Obtain one with :meth:`pesdata.Store.read`. Rows keep a stable order within a version;
    ``take`` indexes into that order.
    """

    def __init__(self, dataset: lance.LanceDataset, tag: str | None = None) -> None:
        self._raw = dataset
        self._ds = _CheckedReads(dataset)
        self.version: int = dataset.version
        self.tag = tag
        self._ids: list[str] | None = None

    def __repr__(self) -> str:
        return f"Snapshot(version={self.version}, n_structures={len(self)})"

    def __len__(self) -> int:
        return self._ds.count_rows()

    @property
    def dataset(self) -> lance.LanceDataset:
        """The underlying Lance dataset (read-only use; its errors are Lance's own)."""
        return self._raw

    def count(self, filter: str | None = None) -> int:
        """Number of structures, or of those matching a Lance SQL ``filter``.

        Parameters
        ----------
        filter : str, optional
            E.g. ``"energy IS NOT NULL"``.

        Returns
        -------
        int

        Raises
        ------
        ParameterError
            The filter names an unknown column or does not parse.
        StoreCorruptError
            The version's data files cannot be read.
        """
        return self._ds.count_rows(filter=_check_filter(filter))

    @property
    def ids(self) -> list[str]:
        """Structure ids in row order."""
        if self._ids is None:
            self._ids = self._ds.to_table(columns=["id"]).column("id").to_pylist()
        return self._ids

    def table(self, columns: Sequence[str] | None = None, filter: str | None = None) -> pa.Table:
        """The version as an Arrow table.

        Parameters
        ----------
        columns : sequence of str, optional
            Columns to read (default all).
        filter : str, optional
            A Lance SQL filter, e.g. ``"energy IS NOT NULL"``.

        Returns
        -------
        pyarrow.Table
        """
        if columns:
            columns = list(columns)
            names = self._raw.schema.names
            for c in columns:
                if c not in names and not c.startswith("_row"):  # Lance's row metadata
                    raise ParameterError(f"unknown column {c!r:.200}; columns: {', '.join(names)}")
        return self._ds.to_table(columns=columns or None, filter=_check_filter(filter))

    def batches(self, columns: Sequence[str], batch_size: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Stream ``columns`` of the version in row order, ``batch_size`` rows at a time.

        The flat-memory way to scan a large version (ids, numbers, hashes): one batch is in
        memory at a time. Unknown columns raise :class:`~pesdata.errors.ParameterError`.
        """
        names = self._raw.schema.names
        for c in columns:
            if c not in names:
                raise ParameterError(f"unknown column {c!r:.200}; columns: {', '.join(names)}")
        # one data file at a time, two batches ahead: Lance's defaults read several files at
        # once (+260 MB scanning the ids of 10⁷ rows in ten files, +100 MB this way, as fast)
        yield from self._ds.to_batches(columns=list(columns), batch_size=int(batch_size),
                                       **SCAN_OPTIONS)

    def elements(self) -> list[int]:
        """The atomic numbers present in the version, sorted (scanned in batches)."""
        found: set[int] = set()
        for batch in self.batches(["numbers"]):
            found.update(np.unique(batch.column(0).flatten().to_numpy()).tolist())
        return sorted(found)

    def to_pandas(self) -> pd.DataFrame:
        """One row per structure.

        Returns
        -------
        pandas.DataFrame
            Columns id, formula, n_atoms, energy, energy_per_atom, fmax (largest force norm,
            eV/Å), volume (Å³, NaN without full pbc), method, config_type, group, source,
            version_added.
        """
        import pandas as pd

        t = self._ds.to_table(
            columns=[
                "id", "formula", "n_atoms", "energy", "forces", "cell", "pbc",
                "method", "config_type", "group", "source", CREATED,
            ]
        )
        n = t.column("n_atoms").to_numpy().astype(np.int64)
        energy = t.column("energy").to_numpy(zero_copy_only=False).astype(float)
        cells = fsl_values(t.column("cell").combine_chunks(), 9).reshape(-1, 3, 3)
        pbc = fsl_values(t.column("pbc").combine_chunks(), 3)
        volume = np.where(pbc.all(axis=1), np.abs(np.linalg.det(cells)), np.nan) if len(n) else []
        return pd.DataFrame(
            {
                "id": t.column("id").to_pylist(),
                "formula": t.column("formula").to_pylist(),
                "n_atoms": n,
                "energy": energy,
                "energy_per_atom": energy / np.maximum(n, 1),
                "fmax": _fmax(t.column("forces")),
                "volume": volume,
                "method": t.column("method").to_pylist(),
                "config_type": t.column("config_type").to_pylist(),
                "group": t.column("group").to_pylist(),
                "source": t.column("source").to_pylist(),
                "version_added": t.column(CREATED).to_numpy().astype(np.int64),
            }
        )

    def __iter__(self) -> Iterator[ase.Atoms]:
        """Stream the structures as ``ase.Atoms``, a batch at a time."""
        from ..frames import table_to_atoms

        for batch in self._ds.to_batches(batch_size=1024):
            yield from table_to_atoms(pa.Table.from_batches([batch]))

    def to_atoms(self) -> list[ase.Atoms]:
        """All structures as a list of ``ase.Atoms`` (labels in a SinglePointCalculator).

        Returns
        -------
        list of ase.Atoms
        """
        return list(self)

    def take(self, indices: Sequence[int] | np.ndarray) -> list[ase.Atoms]:
        """Random access: the structures at row ``indices`` of this version, in that order.

        Parameters
        ----------
        indices : sequence of int
            Row numbers (negative ones count from the end).

        Returns
        -------
        list of ase.Atoms

        Raises
        ------
        IndexError
            An index is out of range.
        """
        from ..frames import table_to_atoms

        idx = self._check_indices(indices)
        return table_to_atoms(self._ds.take(idx.tolist()))

    def to_arrays(self, columns: Sequence[str] = ("numbers", "positions", "forces")) -> dict:
        """Bulk numpy arrays of the whole version, for training code.

        Parameters
        ----------
        columns : sequence of str
            Per-atom columns to read (``numbers``, ``positions``, ``forces``, ``arr_<name>``).

        Returns
        -------
        dict
            ``numbers`` (N,), ``positions`` (N, 3), ``forces`` (N, 3; NaN rows for structures
            without forces), ``energy`` (n_structures,; NaN when missing), ``cell``
            (n_structures, 3, 3), ``pbc`` (n_structures, 3) and ``offsets`` (n_structures + 1):
            atoms of structure ``i`` are rows ``offsets[i]:offsets[i+1]``. N is the total atom
            count. ``columns`` picks the per-atom arrays.
        """
        cols = list(dict.fromkeys(["n_atoms", "energy", "cell", "pbc", *columns]))
        return _arrays(self._ds.to_table(columns=cols), columns)

    def take_arrays(
        self,
        indices: Sequence[int] | np.ndarray,
        columns: Sequence[str] = ("numbers", "positions", "forces"),
    ) -> dict:
        """Random access for training batches: :meth:`to_arrays` of the rows ``indices``.

        Parameters
        ----------
        indices : sequence of int
            Row numbers (negative ones count from the end).
        columns : sequence of str
            Per-atom columns to read (``numbers``, ``positions``, ``forces``, ``arr_<name>``).

        Returns
        -------
        dict
            As :meth:`to_arrays`, for these rows in this order.

        Raises
        ------
        IndexError
            An index is out of range.
        """
        idx = self._check_indices(indices)
        cols = list(dict.fromkeys(["n_atoms", "energy", "cell", "pbc", *columns]))
        return _arrays(self._ds.take(idx.tolist(), columns=cols), columns)

    def cache_arrays(
        self, columns: Sequence[str] = ("numbers", "positions", "forces")
    ) -> ArrayCache:
        """Read the version's arrays into memory once; random batches then cost microseconds.

        The training-loop path: one bulk :meth:`to_arrays` read (the version is immutable, so
        the cache never goes stale), then :meth:`ArrayCache.take` per batch. Memory is about
        56 bytes per atom for numbers, positions and forces.

        Parameters
        ----------
        columns : sequence of str
            Per-atom columns to read (``numbers``, ``positions``, ``forces``, ``arr_<name>``).

        Returns
        -------
        ArrayCache
        """
        return ArrayCache(self.to_arrays(columns), self.version)

    def _check_indices(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"index out of range for a version of {n} structures")
        return np.where(idx < 0, idx + n, idx)


def _check_filter(filter: str | None) -> str | None:
    """A Lance SQL filter is one boolean expression: Lance ignores whatever follows a ``;``
    (``"n_atoms < 0; n_atoms > 0"`` counted 0), so a ``;`` outside a quoted literal is refused."""
    if filter is None:
        return None
    if not isinstance(filter, str):
        raise ParameterError(f"filter must be a string, got {type(filter).__name__}")
    if ";" in re.sub(r"'(?:[^']|'')*'", "", filter):
        raise ParameterError(f"filter {filter!r:.200} holds ';': one boolean expression only")
    return filter


def _arrays(t: pa.Table, columns: Sequence[str]) -> dict:
    n = t.column("n_atoms").to_numpy().astype(np.int64)
    offsets = np.zeros(len(n) + 1, dtype=np.int64)
    np.cumsum(n, out=offsets[1:])
    out = {
        "offsets": offsets,
        "energy": t.column("energy").to_numpy(zero_copy_only=False).astype(float),
        "cell": fsl_values(t.column("cell").combine_chunks(), 9).reshape(-1, 3, 3),
        "pbc": fsl_values(t.column("pbc").combine_chunks(), 3).astype(bool),
    }
    for name in columns:
        col = t.column(name).combine_chunks()
        if name == "forces" and col.null_count:
            out[name] = _dense_forces(col, n, offsets)
        else:
            flat, offs = flat_values(col)
            out[name] = flat[offs[0] : offs[-1]]
    if "numbers" in out:
        out["numbers"] = out["numbers"].astype(np.int64)
    return out


def _dense_forces(col: pa.Array, n: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    dense = np.full((int(offsets[-1]), 3), np.nan)
    flat, foffs = flat_values(col)
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(valid):
        dense[offsets[i] : offsets[i + 1]] = flat[foffs[i] : foffs[i + 1]]
    return dense


def _fmax(col: pa.ChunkedArray) -> np.ndarray:
    col = col.combine_chunks()
    out = np.full(len(col), np.nan)
    if len(col) == 0:
        return out
    flat, offs = flat_values(col)
    if flat.size == 0:
        return out
    norms = np.linalg.norm(flat[: offs[-1]], axis=1)
    valid = col.is_valid().to_numpy(zero_copy_only=False) & (np.diff(offs) > 0)
    starts = offs[:-1][valid]
    out[valid] = np.maximum.reduceat(norms, starts) if starts.size else []
    return out


class ArrayCache:
    """In-memory arrays of one version (see :meth:`Snapshot.cache_arrays`)."""

    def __init__(self, arrays: dict, version: int) -> None:
        self.arrays, self.version = arrays, version
        self._per_atom = [k for k in arrays if k not in ("offsets", "energy", "cell", "pbc")]

    def __len__(self) -> int:
        return len(self.arrays["energy"])

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return int(sum(a.nbytes for a in self.arrays.values()))

    def take(self, indices: Sequence[int] | np.ndarray) -> dict:
        """The same dict as :meth:`Snapshot.take_arrays` for rows ``indices``.

        Parameters
        ----------
        indices : sequence of int
            Row numbers (negative ones count from the end).

        Returns
        -------
        dict

        Raises
        ------
        IndexError
            An index is out of range.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"index out of range for a version of {n} structures")
        idx = np.where(idx < 0, idx + n, idx)
        off = self.arrays["offsets"]
        starts, counts = off[idx], off[idx + 1] - off[idx]
        new = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(counts, out=new[1:])
        rows = np.repeat(starts - new[:-1], counts) + np.arange(new[-1])
        out = {"offsets": new, **{k: self.arrays[k][idx] for k in ("energy", "cell", "pbc")}}
        out.update({k: self.arrays[k][rows] for k in self._per_atom})
        return out
