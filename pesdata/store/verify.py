"""``verify``: check a store end to end and list every problem found.

What is checked, and why it is sound:

* **Versions.** Every manifest under ``structures.lance/_versions`` opens. A version number
  between 1 and the latest with no manifest is a problem (``manifest_missing``) unless
  :func:`pesdata.store.gc.gc` recorded it as removed (``_pesdata/gc.json``). A deleted
  *latest* manifest leaves no gap; it is found when a tag or an artefact names that version.
* **Rows.** Lance data files are immutable and a version is a list of fragments (data files
  plus an optional deletion file). Every distinct (fragment, data files, deletion file)
  combination of any version is read once, in batches of ``batch_size`` rows (memory stays
  flat), which reads every live row of every version without reading a shared fragment once
  per version. Each batch is checked against the schema registry (``pesdata.schema``) and
  for consistent per-atom lengths; with ``full=True`` (the default) ``geometry_hash`` and
  ``id`` are recomputed from the row's numbers, positions, cell, pbc and method and compared
  with the stored ones. ``full=False`` recomputes them only for the fragments of the latest
  version (older fragments are still decoded in full, so unreadable files are found).
  Labels (energy, forces, stress) have no checksum: a flipped byte there is found only when
  it makes the file undecodable.
* **Ids unique per version.** The ids of each distinct fragment are kept as 16-byte digests
  while it is read (16 B per distinct row: 16 MB for 10^6 rows) and each version's
  fragments' digests are checked for duplicates; no second scan.
* **Descriptor caches** (``arrays/<config_hash>/``): every index file reads; the segment it
  names exists with rows ``first_row + n_atoms`` inside its shape and the structure's atom
  count (``index_*`` / ``segment_*`` problems, errors). Entries whose id is in no version, and
  segments no index names (orphans of a killed ``describe``, which ``gc`` removes) are
  **warnings**: content-addressed descriptors stay valid, and ``gc`` may have removed the
  versions that held those ids. Warnings do not make ``ok`` false.
* **Artefacts**: every ``artefacts/<kind>/*.json`` parses and validates against its schema;
  each version it is pinned to (see :data:`PINS`) exists; a selection ledger's ``.parquet``
  exists beside its ``.json``.
* **Tags** point at versions that exist.

Every problem is a dict ``{"kind", "severity", "where", "message"}``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from .._hash import _quantize, geometry_hash, structure_id
from ..errors import ParameterError, StoreCorruptError, VersionNotFound

__all__ = ["PINS", "pinned_versions", "verify"]

#: Where each artefact kind names store versions: top-level keys, and ``list[].key`` paths.
PINS: dict[str, tuple[str, ...]] = {
    "curate_report": ("version",),
    "split": ("version",),
    "selection": ("version",),
    "model_card": ("version",),
    "loop": ("version", "iterations[].version"),
    "export": ("version",),
    "queue": ("reference_version", "imports[].version"),
}

#: Artefact kinds that record what happened to a version without needing it later: ``gc`` may
#: remove the versions they name (``verify`` then finds those in :data:`GC_RECORD`).
RECORD_ONLY = ("curate_report/",)

GC_RECORD = "_pesdata/gc.json"
_BATCH = 8192


def _problem(kind: str, where, message: str, severity: str = "error") -> dict:
    return {"kind": kind, "severity": severity, "where": str(where),
            "message": " ".join(str(message).split())}


def _pins(document: dict, paths: tuple[str, ...]) -> list[int]:
    out = []
    for path in paths:
        if "[]." in path:
            key, sub = path.split("[].", 1)
            items = document.get(key) or []
            values = [i.get(sub) for i in items if isinstance(i, dict)]
        else:
            values = [document.get(path)]
        out.extend(int(v) for v in values if isinstance(v, int) and not isinstance(v, bool))
    return out


def _artefact_files(store) -> Iterator[tuple[str, Path]]:
    root = Path(store.root) / "artefacts"
    if not root.is_dir():
        return
    for kind_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(kind_dir.glob("*.json")):
            if not f.name.startswith("."):
                yield kind_dir.name, f


def pinned_versions(store, problems: list | None = None) -> dict[int, list[str]]:
    """Versions named by the store's artefacts: version → ``["kind/name", ...]``.

    Parameters
    ----------
    store : pesdata.Store
    problems : list, optional
        Receives an ``artefact_invalid`` problem per artefact that does not parse or validate
        (its pins are still taken when it parses: ``gc`` keeps what it may name).

    Returns
    -------
    dict of int to list of str
    """
    from ._artefacts import artefact_kinds, validate

    kinds = set(artefact_kinds())
    out: dict[int, list[str]] = {}
    for kind, f in _artefact_files(store):
        where = f"artefacts/{kind}/{f.name}"
        try:
            doc = json.loads(f.read_text())
        except (OSError, ValueError) as exc:
            if problems is not None:
                problems.append(_problem("artefact_invalid", where, f"not valid JSON ({exc})"))
            continue
        if kind in kinds:
            try:
                validate(kind, doc, where=where)
            except Exception as exc:  # noqa: BLE001 - ArtefactError, reported not raised
                if problems is not None:
                    problems.append(_problem("artefact_invalid", where, str(exc)))
        if isinstance(doc, dict):
            for v in _pins(doc, PINS.get(kind, ())):
                out.setdefault(v, []).append(f"{kind}/{f.stem}")
    return out


def removed_versions(store) -> set[int]:
    """Versions ``gc`` removed on purpose (from ``_pesdata/gc.json``)."""
    path = Path(store.root) / GC_RECORD
    try:
        doc = json.loads(path.read_text())
        return {int(v) for v in doc.get("removed_versions", [])}
    except (OSError, ValueError, TypeError):
        return set()


def verify(store, *, full: bool = True, batch_size: int = _BATCH) -> dict:
    """Check every version, row, descriptor cache, artefact and tag of ``store``.

    Parameters
    ----------
    store : pesdata.Store
        A local store.
    full : bool
        Recompute ``geometry_hash`` and ``id`` for the rows of every version (default); when
        false only for the latest version's fragments (see the module docstring).
    batch_size : int
        Rows read at a time.

    Returns
    -------
    dict
        ``ok`` (no problem of severity ``error``), ``versions_checked`` (versions opened and
        scanned), ``rows_checked`` (distinct fragment rows read), ``problems`` (list of dicts
        with ``kind``, ``severity``, ``where``, ``message``).
    """
    if store.lock_path is None:
        raise ParameterError(f"verify needs a local store directory, not {store.uri!r}")
    problems: list[dict] = []
    table = store.table
    manifests = table._manifests()
    numbers = sorted(_manifest_number(p) for p in manifests)
    versions: dict[int, object] = {}
    for v in numbers:
        try:
            versions[v] = table.dataset(v)
        except (StoreCorruptError, VersionNotFound) as exc:
            problems.append(_problem("version_unreadable", f"version {v}", str(exc)))
    removed = removed_versions(store)
    if numbers:
        for v in sorted(set(range(1, numbers[-1] + 1)) - set(numbers) - removed):
            problems.append(_problem("manifest_missing", f"version {v}",
                                     f"version {v} has no manifest under {table.uri}/_versions"))
    latest = max(versions) if versions else None
    rows, digests, layout = _check_rows(versions, latest, full, batch_size, problems)
    all_ids = _check_unique(digests, layout, problems)
    _check_tags(store, set(versions), problems)
    pins = pinned_versions(store, problems)
    for v, names in sorted(pins.items()):
        if v not in versions:
            for name in names:
                if name.startswith(RECORD_ONLY) and v in removed:
                    continue  # a curate report of a version gc removed: history, not a need
                problems.append(_problem(
                    "artefact_version_missing", f"artefacts/{name}.json",
                    f"{name} is pinned to version {v}, which the store does not have"))
    _check_ledgers(store, problems)
    from ._verify_arrays import check_descriptors

    check_descriptors(store, all_ids, problems)
    return {
        "ok": not any(p["severity"] == "error" for p in problems),
        "versions_checked": len(versions),
        "rows_checked": rows,
        "problems": problems,
    }


def _manifest_number(path: str) -> int:
    from ._table import _U64

    n = int(path.rsplit("/", 1)[-1][: -len(".manifest")])
    return _U64 - n if n > _U64 // 2 else n


# -- rows ---------------------------------------------------------------------------------------
def _check_schema(v: int, schema: pa.Schema, problems: list) -> bool:
    from ..schema import ARRAY_PREFIX, column_kind, structure_schema

    ok = True
    for f in structure_schema():
        if schema.get_field_index(f.name) < 0:
            problems.append(_problem("schema_invalid", f"version {v}",
                                     f"column '{f.name}' is missing"))
            ok = False
        elif not schema.field(f.name).type.equals(f.type):
            problems.append(_problem(
                "schema_invalid", f"version {v}",
                f"column '{f.name}' has type {schema.field(f.name).type}, expected {f.type}"))
            ok = False
    known = set(structure_schema().names)
    for f in schema:
        if f.name in known:
            continue
        if not f.name.startswith(ARRAY_PREFIX):
            problems.append(_problem("schema_invalid", f"version {v}",
                                     f"unknown column '{f.name}'"))
            continue
        try:
            column_kind(f)
        except Exception as exc:  # noqa: BLE001 - SchemaError, reported
            problems.append(_problem("schema_invalid", f"version {v}", str(exc)))
    return ok


def _check_rows(versions: dict, latest, full: bool, batch_size: int, problems: list):
    """Read each distinct fragment once (see the module docstring).

    Returns
    -------
    n : int
        Rows read.
    digests : dict
        Fragment key → the 16-byte digests of its live rows' ids (None: unreadable).
    layout : dict
        Version → its fragment keys (None: the version's schema is invalid).
    """
    digests: dict = {}
    layout: dict = {}
    n = 0
    newest: set = set()  # the latest version's fragments: rehashed even with full=False
    if latest is not None:
        try:
            newest = {_fragment_key(f.metadata) for f in versions[latest].get_fragments()}
        except (OSError, ValueError, RuntimeError):  # reported when the version is scanned
            pass
    for v, ds in sorted(versions.items()):
        if not _check_schema(v, ds.schema, problems):
            layout[v] = None
            continue
        layout[v] = []
        for frag in ds.get_fragments():
            meta = frag.metadata
            files = tuple(d.path for d in meta.files)
            key = _fragment_key(meta)
            layout[v].append(key)
            if key in digests:
                continue
            where = f"version {v} fragment {meta.id} ({', '.join(files)})"
            rehash = full or key in newest
            parts = []
            try:
                for batch in frag.to_batches(batch_size=batch_size):
                    n += batch.num_rows
                    if batch.num_rows:
                        _check_batch(batch, rehash, where, problems)
                        parts.append(_digests(batch.column("id")))
                digests[key] = np.concatenate(parts) if parts else np.array([], dtype="S16")
            except (OSError, pa.ArrowException, ValueError, RuntimeError) as exc:
                problems.append(_problem("data_unreadable", where, _first_line(exc)))
                digests[key] = None
    return n, digests, layout


def _fragment_key(meta) -> tuple:
    """A fragment's identity across versions: id, data files and deletion file."""
    return (meta.id, tuple(d.path for d in meta.files), repr(meta.deletion_file))


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]


