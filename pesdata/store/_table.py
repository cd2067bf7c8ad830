"""The structure table: a Lance dataset with stable row ids, written through one commit path.

Every write goes through :meth:`StructureTable.commit`: a single ``merge_insert`` on ``id``
(new ids inserted, unlabelled rows relabelled) committed as one Lance transaction carrying the
pesdata commit message and metadata in its transaction properties. Lance versions are
immutable; a crash before the commit leaves only unreferenced data files.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from datetime import timezone

import fsspec
import lance
import pyarrow as pa
import pyarrow.compute as pc
from lance.fragment import write_fragments

from .._interrupt import check as check_interrupt
from ..errors import SchemaError, StoreCorruptError, VersionNotFound, from_os_error
from ..schema import structure_schema

__all__ = ["StructureTable"]

MESSAGE_KEY = "__lance_commit_message"
META_KEY = "pesdata"
UNLABELLED = "target.energy IS NULL AND target.forces IS NULL"
_U64 = 2**64 - 1  # Lance's V2 manifest naming: _versions/<u64::MAX - version>.manifest
#: A commit leaving more fragments than this compacts the table (measured: 130 one-row
#: fragments compact in 0.2 s; scanning the ids of 130 fragments takes 30 ms, of 2 fragments 1 ms).
COMPACT_ABOVE = 64
#: Lance's default target rows per compacted fragment (``compact_files``).
COMPACT_TARGET_ROWS = 1024 * 1024
#: Bytes Lance's file writer buffers across all columns before it writes pages (its default is
#: 8 MiB per column: +216 MB while appending 10⁶ 4-atom rows, +83 MB with this; scans and takes
#: of the written file measured as fast).
WRITE_BUFFER_BYTES = 32 * 2**20


class StructureTable:
    """Thin wrapper around the Lance dataset of a store.

    Parameters
    ----------
    uri : str
        Location of the Lance dataset.
    storage_options : dict, optional
        Passed to Lance for object stores.
    """

    def __init__(self, uri: str, storage_options: dict | None = None) -> None:
        self.uri = uri
        self.storage_options = storage_options

    # -- creation and opening -------------------------------------------------------------
    @classmethod
    def create(cls, uri: str, storage_options: dict | None = None) -> StructureTable:
        """Create an empty table (version 1) with the registry's schema."""
        empty = structure_schema().empty_table()
        lance.write_dataset(
            empty,
            uri,
            mode="create",
            enable_stable_row_ids=True,
            commit_message="create store",
            transaction_properties={META_KEY: json.dumps({"kind": "create"})},
            storage_options=storage_options,
        )
        return cls(uri, storage_options)

    def dataset(self, version: int | str | None = None) -> lance.LanceDataset:
        """The Lance dataset at ``version`` (number or tag; ``None`` = latest).

        Raises
        ------
        VersionNotFound
            ``version`` names no version or tag of the table.
        StoreCorruptError
            The table cannot be opened at that version although its manifest is there (a
            truncated or damaged manifest, an I/O error); the message names the manifest and the
            Lance error is chained. Other versions stay readable by number.
        """
        try:
            return lance.dataset(self.uri, version=version, storage_options=self.storage_options)
        except (ValueError, OSError, RuntimeError) as exc:
            if version is None:
                manifest = self._manifests()[-1:] or [f"{self.uri}/_versions"]
                raise StoreCorruptError(
                    f"{manifest[0]}: the latest version of the structure table cannot be read "
                    f"({_short(exc)}); older versions can still be read by number"
                ) from exc
            if isinstance(version, str) and not version.lstrip("-").isdigit():
                if version not in self._tag_names():
                    raise VersionNotFound(f"no tag {version!r} in store") from exc
                raise StoreCorruptError(
                    f"{self.uri}: tag {version!r} cannot be read ({_short(exc)})"
                ) from exc
            manifest = self._manifest(int(version))
            if manifest is None:
                raise VersionNotFound(f"no version {version!r} in store") from exc
            raise StoreCorruptError(
                f"{manifest}: version {version} of the structure table cannot be read "
                f"({_short(exc)})"
            ) from exc

    def newest_readable(self) -> lance.LanceDataset:
        """The latest version, or when its manifest is damaged the newest one that opens.

        For what lives beside the versions (tags, the version list): a damaged latest
        manifest must not hide them. Raises the latest version's StoreCorruptError when no
        version opens.
        """
        try:
            return self.dataset()
        except StoreCorruptError as latest:
            fs, root = self._fs()
            for path in reversed(self._manifests()):
                n = int(path.rsplit("/", 1)[-1][: -len(".manifest")])
                try:
                    return self.dataset(_U64 - n if n > _U64 // 2 else n)
                except (StoreCorruptError, VersionNotFound):
                    continue
            raise latest

    # -- manifests (for error messages: which file is damaged, which version is missing) -------
    def _fs(self):
        return fsspec.core.url_to_fs(self.uri, **(self.storage_options or {}))

    def _manifests(self) -> list[str]:
        """Paths of the version manifests, oldest version first."""
        fs, root = self._fs()
        base = f"{root.rstrip('/')}/_versions"
        try:
            names = [p.rsplit("/", 1)[-1] for p in fs.ls(base, detail=False)]
        except FileNotFoundError:
            return []
        numbered = []
        for name in names:
            stem = name[: -len(".manifest")] if name.endswith(".manifest") else ""
            if stem.isdigit():
                n = int(stem)
                numbered.append((_U64 - n if n > _U64 // 2 else n, f"{base}/{name}"))
        return [p for _, p in sorted(numbered)]

    def _manifest(self, version: int) -> str | None:
        """The manifest file of ``version``, or None when there is none."""
        if version < 0:
            return None
        fs, root = self._fs()
        base = f"{root.rstrip('/')}/_versions"
        for name in (f"{_U64 - version}.manifest", f"{version}.manifest"):
            if fs.exists(f"{base}/{name}"):
                return f"{base}/{name}"
        return None

    def _tag_names(self) -> set[str]:
        fs, root = self._fs()
        base = f"{root.rstrip('/')}/_refs/tags"
        try:
            return {p.rsplit("/", 1)[-1].removesuffix(".json") for p in fs.ls(base, detail=False)}
        except FileNotFoundError:
            return set()

    def latest_version(self) -> int:
        return self.dataset().version

    # -- reads used by curate --------------------------------------------------------------
    def lookup(self, ds: lance.LanceDataset, ids: list[str], columns: list[str]) -> pa.Table:
        """Rows of ``ds`` whose ``id`` is in ``ids`` (only ``columns``).

        Raises
        ------
        StoreCorruptError
            The table's data files cannot be read (missing or truncated).
        """
        try:
            if not ids or ds.count_rows() == 0:
                return pa.table({c: pa.array([], ds.schema.field(c).type) for c in columns})
            return ds.to_table(columns=columns, filter=pc.field("id").isin(ids))
        except (pa.ArrowException, OSError) as exc:
            raise StoreCorruptError(
                f"{self.uri}: version {ds.version}: the table's data files cannot be read "
                f"({_short(exc)})"
            ) from exc

    # -- the one write path ------------------------------------------------------------------
    def commit(
        self,
        batches: Iterable[pa.RecordBatch],
        schema: pa.Schema,
        *,
        message: str,
        meta: dict,
        append_only: bool = False,
    ) -> int:
        """Insert new rows and relabel unlabelled ones in one new version.

        Parameters
        ----------
        batches : iterable of pyarrow.RecordBatch, or a callable returning one
            Rows of the structure schema (``schema``), unique by ``id``. A callable (e.g. a
            spool's ``batches``) lets the rows be checked against a grown schema before the
            schema change is committed.
        schema : pyarrow.Schema
            Their schema; extra ``arr_*`` columns missing from the table are added first.
        message : str
            Commit message.
        meta : dict
            JSON-serialisable metadata stored with the version (e.g. curate counts).
        append_only : bool
            The caller holds the store's write lock and has checked that no row's id is in
            the table: the rows are appended in order (faster than the ``merge_insert`` that
            is used otherwise, and keeps file order).

        Returns
        -------
        int
            The new version number. When the commit leaves more than :data:`COMPACT_ABOVE`
            fragments the table is compacted right after it (same rows and ids, a further
            version) and that version's number is returned.

        Raises
        ------
        SchemaError
            A column of the rows cannot be cast to the table's type (nothing is committed).
        """
        check_interrupt()
        ds = self.dataset()
        missing = [f for f in schema if ds.schema.get_field_index(f.name) < 0]
        if missing:  # schema evolution: new per-atom array columns, all null so far
            # Lance commits the schema change as its own version; check first that every row
            # fits the grown schema, so a failure (a type clash) leaves no trace in the history.
            # Only a kill between the two commits can leave the "schema: add columns" version.
            if callable(batches):
                grown = pa.schema(list(_without_metadata(ds.schema)) + missing)
                for _ in _conform(batches(), grown):
                    pass
            with self._os_errors():
                ds.add_columns(missing)
            ds = self.dataset()
        target = ds.schema
        rows = batches() if callable(batches) else batches
        clash: list[SchemaError] = []  # Lance wraps errors raised in the reader in its own

        def conformed():
            try:
                yield from _conform(rows, target)
            except SchemaError as exc:
                clash.append(exc)
                raise

        reader = pa.RecordBatchReader.from_batches(_without_metadata(target), conformed())
        try:
            with self._os_errors():
                transaction = self._transaction(ds, reader, append_only)
        except Exception:
            if clash:
                raise clash[0]  # noqa: B904 - keeps its Arrow cause; Lance's error is the context
            raise
        props = dict(transaction.transaction_properties or {})
        props[META_KEY] = json.dumps(meta)
        props[MESSAGE_KEY] = message
        transaction.transaction_properties = props
        check_interrupt()  # a Ctrl-C the CLI recorded: stop before the version exists
        with self._os_errors():
            new = lance.LanceDataset.commit(
                self.uri, transaction, storage_options=self.storage_options
            )
        return self._compact_if_needed(new)

    @contextlib.contextmanager
    def _os_errors(self):
        """A full disk or a read-only store met while writing: DiskFull / StoreReadOnly naming
        the store (Lance reports them as text with Rust's ``(os error N)``)."""
        try:
            yield
        except (OSError, RuntimeError, ValueError) as exc:
            new = from_os_error(exc, self.uri.removesuffix("/structures.lance"), denied=False)
            if new is not None:
                raise new from exc
            raise

    def _compact_if_needed(self, ds: lance.LanceDataset) -> int:
        """Compact when fragments pile up (DESIGN §4); the caller holds the write lock. A
        failed compaction leaves the committed version as it is (a warning, no error)."""
        small = sum(1 for f in ds.get_fragments()
                    if f.metadata.num_rows < COMPACT_TARGET_ROWS // 2 or f.metadata.num_deletions)
        if small <= COMPACT_ABOVE:  # fragments at Lance's target size are left alone
            return ds.version
        try:
            ds.optimize.compact_files()
        except (OSError, RuntimeError, ValueError) as exc:
            import warnings

            warnings.warn(f"{self.uri}: compaction after commit failed ({_short(exc)})",
                          RuntimeWarning, stacklevel=3)
            return ds.version
        return self.latest_version()

    def _transaction(self, ds, reader: pa.RecordBatchReader, append_only: bool):
        """The uncommitted Lance transaction writing ``reader``'s rows (see :meth:`commit`)."""
        if append_only:
            fragments = write_fragments(
                reader, self.uri, schema=reader.schema, storage_options=self.storage_options,
                enable_stable_row_ids=True, data_cache_bytes=WRITE_BUFFER_BYTES,
            )
            transaction = lance.Transaction(
                read_version=ds.version, operation=lance.LanceOperation.Append(fragments)
            )
        else:
            builder = (
                ds.merge_insert("id")
                .when_matched_update_all(condition=UNLABELLED)
                .when_not_matched_insert_all()
            )
            transaction, _stats = builder.execute_uncommitted(reader)
        return transaction

    # -- history -----------------------------------------------------------------------------
    def history(self) -> list[dict]:
        """One dict per version: version, timestamp (UTC), message, meta, n_structures."""
        ds = self.dataset()
        out = []
        previous = None
        for v in ds.versions():
            number = v["version"]
            # versions written by other tools (or old Lance) may have no transaction: None
            transaction = ds.read_transaction(number)
            props = (transaction.transaction_properties or {}) if transaction else {}
            ts = v["timestamp"]
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=timezone.utc)
            meta = json.loads(props.get(META_KEY, "{}") or "{}")
            message = (props.get(MESSAGE_KEY) or meta.get("kind")
                       or self._describe(number, previous))
            previous = number
            out.append(
                {
                    "version": number,
                    "timestamp": ts,
                    "message": message,
                    "n_structures": int(v["metadata"].get("total_rows", 0)),
                    "meta": meta,
                }
            )
        return out


    def _describe(self, number: int, previous: int | None) -> str:
        """A message for versions written without one (schema evolution, maintenance);
        ``previous`` is the version before it that still exists (gc may have removed some)."""
        if previous is None:
            return ""
        new = self.dataset(number).schema.names
        old = set(self.dataset(previous).schema.names)
        added = [n for n in new if n not in old]
        if added:
            return "schema: add columns " + ", ".join(added)
        return "maintenance (compaction / index)"


def _short(exc: BaseException, limit: int = 200) -> str:
    """The first line of an error message, capped (Lance appends source locations)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _without_metadata(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.remove_metadata() for f in schema])


def _conform(batches: Iterable[pa.RecordBatch], target: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Order columns as the table has them, filling absent ``arr_*`` columns with nulls.

    Raises
    ------
    SchemaError
        A column's values cannot be cast to the table's type; names the column and both types.
    """
    schema = _without_metadata(target)
    for batch in batches:
        cols = []
        for f in schema:
            idx = batch.schema.get_field_index(f.name)
            if idx < 0:
                cols.append(pa.nulls(batch.num_rows, f.type))
                continue
            column = batch.column(idx)
            try:
                cols.append(column.cast(f.type))
            except pa.ArrowException as exc:
                raise SchemaError(
                    f"column '{f.name}': values of type {column.type} do not fit the table's "
                    f"type {f.type} ({_short(exc)})"
                ) from exc
        yield pa.RecordBatch.from_arrays(cols, schema=schema)
