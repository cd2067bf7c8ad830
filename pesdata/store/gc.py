"""``gc``: remove what no version, tag or artefact needs; ``optimize``: compact the table.

What ``gc`` removes (``dry_run=True`` lists the same things and removes nothing):

* **spool leftovers** under ``_pesdata/tmp`` (a killed curate's ``spool-*``). Curate spools only
  while it holds the store's write lock, and ``gc`` holds that lock, so nothing there is live.
* **unindexed descriptor segments** ``arrays/<hash>/seg-*`` that no ``index/*.parquet`` names
  (a killed ``describe``). ``describe`` does not take the store lock and writes a segment's
  index file only after the segment is complete, so a segment of a running describe has no
  index entry yet: only segments whose newest file is older than ``min_age`` seconds (default
  one hour) are removed.
* **temporary files** of atomic writes (hidden ``.*.tmp`` files and directories under
  ``arrays/`` and ``artefacts/``) older than ``min_age``, and **orphan ledger rows**
  (``artefacts/selection/<name>.parquet`` without ``<name>.json``; ``select`` writes the
  parquet first) older than ``min_age``.
* **old versions**: untagged versions of the table older than ``older_than`` days and not
  among the newest ``keep_versions``, through Lance's ``cleanup_old_versions(versions=...)``,
  which also deletes the data files only they used (and, as ``gc`` holds the write lock,
  data files of killed commits). Never removed: the latest version, a tagged version, or a
  version any artefact names (:data:`pesdata.store.verify.PINS`: splits, ledgers, model
  cards, loop records, export manifests, curate reports, queues). Removed version numbers are
  recorded in ``_pesdata/gc.json`` (written before the removal) so that ``verify`` tells them
  from deleted manifests.
  When an artefact is not valid JSON (its pins are unknown) no version is removed.
* then, when the latest version has more than ``compact_above`` fragments, the table is
  compacted (:func:`optimize`: same rows and ids, fewer files, a new version).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..atomic import atomic_write
from ..errors import ParameterError
from ._table import COMPACT_ABOVE  # fragments above which a commit or gc compacts the table

__all__ = ["COMPACT_ABOVE", "gc", "optimize", "unindexed_segments"]

MIN_AGE = 3600.0


def optimize(store) -> int:
    """Compact fragments and (re)build the BTREE indices on ``id`` and ``geometry_hash``.

    Makes new versions with the same rows (under the store's write lock).

    Returns
    -------
    int
        The latest version number.

    Raises
    ------
    ConcurrentWriteError
        Another writer held the lock for more than 600 s.
    """
    with store.writing():
        _optimize_locked(store)
    return store.version


def _optimize_locked(store) -> None:
    ds = store.table.dataset()
    if ds.count_rows():
        ds.optimize.compact_files()
        ds = store.table.dataset()
        for col in ("id", "geometry_hash"):
            ds.create_scalar_index(col, "BTREE", replace=True)
            ds = store.table.dataset()


def _newest_mtime(path: Path) -> float:
    try:
        newest = path.lstat().st_mtime
    except OSError:
        return 0.0
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                try:
                    newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
                except OSError:
                    pass
    return newest


def unindexed_segments(group: Path, min_age: float = 0.0, now: float | None = None) -> list:
    """Segments of descriptor group ``group`` that no index file names (older than
    ``min_age`` seconds, by their newest file).

    Parameters
    ----------
    group : pathlib.Path
        ``<store>/arrays/<config_hash>``.
    min_age : float
        Seconds; younger segments may belong to a running ``describe``.
    now : float, optional
        The current time (``time.time()``).

    Returns
    -------
    list of pathlib.Path
    """
    import pyarrow.parquet as pq

    group = Path(group)
    named: set[str] = set()
    for f in (group / "index").glob("*.parquet"):
        if f.name.startswith("."):
            continue
        try:
            named.update(pq.read_table(f, columns=["segment"]).column(0).to_pylist())
        except Exception:  # noqa: BLE001 - unreadable index: keep every segment (verify says)
            return []
    now = time.time() if now is None else now
    return [p for p in sorted(group.glob("seg-*"))
            if p.name not in named and now - _newest_mtime(p) >= min_age]


def _old(path: Path, min_age: float, now: float) -> bool:
    return now - _newest_mtime(path) >= min_age


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _orphans(store, min_age: float, now: float) -> dict[str, list[Path]]:
    """What gc would remove besides versions, by category."""
    root = Path(store.root)
    out: dict[str, list[Path]] = {"spool": [], "segments": [], "tmp_files": [], "ledger_rows": []}
    tmp = root / "_pesdata" / "tmp"
    if tmp.is_dir():  # curate spools under the write lock, which gc holds: none is live
        out["spool"] = sorted(tmp.iterdir())
    arrays = root / "arrays"
    for group in sorted(p for p in arrays.iterdir() if p.is_dir()) if arrays.is_dir() else []:
        out["segments"] += unindexed_segments(group, min_age, now)
    for base in (arrays, root / "artefacts"):
        if base.is_dir():
            out["tmp_files"] += [p for p in sorted(base.rglob(".*.tmp")) if _old(p, min_age, now)]
    sel = root / "artefacts" / "selection"
    if sel.is_dir():
        out["ledger_rows"] = [p for p in sorted(sel.glob("*.parquet"))
                              if not p.name.startswith(".") and not p.with_suffix(".json").exists()
                              and _old(p, min_age, now)]
    return out


def _removable_versions(store, keep_versions: int, older_than: float | None) -> tuple:
    """(versions gc may remove, versions it keeps and why)."""
    from .verify import RECORD_ONLY, pinned_versions

    ds = store.table.dataset()
    listed = sorted(ds.versions(), key=lambda v: v["version"])
    tagged = set(store.tags().values())
    unreadable: list = []
    pinned = pinned_versions(store, unreadable)
    if unreadable:  # an artefact gc cannot read or validate may name any version: keep all
        why = f"{unreadable[0]['where']} is invalid; run pesdata verify"
        return [], {v["version"]: why for v in listed}
    pinned = {v: names for v, names in pinned.items()
              if not all(n.startswith(RECORD_ONLY) for n in names)}
    newest = {v["version"] for v in listed[-keep_versions:]} if keep_versions else set()
    newest.add(ds.version)
    now = datetime.now(timezone.utc)
    cutoff = None if older_than is None else now - timedelta(days=older_than)
    remove, kept = [], {}
    for k, v in enumerate(listed):
        number = v["version"]
        # a version stopped being the latest when the next one was made: a reader that opened it
        # as the latest may still be reading it until then + older_than (Lance gives naive
        # local times)
        after = listed[k + 1]["timestamp"] if k + 1 < len(listed) else None
        superseded = None if after is None else (
            after.astimezone(timezone.utc) if after.tzinfo is None else after)
        if number in newest:
            kept[number] = "recent"
        elif number in tagged:
            kept[number] = "tagged"
        elif number in pinned:
            kept[number] = "named by " + ", ".join(sorted(pinned[number]))
        elif cutoff is not None and (superseded is None or superseded > cutoff):
            kept[number] = "superseded less than the keep window ago"
        else:
            remove.append(number)
    return remove, kept


def _record_removed(store, versions: list[int]) -> None:
    from .verify import GC_RECORD, removed_versions

    done = sorted(removed_versions(store) | set(versions))
    with atomic_write(Path(store.root) / GC_RECORD, "w") as fh:
        json.dump({"removed_versions": done}, fh)


def gc(
    store,
    *,
    dry_run: bool = False,
    keep_versions: int = 1,
    older_than: float | None = 7.0,
    versions: bool = True,
    min_age: float = MIN_AGE,
    compact_above: int = COMPACT_ABOVE,
    lock_timeout: float = 600.0,
) -> dict:
    """Remove orphans and old untagged, unpinned versions; compact when fragments pile up.

    See the module docstring for what is removed and what is never removed.

    Parameters
    ----------
    store : pesdata.Store
        A local store.
    dry_run : bool
        List what would be removed; remove nothing.
    keep_versions : int
        Always keep the newest ``keep_versions`` versions (≥ 1; the latest is always kept).
    older_than : float or None
        Only versions older than this many days are removed; ``None`` or 0: any age.
    versions : bool
        Remove old versions at all (false: orphans only).
    min_age : float
        Seconds an unindexed segment, a temporary file or an orphan ledger parquet must have
        been untouched before it is removed (a running ``describe`` or ``select`` may own it).
    compact_above : int
        Compact the table when its latest version has more fragments than this (0: never).
    lock_timeout : float
        Seconds to wait for the store's write lock.

    Returns
    -------
    dict
        ``dry_run``; ``spool``, ``segments``, ``tmp_files``, ``ledger_rows`` (paths removed or
        that would be), ``versions`` (version numbers), ``kept_versions`` (version → why),
        ``bytes`` (bytes of the listed files), ``fragments_before`` and ``compacted``.

    Raises
    ------
    ParameterError
        A bad ``keep_versions``, ``older_than``, ``min_age`` or ``compact_above``.
    ConcurrentWriteError
        Another writer held the lock for more than ``lock_timeout`` seconds.
    """
    from .._params import check_int

    keep_versions = check_int("keep_versions", keep_versions)
    compact_above = check_int("compact_above", compact_above, minimum=0)
    for name, value in (("older_than", older_than), ("min_age", min_age)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not value >= 0):
            raise ParameterError(f"{name} must be a number ≥ 0, not {value!r}")
    if store.lock_path is None:  # no write lock there: Lance's cleanup could race a writer
        raise ParameterError(f"gc needs a local store directory, not {store.uri!r}")
    with store.writing(timeout=lock_timeout):
        now = time.time()
        found = _orphans(store, min_age, now)
        remove, kept = (_removable_versions(store, keep_versions, older_than or None)
                        if versions else ([], {}))
        report = {"dry_run": dry_run, **{k: [str(p) for p in v] for k, v in found.items()},
                  "versions": remove, "kept_versions": kept,
                  "bytes": sum(_size(p) for v in found.values() for p in v)}
        fragments = len(store.table.dataset().get_fragments())
        report["fragments_before"] = fragments
        report["compacted"] = bool(compact_above and fragments > compact_above)
        if dry_run:
            return report
        for paths in found.values():
            for p in paths:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
        if remove:
            _record_removed(store, remove)  # first: a killed gc leaves no unexplained gap
            store.table.dataset().cleanup_old_versions(
                versions=remove, delete_unverified=True, error_if_tagged_old_versions=False)
        if report["compacted"]:
            _optimize_locked(store)
    return report