def _offsets(col: pa.Array) -> np.ndarray:
    if not len(col):
        return np.zeros(1, np.int64)
    offsets = col.offsets.to_numpy()  # a sliced array keeps its parent's offsets
    return offsets - offsets[0]


def _flat(col) -> np.ndarray:
    """Values of a list<fixed_size_list<double,k>> column, as one flat array."""
    inner = col.flatten()
    return inner.flatten().to_numpy(zero_copy_only=False)


def _check_batch(batch: pa.RecordBatch, rehash: bool, where: str, problems: list) -> None:
    """Per-atom lengths; with ``rehash`` the stored geometry_hash and id against the content."""
    ids = batch.column("id").to_pylist()
    numbers_col = batch.column("numbers")
    offs = _offsets(numbers_col)
    n_atoms = batch.column("n_atoms").to_numpy(zero_copy_only=False)
    counts = np.diff(offs)
    for name in ("positions", "forces"):
        col = batch.column(name)
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        lens = col.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(valid & (lens != counts))
        for k in bad[:5]:
            problems.append(_problem("row_invalid", f"{where} id {ids[k]}",
                                     f"{name} has {lens[k]} rows for {counts[k]} atoms"))
    for k in np.flatnonzero(n_atoms != counts)[:5]:
        problems.append(_problem("row_invalid", f"{where} id {ids[k]}",
                                 f"n_atoms is {n_atoms[k]} but numbers has {counts[k]} entries"))
    if not rehash:
        return
    numbers = numbers_col.flatten().to_numpy(zero_copy_only=False).astype("<i2")
    pos_col = batch.column("positions")
    pos = _flat(pos_col)
    poffs = _offsets(pos_col) * 3
    cell = batch.column("cell").flatten().to_numpy(zero_copy_only=False)
    pbc = batch.column("pbc").flatten().to_numpy(zero_copy_only=False).astype("u1")
    methods = batch.column("method").to_pylist()
    stored_gh = batch.column("geometry_hash").to_pylist()
    pos_q, pos_wide = _quantize(pos)
    cell_q, cell_wide = _quantize(cell)
    pos_bad = _not_ok(pos_wide)
    cell_bad = _not_ok(cell_wide)
    for k in range(batch.num_rows):
        p = slice(int(poffs[k]), int(poffs[k + 1]))
        c = slice(9 * k, 9 * k + 9)
        if not (pos_bad is not None and pos_bad[p].any()
                or cell_bad is not None and cell_bad[c].any()):
            h = hashlib.blake2b(digest_size=16)
            h.update(numbers[offs[k]:offs[k + 1]].tobytes())
            h.update(pos_q[p].tobytes())
            h.update(cell_q[c].tobytes())
            h.update(pbc[3 * k:3 * k + 3].tobytes())
            gh = h.hexdigest()
        else:  # non-finite or huge coordinates: the reference function, row by row
            gh = geometry_hash(numbers[offs[k]:offs[k + 1]], pos[p].reshape(-1, 3),
                               cell[c].reshape(3, 3), pbc[3 * k:3 * k + 3].astype(bool))
        if gh != stored_gh[k]:
            problems.append(_problem(
                "hash_mismatch", f"{where} id {ids[k]}",
                f"geometry_hash {stored_gh[k]} does not match the content ({gh})"))
        elif structure_id(gh, methods[k]) != ids[k]:
            problems.append(_problem(
                "id_mismatch", f"{where} id {ids[k]}",
                f"id does not match geometry_hash + method {methods[k]!r} "
                f"({structure_id(gh, methods[k])})"))


