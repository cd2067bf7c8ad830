"""Per-atom descriptors of store versions, cached in Zarr and content-addressed.

Layout under ``<store>/arrays/<config_hash>/`` (one Zarr v3 group per descriptor config):

* ``zarr.json`` — group attributes hold the descriptor config;
* ``seg-<uuid>`` — append-only segments: one 2-D array (atoms × features) per computed batch,
  written whole, chunked by rows and stored as one shard;
* ``index/<uuid>.parquet`` — which structure ids a segment holds (``id``, ``segment``,
  ``first_row``, ``n_atoms``), written by rename *after* its segment is complete.

Rows are keyed by structure ``id`` (geometry + method), so they stay valid across versions and
a new version computes only its new structures. A killed run leaves at most an orphan segment
without index entries; the next run recomputes those structures and never reads half-written
data. Reading a version whose structures are not all cached raises
:class:`~pesdata.errors.ArtefactNotFound`; an index that names data which is not there (a
deleted segment, an unreadable index file) is corruption and raises
:class:`~pesdata.errors.StoreCorruptError` naming the path.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import zarr
from ase.data import chemical_symbols

from .._ids import fixed_width
from .._params import check_int
from ..atomic import atomic_path
from ..errors import (
    ArtefactNotFound,
    ParameterError,
    SchemaError,
    StoreCorruptError,
    from_os_error,
)
from ._base import Descriptor
from ._index import INDEX_SCHEMA
from ._locate import Locations, locate

__all__ = ["describe", "load_descriptors"]

ROWS_PER_CHUNK = 4096


def _group_dir(store, descriptor) -> Path:
    if not isinstance(descriptor, Descriptor):
        raise ParameterError(
            f"descriptor must be a pesdata Descriptor, got {type(descriptor).__name__}")
    if store.lock_path is None:  # pragma: no cover - object stores
        raise ParameterError(f"descriptor caches need a local store directory, not {store.uri!r}")
    return Path(store.root) / "arrays" / descriptor.config_hash


def _read_index(root: Path, columns: tuple[str, ...] | None = None) -> pa.Table:
    """All index entries (``columns`` of them) of a descriptor group; an unreadable file is
    corruption."""
    schema = INDEX_SCHEMA if columns is None else pa.schema(
        [INDEX_SCHEMA.field(c) for c in columns])
    tables = []
    for f in sorted((root / "index").glob("*.parquet")):
        try:
            table = pq.read_table(f, columns=schema.names)
            tables.append(table.select(schema.names).cast(schema))
        except (OSError, KeyError, pa.ArrowException) as exc:
            raise StoreCorruptError(f"{f}: unreadable descriptor cache index ({exc})") from exc
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)


def release_arrow_memory() -> None:
    """Hand the memory Arrow's allocator keeps after a large scan back to the system (mimalloc
    holds freed pages otherwise: ~100 MB after reading the index of 10⁶ cached structures)."""
    pa.default_memory_pool().release_unused()

#: Structures per computed (and written) segment unless told otherwise.
BATCH_SIZE = 64


def describe(
    store,
    descriptor,
    version: int | str | None = None,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int, int], None] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
) -> dict:
    """Compute and cache per-atom descriptors for every structure of a version.

    Only structures whose ``id`` is not cached yet are computed. The version's ids are read in
    batches and the segments computed one batch at a time, and which structures are cached is
    found by a join spilled to disk above a size (:func:`~pesdata.descriptors._locate.locate`),
    so memory stays flat with the number of structures.

    Parameters
    ----------
    store : pesdata.Store
        A local store.
    descriptor : Descriptor
        What to compute; its config hash names the cache group.
    version : int or str, optional
        Version number or tag (default: the latest).
    batch_size : int
        Structures per computed (and written) segment, ≥ 1.
    progress : callable, optional
        Called as ``progress(done, total)`` after every segment.
    scheduler : str, optional
        Compute the segments as Dask tasks (``synchronous``, ``threads``, ``processes`` or
        ``tcp://HOST:PORT``, see :mod:`pesdata.parallel`): each task reads its rows of the
        version, computes and writes its segment and index file (never the table). ``None``
        (default): here, one segment after another. The segments hold the same rows either way.
    workers : int, optional
        Local Dask workers (default one per core).

    Returns
    -------
    dict
        ``config_hash``, ``version``, ``n_structures``, ``computed``, ``cached``, ``n_atoms``
        (atoms computed now) and ``path``.

    Raises
    ------
    ParameterError
        ``batch_size`` is not a positive integer, ``descriptor`` is not a
        :class:`~pesdata.descriptors.Descriptor`, ``progress`` is not callable or the
        scheduler is unknown or unreachable.
    SchemaError
        The version holds elements the descriptor's species lack (nothing is written).
    """
    out, located = _describe(store, descriptor, version, batch_size, progress, scheduler,
                             workers)
    if located is not None:
        located.close()
    return out


def _describe(store, descriptor, version, batch_size, progress, scheduler, workers
              ) -> tuple[dict, Locations | None]:
    """:func:`describe`, and the version's cache locations when nothing had to be computed
    (then they are the current ones: select opens its stream on them instead of joining the
    version with the index a second time); ``None`` otherwise."""
    from ..parallel import check_scheduler, check_workers, stream_map

    batch_size = check_int("batch_size", batch_size)
    if progress is not None and not callable(progress):
        raise ParameterError(f"progress must be callable, got {progress!r:.200}")
    scheduler, workers = check_scheduler(scheduler), check_workers(workers)
    root = _group_dir(store, descriptor)
    snap = store.read(version)
    missing = sorted(set(snap.elements()) - set(descriptor.species))
    if missing:  # checked before anything is written
        names = ", ".join(chemical_symbols[z] for z in missing)
        raise SchemaError(
            f"version {snap.version} has element(s) {names} that the {descriptor.name} "
            f"descriptor's species {[chemical_symbols[z] for z in descriptor.species]} lack"
        )
    with _disk_errors(root):
        (root / "index").mkdir(parents=True, exist_ok=True)
        group = zarr.open_group(root, mode="a")
        if group.attrs.get("config") != descriptor.config():  # a cached group is not rewritten
            group.attrs["config"] = descriptor.config()
    located = locate(snap, root)  # DiskFull / StoreReadOnly name the temporary directory
    total = located.missing
    # the store's absolute directory: dask.distributed workers may run elsewhere
    tasks = ((str(store.root), None, snap.version, descriptor, str(root), rows, ids)
             for rows, ids in _uncached(snap, located, batch_size))
    computed = n_atoms = 0
    results = stream_map(_segment_task, tasks, scheduler=scheduler, workers=workers)
    try:
        with contextlib.closing(results):
            for n_structures, atoms in results:
                computed += n_structures
                n_atoms += atoms
                if progress is not None:
                    progress(computed, total)
    except BaseException:
        located.close()
        raise
    if computed:  # the cache changed: these locations are stale
        located.close()
        located = None
    return {
        "config_hash": descriptor.config_hash,
        "version": snap.version,
        "n_structures": len(snap),
        "computed": computed,
        "cached": len(snap) - computed,
        "n_atoms": n_atoms,
        "path": str(root),
    }, located


_SCAN_ROWS = 65536  # ids read per batch when scanning a version


def _uncached(snap, located: Locations, size: int):
    """(rows, ids) of the version's structures with no cache entry, ``size`` at a time, in row
    order (streamed: the version's ids are never all in memory)."""
    rows: list[int] = []
    ids: list[str] = []
    offset = 0
    if not located.missing:
        return
    for batch in snap.batches(["id"], _SCAN_ROWS):
        col = fixed_width(batch.column(0))
        new = np.flatnonzero(located.read(offset, offset + len(col))["code"] < 0)
        for k in new:
            rows.append(offset + int(k))
            ids.append(col[k].decode())
            if len(rows) >= size:
                yield rows, ids
                rows, ids = [], []
        offset += len(col)
    if rows:
        yield rows, ids


_SNAPSHOTS: dict = {}  # per process: (uri, version) → Snapshot, reused by the tasks


def _segment_task(task: tuple) -> tuple[int, int]:
    """A describe task: read ``rows`` of the version, compute, write one segment + index."""
    uri, storage_options, version, descriptor, root, rows, ids = task
    key = (uri, version)
    snap = _SNAPSHOTS.get(key)
    if snap is None:
        from ..store import open_store

        snap = open_store(uri, **(storage_options or {})).read(version)
        _SNAPSHOTS.clear()
        _SNAPSHOTS[key] = snap
    images = snap.take(rows)
    with torch.no_grad():
        feats = descriptor.compute(images).to("cpu").numpy()
    counts = np.array([len(a) for a in images], dtype=np.int64)
    root = Path(root)
    with _disk_errors(root):
        _write_segment(root, zarr.open_group(root, mode="a"), feats, ids, counts)
    return len(rows), int(counts.sum())


@contextlib.contextmanager
def _disk_errors(root: Path):
    """A full disk or a read-only store met while writing the cache: DiskFull / StoreReadOnly
    naming the cache directory."""
    try:
        yield
    except OSError as exc:
        new = from_os_error(exc, root)
        if new is not None:
            raise new from exc
        raise


def _write_segment(root: Path, group, feats: np.ndarray, ids: list[str], counts) -> None:
    name = f"seg-{uuid.uuid4().hex}"
    n, f = feats.shape
    chunk = (min(ROWS_PER_CHUNK, max(n, 1)), f)
    shard = (-(-max(n, 1) // chunk[0]) * chunk[0], f)
    # every chunk is written, even all-zero ones, so a missing chunk on read means corruption
    arr = group.create_array(name, shape=(n, f), dtype=feats.dtype, chunks=chunk, shards=shard,
                             config={"write_empty_chunks": True},
                             attributes={"all_chunks_written": True})
    arr[:] = feats
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    index = pa.table({"id": ids, "segment": [name] * len(ids), "first_row": first,
                      "n_atoms": counts}, schema=INDEX_SCHEMA)
    with atomic_path(root / "index" / f"{name}.parquet") as tmp:  # the commit point
        pq.write_table(index, tmp)


def load_descriptors(store, descriptor, version: int | str | None = None) -> dict:
    """Cached per-atom descriptors of a version, in the version's row and atom order.

    Parameters
    ----------
    store : pesdata.Store
        A local store.
    descriptor : Descriptor
        The descriptor whose cache (named by its config hash) is read.
    version : int or str, optional
        Version number or tag (default: the latest).

    Returns
    -------
    dict
        ``features`` (n_atoms_total, n_features), ``numbers`` (element of each atom),
        ``structure`` (row index of each atom's structure in the version), ``ids`` and
        ``feature_names``.

    Raises
    ------
    ArtefactNotFound
        Some structures of the version have not been described yet (a ``LookupError``:
        compute them, or run ``pesdata describe``).
    ParameterError
        ``descriptor`` is not a pesdata Descriptor, or the store is not a local directory.
    StoreCorruptError
        The cache index names data that is not there or does not fit (a deleted or
        truncated segment, an unreadable index file); the message names the path.
    """
    root = _group_dir(store, descriptor)
    snap = store.read(version)
    index = _read_index(root).to_pandas().drop_duplicates("id").set_index("id")
    ids = snap.ids
    missing = [i for i in ids if i not in index.index]
    if missing:
        raise ArtefactNotFound(
            f"{len(missing)} structure(s) of version {snap.version} have no cached "
            f"{descriptor.name} descriptors (config {descriptor.config_hash}); run "
            f"`pesdata describe` first"
        )
    arrays = snap.to_arrays(columns=("numbers",))
    counts = np.diff(arrays["offsets"])
    out = np.empty((int(counts.sum()), descriptor.n_features), dtype=np.float64)
    position = {i: k for k, i in enumerate(ids)}
    rows = index.loc[ids] if ids else index.iloc[:0]
    group = _open_group(root) if len(rows) else None
    for seg, grp in rows.groupby("segment", sort=False):
        data = _read_segment(root, group, seg, descriptor.n_features)
        for sid, first, n in zip(grp.index, grp["first_row"], grp["n_atoms"], strict=True):
            a = arrays["offsets"][position[sid]]
            if first < 0 or first + n > len(data) or n != counts[position[sid]]:
                raise StoreCorruptError(
                    f"{root / seg}: the cache index gives structure {sid} rows "
                    f"{first}..{first + n} ({n} atoms), which the segment of {len(data)} rows "
                    f"does not hold for its {counts[position[sid]]} atoms"
                )
            out[a : a + n] = data[first : first + n]
    return {
        "features": out,
        "numbers": arrays["numbers"],
        "structure": np.repeat(np.arange(len(ids)), counts),
        "ids": ids,
        "feature_names": descriptor.feature_names,
        "config": json.loads(json.dumps(descriptor.config())),
    }


def _open_group(root: Path):
    try:
        return zarr.open_group(root, mode="r")
    except (OSError, ValueError, LookupError) as exc:  # zarr's GroupNotFoundError is one
        raise StoreCorruptError(
            f"{root}: the descriptor cache has index entries but no readable Zarr group "
            f"({type(exc).__name__}: {exc})"
        ) from exc


def _read_segment(root: Path, group, seg: str, n_features: int) -> np.ndarray:
    """One segment, whole (one contiguous read); missing or misshapen data is corruption."""
    path = root / seg
    try:
        arr = group[seg]
    except KeyError as exc:
        raise StoreCorruptError(
            f"{path}: segment named by the descriptor cache index is missing") from exc
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise StoreCorruptError(
            f"{path}: segment has shape {arr.shape}, expected (rows, {n_features})")
    # segments written since all chunks are kept (even all-zero ones) can be checked whole;
    # zarr would otherwise return its fill value for a missing chunk without a word
    if arr.attrs.get("all_chunks_written") and arr.nchunks_initialized < arr.nchunks:
        raise StoreCorruptError(
            f"{path}: segment data is incomplete ({arr.nchunks_initialized} of "
            f"{arr.nchunks} chunks on disk)")
    try:
        return arr[:]
    except (OSError, ValueError) as exc:  # unreadable shard or codec failure
        raise StoreCorruptError(f"{path}: cannot read segment ({exc})") from exc
