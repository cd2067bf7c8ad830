"""Cached descriptors of a store version, streamed in chunks: memory flat in the version's size.

:func:`~pesdata.descriptors.load_descriptors` returns a version's descriptor rows as one array:
right for a training set, wrong for a reference of 10⁶ structures (4·10⁶ rows of float64 and
the copies made from them). :class:`DescriptorStream` serves the same rows, in the same order
(structures in row order, atoms in order), as a sequence of :class:`ChunkPlan` — small,
picklable instructions (which rows of which Zarr segments, and the atoms' elements) that any
process seeing the store's directory reads with :meth:`ChunkPlan.read`. A Dask worker reads its
own chunk; the driver holds one plan at a time plus each structure's segment code and first
row, in row order, joined once from the cache index when the stream opens
(:func:`~pesdata.descriptors._locate.locate`: in memory for small versions, spilled to a
temporary file of 12 bytes per structure above that, so the driver's memory does not grow with
the version).

The checks are :func:`load_descriptors`'s: a structure without cached rows raises
:class:`~pesdata.errors.ArtefactNotFound` when the stream is opened (before any work); an index
entry whose rows are not in its segment, or whose atom count differs from the table's, raises
:class:`~pesdata.errors.StoreCorruptError` naming the path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._params import check_int
from ..errors import ArtefactNotFound, StoreCorruptError
from ._base import Descriptor
from ._cache import _group_dir, _open_group, _read_segment, release_arrow_memory
from ._locate import Locations, locate

__all__ = ["ChunkPlan", "DescriptorStream", "ROWS_PER_READ"]

#: Default descriptor rows per chunk: 2**22 values (32 MB of float64) over the features.
CHUNK_VALUES = 2**22
#: Structures read from the table per scan batch.
ROWS_PER_READ = 16_384


@dataclass(frozen=True)
class ChunkPlan:
    """What one chunk of a streamed version holds and where its rows lie on disk.

    Attributes
    ----------
    root : str
        The descriptor group's directory (``<store>/arrays/<config hash>``).
    n_features : int
        Columns of every row.
    index : int
        Position of the chunk in the stream (0, 1, ...).
    first_structure : int
        Row of the version of the chunk's first structure.
    n_structures : int
        Structures in the chunk.
    first_atom : int
        Row of the chunk's first atom among all the version's atoms.
    numbers : ndarray of int16, shape (n_rows,)
        Element of each row.
    segments : tuple of (str, ndarray, ndarray)
        Per Zarr segment: its name, the rows to read from it and where they go in the chunk.
    """

    root: str
    n_features: int
    index: int
    first_structure: int
    n_structures: int
    first_atom: int
    numbers: np.ndarray
    segments: tuple

    @property
    def n_rows(self) -> int:
        """Descriptor rows (atoms) in the chunk."""
        return len(self.numbers)

    def read(self) -> np.ndarray:
        """The chunk's descriptor rows, float64, shape (n_rows, n_features)."""
        root = Path(self.root)
        out = np.empty((self.n_rows, self.n_features), dtype=np.float64)
        group = _open_group(root) if self.segments else None
        for seg, src, dst in self.segments:
            data = _read_segment(root, group, seg, self.n_features)
            if len(src) and (int(src.max()) >= len(data) or int(src.min()) < 0):
                bad = int(src.max()) if int(src.max()) >= len(data) else int(src.min())
                raise StoreCorruptError(
                    f"{root / seg}: the cache index names row {bad} of a segment "
                    f"of {len(data)} rows")
            out[dst] = data[src]
        return out