def _not_ok(wide: np.ndarray | None) -> np.ndarray | None:
    """Where ``_quantize`` could not round a value (its ``wide`` output is non-zero or NaN)."""
    return None if wide is None else (wide != 0) | np.isnan(wide)


_HEX = np.zeros(256, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)


def _digests(col: pa.Array) -> np.ndarray:
    """The 16-byte digests of 32-hex-character ids, vectorised (an id that is not 32 hex
    characters maps to some digest: the rehash reports it as ``id_mismatch``)."""
    text = np.asarray(col.to_numpy(zero_copy_only=False), dtype="S32")
    if not len(text):
        return np.array([], dtype="S16")
    nibbles = _HEX[np.frombuffer(text.tobytes(), np.uint8).reshape(-1, 32)]
    packed = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
    return np.ascontiguousarray(packed).view("S16").ravel()


def _prefix(digests: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each 16-byte digest, as big-endian uint64 (fast to sort)."""
    return np.frombuffer(digests.tobytes(), ">u8")[::2].astype(np.uint64)


def _check_unique(digests: dict, layout: dict, problems: list) -> np.ndarray | None:
    """Ids unique within each version, from the fragments' cached digests (sorting 8-byte
    prefixes, then comparing whole digests where two prefixes agree). Returns the sorted
    distinct prefixes of every version's ids (None when some fragment was unreadable)."""
    complete = all(d is not None for d in digests.values())
    for v, keys in sorted(layout.items()):
        if keys is None or any(digests[k] is None for k in keys):
            complete = False
            continue
        ids = np.concatenate([digests[k] for k in keys]) if keys else np.array([], "S16")
        prefix = _prefix(ids)
        order = np.argsort(prefix, kind="stable")
        same = np.flatnonzero(prefix[order][1:] == prefix[order][:-1])
        dup = {ids[order[i]] for i in same if ids[order[i]] == ids[order[i + 1]]}
        if dup:
            example = min(dup).ljust(16, b"\0").hex()
            problems.append(_problem(
                "duplicate_id", f"version {v}",
                f"{len(dup)} id(s) occur more than once, e.g. {example}"))
    if not complete:
        return None
    parts = [d for d in digests.values() if d is not None and len(d)]
    return np.unique(_prefix(np.concatenate(parts))) if parts else np.array([], np.uint64)


