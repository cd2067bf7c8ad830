"""The versioned structure store."""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd

from .._names import check_name
from ..atomic import atomic_write
from ..errors import (
    ParameterError,
    StoreCorruptError,
    StoreExistsError,
    StoreNotFoundError,
    TagExistsError,
    VersionNotFound,
    from_os_error,
)
from ._artefacts import ArtefactStore
from ._lock import write_lock
from ._snapshot import UPDATED, Snapshot
from ._table import StructureTable
from .gc import gc as _gc
from .gc import optimize as _optimize
from .verify import verify as _verify

__all__ = ["Store", "open_store", "store_exists"]

FORMAT_VERSION = 1
_MARKER = "_pesdata/store.json"


def store_exists(uri: str | os.PathLike, **storage_options) -> bool:
    """True when a pesdata store (its marker file) exists at ``uri``.

    Parameters
    ----------
    uri : str or path-like
        Store location (directory or fsspec URL).
    **storage_options
        Object-store options passed to fsspec.

    Returns
    -------
    bool
    """
    fs, root = fsspec.core.url_to_fs(str(uri), **storage_options)
    return bool(fs.exists(f"{root.rstrip('/')}/{_MARKER}"))


def _check_marker(fs, marker: str) -> None:
    """The store marker must be pesdata's, of a format this version reads."""
    try:
        with fs.open(marker, "r") as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:
        raise StoreCorruptError(f"{marker}: the store marker cannot be read ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != "pesdata-store":
        raise StoreCorruptError(
            f"{marker}: not a pesdata store marker (expected {{'format': 'pesdata-store', ...}})"
        )
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StoreCorruptError(f"{marker}: bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise StoreCorruptError(
            f"{marker}: store format {version} was written by a newer pesdata (this one reads "
            f"format {FORMAT_VERSION}); upgrade pesdata"
        )


def open_store(uri: str | os.PathLike, create: bool = False, **storage_options) -> Store:
    """Open the pesdata store at ``uri`` (a directory or an fsspec URL).

    Parameters
    ----------
    uri : str or path-like
        Store location.
    create : bool
        Create an empty store when none exists (an existing store is opened as is).
    **storage_options
        Object-store options passed to fsspec and Lance.

    Returns
    -------
    Store

    Raises
    ------
    StoreNotFoundError
        No store at ``uri`` and ``create`` is false.
    StoreExistsError
        ``create`` and ``uri`` is a file.
    StoreCorruptError
        The store marker (``_pesdata/store.json``) is damaged or of a newer format.
    """
    uri = str(uri)
    fs, root = fsspec.core.url_to_fs(uri, **storage_options)
    marker = f"{root.rstrip('/')}/{_MARKER}"
    if fs.exists(marker):
        _check_marker(fs, marker)
        return Store(uri, storage_options)
    if not create:
        raise StoreNotFoundError(f"no pesdata store at {uri!r} (create one with create=True)")
    if fs.exists(root) and fs.isfile(root):
        raise StoreExistsError(f"{uri!r} is a file, not a store directory")
    store = Store(uri, storage_options, _check=False)
    fs.makedirs(f"{root.rstrip('/')}/_pesdata", exist_ok=True)
    with write_lock(store.lock_path):
        if not fs.exists(marker):
            if not store.table._manifests():  # no table yet: make version 1
                StructureTable.create(store._table_uri, storage_options or None)
            doc = {"format": "pesdata-store", "format_version": FORMAT_VERSION}
            if _is_local(uri):
                with atomic_write(os.path.join(root, _MARKER), "w") as fh:
                    json.dump(doc, fh)
            else:  # object stores: a single PUT is atomic
                with fs.open(marker, "w") as fh:
                    json.dump(doc, fh)
    return store


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


class Store:
    """A versioned store of structures with labels (use :func:`open_store`).

    Every write makes a new immutable version; any version can be read by number or tag.
    """

    def __init__(self, uri: str, storage_options: dict | None = None, _check: bool = True):
        self.uri = uri
        self._fs, root = fsspec.core.url_to_fs(uri, **(storage_options or {}))
        self.root = root.rstrip("/")
        base = uri.rstrip("/")
        self._table_uri = (
            os.path.join(self.root, "structures.lance")
            if _is_local(uri)
            else f"{base}/structures.lance"
        )
        self.table = StructureTable(self._table_uri, storage_options or None)
        self.artefacts = ArtefactStore(f"{base}/artefacts" if not _is_local(uri) else
                                       os.path.join(self.root, "artefacts"))
        if _check and not self._fs.exists(f"{self.root}/{_MARKER}"):
            raise StoreNotFoundError(f"no pesdata store at {uri!r}")

    def __repr__(self) -> str:
        return f"Store({self.uri!r}, version={self.version})"

    # -- paths --------------------------------------------------------------------------------
    @property
    def lock_path(self) -> str | None:
        """The write-lock file of a local store (``None`` on object stores)."""
        return os.path.join(self.root, "_pesdata", "write.lock") if _is_local(self.uri) else None

    def tmp_dir(self) -> Path:
        """Scratch space for a writer (inside the store when local, so renames stay atomic).

        Returns
        -------
        pathlib.Path
            An existing directory.
        """
        if _is_local(self.uri):
            path = Path(self.root) / "_pesdata" / "tmp"
        else:  # pragma: no cover - object stores
            import tempfile

            path = Path(tempfile.gettempdir()) / "pesdata-spool"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def writing(self, timeout: float = 600.0):
        """Context manager holding the store's exclusive write lock (see :func:`write_lock`).

        Parameters
        ----------
        timeout : float
            Seconds to wait for another writer.

        Returns
        -------
        contextlib.AbstractContextManager
            Holds the lock inside its ``with`` block.

        Raises
        ------
        ConcurrentWriteError
            (On entering) another writer held the lock for more than ``timeout`` seconds.
        """
        return write_lock(self.lock_path, timeout=timeout)

    # -- versions -----------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """The latest version number."""
        return self.table.latest_version()

    def resolve(self, version: int | str | None = None) -> int:
        """Version number of ``version`` (a number, a numeric string, a tag or ``None``).

        Parameters
        ----------
        version : int, str or None
            A version number (negative counts back from the latest: ``-1`` is the latest), a
            numeric string, a tag name, or ``None`` for the latest.

        Returns
        -------
        int

        Raises
        ------
        VersionNotFound
            No such version or tag (the message lists the tags or the version range).
        ParameterError
            ``version`` is neither an integer (Python or numpy), a string nor None (a float
            or a bool is refused, never rounded).
        """
        if version is None:
            return self.version
        if isinstance(version, (bool, np.bool_)) or not isinstance(
            version, (str, numbers.Integral)
        ):
            raise ParameterError(
                f"version must be a version number, a tag name or None, not {version!r}"
            )
        if isinstance(version, numbers.Integral) or version.lstrip("-").isdigit():
            version = int(version)  # numpy integers (e.g. from log()) included
        if isinstance(version, str):
            tags = self.tags()
            if version not in tags:
                raise VersionNotFound(
                    f"no tag {version!r} in store; tags: {sorted(tags) or 'none'}"
                )
            return tags[version]
        if version >= 0:  # read it directly: a damaged latest manifest must not hide it
            try:
                self.table.dataset(version)
            except VersionNotFound as exc:
                known = self._known_versions()
                raise VersionNotFound(f"no version {version}; versions are {known}") from exc
            return int(version)
        known = [v["version"] for v in self.table.dataset().versions()]
        if -version > len(known):  # -1 = latest, -2 = the one before, ...
            raise VersionNotFound(f"no version {version} (store has {len(known)})")
        return known[version]

    def _known_versions(self) -> str:
        try:
            numbers = [v["version"] for v in self.table.dataset().versions()]
        except StoreCorruptError:
            return "unknown (the latest manifest is damaged)"
        return f"1..{max(numbers)}"

    def read(self, version: int | str | None = None) -> Snapshot:
        """A read-only :class:`Snapshot` of ``version`` (number or tag; ``None`` = latest).

        Parameters
        ----------
        version : int, str or None
            As for :meth:`resolve`.

        Returns
        -------
        Snapshot

        Raises
        ------
        VersionNotFound
            No such version or tag.
        """
        number = self.resolve(version)
        tag = version if isinstance(version, str) and not version.lstrip("-").isdigit() else None
        return Snapshot(self.table.dataset(number), tag=tag)

    def tag(self, name: str, version: int | str | None = None) -> int:
        """Name ``version`` (default latest) ``name``.

        Parameters
        ----------
        name : str
            The tag; not a number, without ``/``, ``\\`` or spaces, not starting with ``.``.
        version : int, str or None
            The version to tag (as for :meth:`resolve`; default the latest).

        Returns
        -------
        int
            The tagged version number.

        Raises
        ------
        ParameterError
            ``name`` is not a valid tag name.
        TagExistsError
            ``name`` already names a version (also when a concurrent writer just created it).
        VersionNotFound
            ``version`` does not exist.
        """
        check_name(name, "tag name")
        if name.isdigit():
            raise ParameterError(f"invalid tag name {name!r}: use a name that is not a number")
        number = self.resolve(version)
        ds = self.table.dataset()
        existing = ds.tags.list()
        if name in existing:
            raise TagExistsError(
                f"tag {name!r} already names version {existing[name]['version']}"
            )
        try:
            ds.tags.create(name, number)
        except (ValueError, OSError, RuntimeError) as exc:
            new = from_os_error(exc, self.root)
            if new is not None:  # a read-only store or a full disk
                raise new from exc
            if name in self.table.dataset().tags.list():  # a concurrent tagger won
                raise TagExistsError(f"tag {name!r} was just created by another writer") from exc
            if any(c in name for c in "/\\ ") or name.startswith("."):
                raise ParameterError(f"invalid tag name {name!r}: {exc}") from exc
            raise
        return number

    def tags(self) -> dict[str, int]:
        """Tag name → version number.

        Returns
        -------
        dict of str to int
        """
        ds = self.table.newest_readable()  # tags live beside the versions: a damaged latest
        return {k: int(v["version"]) for k, v in ds.tags.list().items()}  # manifest hides none

    def log(self) -> pd.DataFrame:
        """History: one row per version.

        Returns
        -------
        pandas.DataFrame
            Columns ``version``, ``timestamp`` (UTC), ``message``, ``n_structures`` and
            ``tags`` (comma-separated, sorted), oldest first.
        """
        tags: dict[int, list[str]] = {}
        for name, number in self.tags().items():
            tags.setdefault(number, []).append(name)
        rows = self.table.history()
        return pd.DataFrame(
            {
                "version": [r["version"] for r in rows],
                "timestamp": [r["timestamp"] for r in rows],
                "message": [r["message"] for r in rows],
                "n_structures": [r["n_structures"] for r in rows],
                "tags": [",".join(sorted(tags.get(r["version"], []))) for r in rows],
            }
        )

    def diff(self, a: int | str, b: int | str) -> dict[str, list[str]]:
        """What changed from version ``a`` to version ``b``.

        Parameters
        ----------
        a, b : int or str
            Versions (numbers or tags).

        Returns
        -------
        dict
            ``added`` (ids in ``b`` not in ``a``), ``removed`` (in ``a`` not in ``b``) and
            ``relabelled`` (in both, labels rewritten in between), each sorted.

        Raises
        ------
        VersionNotFound
            ``a`` or ``b`` does not exist.
        """
        ta = self.read(a).table(columns=["id", UPDATED])
        tb = self.read(b).table(columns=["id", UPDATED])
        ua = dict(zip(ta.column("id").to_pylist(), ta.column(UPDATED).to_pylist(), strict=True))
        ub = dict(zip(tb.column("id").to_pylist(), tb.column(UPDATED).to_pylist(), strict=True))
        return {
            "added": sorted(set(ub) - set(ua)),
            "removed": sorted(set(ua) - set(ub)),
            "relabelled": sorted(k for k in set(ua) & set(ub) if ua[k] != ub[k]),
        }

    def info(self, version: int | str | None = None) -> dict:
        """Summary of a version.

        Parameters
        ----------
        version : int, str or None
            As for :meth:`resolve` (default the latest).

        Returns
        -------
        dict
            ``version``, ``n_structures``, ``n_atoms``, ``elements`` (symbols), ``methods``
            (method → count), ``n_with_energy``, ``n_with_forces`` and ``tags``.

        Raises
        ------
        VersionNotFound
            No such version or tag.
        """
        from ase.data import chemical_symbols

        snap = self.read(version)
        t = snap.table(columns=["n_atoms", "method", "numbers"])  # forces are never read
        numbers = t.column("numbers").combine_chunks()
        elements = np.unique(numbers.values.to_numpy()) if len(numbers) else []
        methods = pd.Series(t.column("method").to_pylist(), dtype=object).value_counts()
        return {
            "version": snap.version,
            "n_structures": t.num_rows,
            "n_atoms": int(np.sum(t.column("n_atoms").to_numpy())) if t.num_rows else 0,
            "elements": [chemical_symbols[int(z)] for z in elements],
            "methods": {str(k): int(v) for k, v in methods.items()},
            "n_with_energy": snap.count("energy IS NOT NULL"),
            "n_with_forces": snap.count("forces IS NOT NULL"),
            "tags": sorted(k for k, v in self.tags().items() if v == snap.version),
        }

    # -- writing ------------------------------------------------------------------------------
    def curate(self, paths: str | os.PathLike | Sequence[str | os.PathLike], **options):
        """Ingest, validate and deduplicate structure files into a new version.

        Parameters
        ----------
        paths : path, sequence of paths, or sequence of ase.Atoms
            What to ingest.
        **options
            Keyword options of :func:`pesdata.curate.curate` (``method``, ``quarantine``, ...).

        Returns
        -------
        CurateReport

        Raises
        ------
        PesdataError
            As :func:`pesdata.curate.curate` raises (``ValidationError``, ``InputError``, ...).
        """
        from ..curate import curate

        return curate(self, paths, **options)

    def ledger(self, name: str) -> pd.DataFrame:
        """The selection ledger ``name`` (one row per candidate, see ``pesdata.select.ledger``).

        Its summary (thresholds, policy, counts) is ``pesdata.select.load_ledger(store, name)[1]``;
        the names kept are ``store.artefacts.list("selection")``.

        Raises
        ------
        ArtefactNotFound
            No ledger of that name.
        """
        from ..select.ledger import load_ledger

        return load_ledger(self, name)[0]

    def export(
        self,
        out: str | os.PathLike,
        version: int | str | None = None,
        format: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        *,
        to: str | None = None,
        split: str | None = None,
        fold: int = 0,
        e0: str = "none",
    ) -> int | dict:
        """Write a version to ``out`` (extxyz, ASE db, any format ASE writes), or for a trainer
        (``to="mace"``, ...): see :func:`pesdata.store._export.export_store` for the parameters,
        the return value and the errors."""
        from ._export import export_store

        return export_store(self, out, version, format, progress, to=to, split=split, fold=fold,
                            e0=e0)

    def optimize(self) -> int:
        """Compact the table and rebuild its id indices (see :func:`pesdata.store.gc.optimize`)."""
        return _optimize(self)

    def verify(self, **options) -> dict:
        """Check the store: :func:`pesdata.store.verify.verify` (options, result)."""
        return _verify(self, **options)

    def gc(self, **options) -> dict:
        """Remove what nothing needs: :func:`pesdata.store.gc.gc` (options, result)."""
        return _gc(self, **options)
