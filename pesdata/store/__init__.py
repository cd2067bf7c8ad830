"""Versioned structure store: Lance table, tags, log, diff, artefacts."""

from ._artefacts import ArtefactStore
from ._snapshot import Snapshot
from ._store import Store, open_store

__all__ = ["ArtefactStore", "Snapshot", "Store", "open_store"]