def _check_tags(store, existing: set[int], problems: list) -> None:
    base = Path(store.table.uri) / "_refs" / "tags"
    if not base.is_dir():
        return
    for f in sorted(base.glob("*.json")):
        try:
            v = int(json.loads(f.read_text())["version"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(_problem("tag_invalid", f"tag {f.stem}", f"{f}: unreadable ({exc})"))
            continue
        if v not in existing:
            problems.append(_problem("tag_dangling", f"tag {f.stem}",
                                     f"tag {f.stem!r} names version {v}, which does not exist"))


def _check_ledgers(store, problems: list) -> None:
    base = Path(store.root) / "artefacts" / "selection"
    if not base.is_dir():
        return
    for f in sorted(base.glob("*.json")):
        if not f.name.startswith(".") and not f.with_suffix(".parquet").is_file():
            problems.append(_problem("ledger_rows_missing", f"artefacts/selection/{f.name}",
                                     f"ledger {f.stem!r} has no {f.stem}.parquet"))
    for f in sorted(base.glob("*.parquet")):
        if not f.name.startswith(".") and not f.with_suffix(".json").is_file():
            problems.append(_problem("ledger_orphan", f"artefacts/selection/{f.name}",
                                     f"{f.name} has no summary {f.stem}.json (gc removes it)",
                                     "warning"))


def format_problems(report: dict) -> list[str]:
    """One line per problem: ``severity kind where: message``."""
    return [f"{p['severity']} {p['kind']} {p['where']}: {p['message']}"
            for p in report["problems"]]

