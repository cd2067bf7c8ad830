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
data.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import zarr
from ase.data import chemical_symbols

from ..errors import PesdataError, SchemaError

__all__ = ["describe", "load_descriptors"]

ROWS_PER_CHUNK = 4096


def _group_dir(store, descriptor) -> Path:
    if store.lock_path is None:  # pragma: no cover - object stores
        raise PesdataError("descriptor caches need a local store directory for now")
    return Path(store.root) / "arrays" / descriptor.config_hash


def _read_index(root: Path) -> pa.Table:
    files = sorted((root / "index").glob("*.parquet"))
    if not files:
        return pa.table(
            {"id": pa.array([], pa.string()), "segment": pa.array([], pa.string()),
             "first_row": pa.array([], pa.int64()), "n_atoms": pa.array([], pa.int64())}
        )
    return pa.concat_tables([pq.read_table(f) for f in files])


def describe(
    store,
    descriptor,
    version: int | str | None = None,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Compute and cache per-atom descriptors for every structure of a version.

    Only structures whose ``id`` is not cached yet are computed.

    Returns
    -------
    dict
        ``config_hash``, ``version``, ``n_structures``, ``computed``, ``cached``, ``n_atoms``
        (atoms computed now) and ``path``.
    """
    snap = store.read(version)
    present = np.unique(snap.to_arrays(columns=("numbers",))["numbers"]).tolist()
    missing = sorted(set(present) - set(descriptor.species))
    if missing:  # checked before anything is written
        names = ", ".join(chemical_symbols[z] for z in missing)
        raise SchemaError(
            f"version {snap.version} has element(s) {names} that the {descriptor.name} "
            f"descriptor's species {[chemical_symbols[z] for z in descriptor.species]} lack"
        )
    root = _group_dir(store, descriptor)
    (root / "index").mkdir(parents=True, exist_ok=True)
    group = zarr.open_group(root, mode="a")
    group.attrs["config"] = descriptor.config()
    done = set(_read_index(root).column("id").to_pylist())
    ids = snap.ids
    todo = [k for k, i in enumerate(ids) if i not in done]
    n_atoms = 0
    for start in range(0, len(todo), batch_size):
        rows = todo[start : start + batch_size]
        images = snap.take(rows)
        with torch.no_grad():
            feats = descriptor.compute(images).to("cpu").numpy()
        counts = np.array([len(a) for a in images], dtype=np.int64)
        _write_segment(root, group, feats, [ids[k] for k in rows], counts)
        n_atoms += int(counts.sum())
        if progress is not None:
            progress(start + len(rows), len(todo))
    return {
        "config_hash": descriptor.config_hash,
        "version": snap.version,
        "n_structures": len(ids),
        "computed": len(todo),
        "cached": len(ids) - len(todo),
        "n_atoms": n_atoms,
        "path": str(root),
    }


def _write_segment(root: Path, group, feats: np.ndarray, ids: list[str], counts) -> None:
    name = f"seg-{uuid.uuid4().hex}"
    n, f = feats.shape
    chunk = (min(ROWS_PER_CHUNK, max(n, 1)), f)
    shard = (-(-max(n, 1) // chunk[0]) * chunk[0], f)
    arr = group.create_array(name, shape=(n, f), dtype=feats.dtype, chunks=chunk, shards=shard)
    arr[:] = feats
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    index = pa.table({"id": ids, "segment": [name] * len(ids), "first_row": first,
                      "n_atoms": counts})
    tmp = root / "index" / f".{name}.parquet.tmp"
    pq.write_table(index, tmp)
    os.replace(tmp, root / "index" / f"{name}.parquet")  # the commit point of this batch


def load_descriptors(store, descriptor, version: int | str | None = None) -> dict:
    """Cached per-atom descriptors of a version, in the version's row and atom order.

    Returns
    -------
    dict
        ``features`` (n_atoms_total, n_features), ``numbers`` (element of each atom),
        ``structure`` (row index of each atom's structure in the version), ``ids`` and
        ``feature_names``.

    Raises
    ------
    PesdataError
        When some structures of the version have not been described yet.
    """
    snap = store.read(version)
    root = _group_dir(store, descriptor)
    index = _read_index(root).to_pandas().drop_duplicates("id").set_index("id")
    ids = snap.ids
    missing = [i for i in ids if i not in index.index]
    if missing:
        raise PesdataError(
            f"{len(missing)} structure(s) of version {snap.version} have no cached "
            f"{descriptor.name} descriptors (config {descriptor.config_hash}); run "
            f"`pesdata describe` first"
        )
    group = zarr.open_group(root, mode="r")
    arrays = snap.to_arrays(columns=("numbers",))
    counts = np.diff(arrays["offsets"])
    out = np.empty((int(counts.sum()), descriptor.n_features), dtype=np.float64)
    position = {i: k for k, i in enumerate(ids)}
    rows = index.loc[ids] if ids else index.iloc[:0]
    for seg, grp in rows.groupby("segment", sort=False):
        data = group[seg][:]  # one contiguous read per segment
        for sid, first, n in zip(grp.index, grp["first_row"], grp["n_atoms"], strict=True):
            a = arrays["offsets"][position[sid]]
            out[a : a + n] = data[first : first + n]
    return {
        "features": out,
        "numbers": arrays["numbers"],
        "structure": np.repeat(np.arange(len(ids)), counts),
        "ids": ids,
        "feature_names": descriptor.feature_names,
        "config": json.loads(json.dumps(descriptor.config())),
    }