class DescriptorStream:
    """The cached descriptor rows of a store version, as a sequence of :class:`ChunkPlan`.

    Parameters
    ----------
    store : pesdata.Store
        A local store.
    descriptor : Descriptor
        The descriptor whose cache is read (run :func:`~pesdata.descriptors.describe` first).
    version : int or str, optional
        Version or tag (default: the latest).
    chunk_rows : int, optional
        Descriptor rows per chunk (default ``2**22 / n_features``; a chunk ends at a
        structure boundary, so it may hold one structure's atoms more).
    locations : Locations, optional
        The version's cache locations if already joined (the stream takes them over and
        closes them); joined here when absent or of another version.

    Raises
    ------
    ArtefactNotFound
        Some structures of the version have no cached descriptors.
    StoreCorruptError
        The cache index is unreadable.
    """

    def __init__(self, store, descriptor: Descriptor, version: int | str | None = None,
                 chunk_rows: int | None = None, locations: Locations | None = None) -> None:
        root = _group_dir(store, descriptor)
        self.root = str(root)
        self.snapshot = store.read(version)
        self.version = self.snapshot.version
        self.n_features = int(descriptor.n_features)
        self.feature_names = tuple(descriptor.feature_names)
        self.chunk_rows = (max(1, CHUNK_VALUES // max(self.n_features, 1)) if chunk_rows is None
                           else check_int("chunk_rows", chunk_rows))
        if locations is not None and locations.version != self.version:
            locations.close()
            locations = None
        if locations is None:
            locations = locate(self.snapshot, root)
        self._locations = loc = locations
        try:
            self._check(descriptor)
        except BaseException:
            loc.close()
            raise
        self._segments = loc.segments
        self.n_structures, self.n_atoms = loc.n_rows, loc.n_atoms
        release_arrow_memory()

    def _check(self, descriptor: Descriptor) -> None:
        loc = self._locations
        if loc.missing:
            raise ArtefactNotFound(
                f"{loc.missing} structure(s) of version {self.version} have no cached "
                f"{descriptor.name} descriptors (config {descriptor.config_hash}); run "
                f"`pesdata describe` first")
        if loc.mismatch is not None:
            bad = loc.mismatch
            raise StoreCorruptError(
                f"{Path(self.root) / bad.segment}: the cache index gives structure {bad.id} "
                f"{bad.cached} atoms; the table has {bad.table}")

    def close(self) -> None:
        """Remove the join's temporary files (also done when the stream is collected)."""
        self._locations.close()

    def __enter__(self) -> DescriptorStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.n_structures

    def plans(self) -> Iterator[ChunkPlan]:
        """The chunks, in the version's row order (cheap: reads atom counts and elements)."""
        pending: list = []
        rows = structures = 0
        start = atom = k = 0
        base = 0  # the version row of the batch's first structure
        for batch in self.snapshot.batches(["n_atoms", "numbers"], ROWS_PER_READ):
            n_atoms = batch.column(0).to_numpy().astype(np.int64)
            numbers = batch.column(1).flatten().to_numpy().astype(np.int16)
            offsets = np.r_[0, np.cumsum(n_atoms)]
            lo = 0
            while lo < len(n_atoms):
                # take structures until the chunk holds chunk_rows rows
                room = self.chunk_rows - rows
                hi = int(np.searchsorted(offsets, offsets[lo] + room, side="right"))
                hi = min(max(hi - 1, lo + 1), len(n_atoms))
                pending.append((np.arange(base + lo, base + hi), n_atoms[lo:hi],
                                numbers[offsets[lo]:offsets[hi]]))
                rows += int(offsets[hi] - offsets[lo])
                structures += hi - lo
                lo = hi
                if rows >= self.chunk_rows:
                    yield self._plan(k, start, structures, atom, pending)
                    k, start, atom = k + 1, start + structures, atom + rows
                    pending, rows, structures = [], 0, 0
            base += len(n_atoms)
        if pending or k == 0:
            yield self._plan(k, start, structures, atom, pending)

    def _plan(self, k: int, start: int, structures: int, atom: int, pending: list) -> ChunkPlan:
        pos = (np.concatenate([p for p, _, _ in pending]) if pending
               else np.zeros(0, np.int64))
        n = (np.concatenate([c for _, c, _ in pending]) if pending
             else np.zeros(0, np.int64))
        numbers = (np.concatenate([z for _, _, z in pending]) if pending
                   else np.zeros(0, np.int16))
        dst_first = np.r_[0, np.cumsum(n)[:-1]] if len(n) else np.zeros(0, np.int64)
        # per atom: its structure's entry, its row in the segment and its row in the chunk
        owner = np.repeat(np.arange(len(pos)), n)
        within = np.arange(int(n.sum())) - np.repeat(dst_first, n)
        loc = self._locations.read(start, start + structures)
        src = loc["first"][pos - start][owner] + within
        codes = loc["code"][pos - start][owner]
        segments = []
        for c in np.unique(codes):
            rows = np.flatnonzero(codes == c)
            segments.append((str(self._segments[c]), src[rows], rows))
        return ChunkPlan(self.root, self.n_features, k, start, structures, atom, numbers,
                         tuple(segments))
