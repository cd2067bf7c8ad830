"""The structure table: a Lance dataset with stable row ids, written through one commit path.

Every write goes through :meth:`StructureTable.commit`: a single ``merge_insert`` on ``id``
(new ids inserted, unlabelled rows relabelled) committed as one Lance transaction carrying the
pesdata commit message and metadata in its transaction properties. Lance versions are
immutable; a crash before the commit leaves only unreferenced data files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import timezone

import lance
import pyarrow as pa
import pyarrow.compute as pc
from lance.fragment import write_fragments

from ..errors import VersionNotFound
from ..schema import structure_schema

__all__ = ["StructureTable"]

MESSAGE_KEY = "__lance_commit_message"
META_KEY = "pesdata"
UNLABELLED = "target.energy IS NULL AND target.forces IS NULL"


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
        """The Lance dataset at ``version`` (number or tag; ``None`` = latest)."""
        try:
            return lance.dataset(self.uri, version=version, storage_options=self.storage_options)
        except (ValueError, OSError, RuntimeError) as exc:
            if version is None:
                raise
            raise VersionNotFound(f"no version {version!r} in store ({exc})") from None

    def latest_version(self) -> int:
        return self.dataset().version

    # -- reads used by curate --------------------------------------------------------------
    def lookup(self, ds: lance.LanceDataset, ids: list[str], columns: list[str]) -> pa.Table:
        """Rows of ``ds`` whose ``id`` is in ``ids`` (only ``columns``)."""
        if not ids or ds.count_rows() == 0:
            return pa.table({c: pa.array([], ds.schema.field(c).type) for c in columns})
        return ds.to_table(columns=columns, filter=pc.field("id").isin(ids))

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
        batches : iterable of pyarrow.RecordBatch
            Rows of the structure schema (``schema``), unique by ``id``.
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
            The new version number.
        """
        ds = self.dataset()
        missing = [f for f in schema if ds.schema.get_field_index(f.name) < 0]
        if missing:  # schema evolution: new per-atom array columns, all null so far
            ds.add_columns(missing)
            ds = self.dataset()
        target = ds.schema
        reader = pa.RecordBatchReader.from_batches(
            _without_metadata(target), _conform(batches, target)
        )
        if append_only:
            fragments = write_fragments(
                reader, self.uri, schema=reader.schema, storage_options=self.storage_options,
                enable_stable_row_ids=True,
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
        props = dict(transaction.transaction_properties or {})
        props[META_KEY] = json.dumps(meta)
        props[MESSAGE_KEY] = message
        transaction.transaction_properties = props
        new = lance.LanceDataset.commit(
            self.uri, transaction, storage_options=self.storage_options
        )
        return new.version

    # -- history -----------------------------------------------------------------------------
    def history(self) -> list[dict]:
        """One dict per version: version, timestamp (UTC), message, meta, n_structures."""
        ds = self.dataset()
        out = []
        for v in ds.versions():
            number = v["version"]
            try:
                props = ds.read_transaction(number).transaction_properties or {}
            except Exception:  # noqa: BLE001 - versions written by other tools may lack one
                props = {}
            ts = v["timestamp"]
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=timezone.utc)
            meta = json.loads(props.get(META_KEY, "{}") or "{}")
            message = props.get(MESSAGE_KEY) or meta.get("kind") or self._describe(number)
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


    def _describe(self, number: int) -> str:
        """A message for versions written without one (schema evolution, maintenance)."""
        if number <= 1:
            return ""
        new = self.dataset(number).schema.names
        old = set(self.dataset(number - 1).schema.names)
        added = [n for n in new if n not in old]
        if added:
            return "schema: add columns " + ", ".join(added)
        return "maintenance (compaction / index)"


def _without_metadata(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.remove_metadata() for f in schema])


def _conform(batches: Iterable[pa.RecordBatch], target: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Order columns as the table has them, filling absent ``arr_*`` columns with nulls."""
    schema = _without_metadata(target)
    for batch in batches:
        cols = []
        for f in schema:
            idx = batch.schema.get_field_index(f.name)
            if idx < 0:
                cols.append(pa.nulls(batch.num_rows, f.type))
            else:
                cols.append(batch.column(idx).cast(f.type))
        yield pa.RecordBatch.from_arrays(cols, schema=schema)
