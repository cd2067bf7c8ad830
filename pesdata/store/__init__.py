"""Versioned structure store: Lance table, tags, log, diff, artefacts, verify and gc."""

from ._artefacts import ArtefactStore, artefact_kinds, load_schema, schema_dir
from ._artefacts import validate as validate_artefact
from ._snapshot import Snapshot
from ._store import Store, open_store, store_exists
from .gc import gc
from .verify import verify

__all__ = [
    "ArtefactStore",
    "Snapshot",
    "Store",
    "artefact_kinds",
    "gc",
    "load_schema",
    "open_store",
    "schema_dir",
    "store_exists",
    "validate_artefact",
    "verify",
]
