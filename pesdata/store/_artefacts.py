"""Artefacts: JSON documents pinned to a store version, validated against ``schemas/``.

Artefacts (curate reports now; split manifests, selection ledgers and model cards later) live
under ``<store>/artefacts/<kind>/<name>.json``. Each names the version it belongs to and is
validated against ``schemas/<kind>.json`` before it is written (atomically: temporary file, then
rename) and again when it is read.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

import fsspec
import jsonschema

from ..errors import ArtefactError

__all__ = ["ArtefactStore", "load_schema", "schema_dir", "validate"]


def schema_dir() -> Path:
    """Where the schema files are: ``pesdata.schemas`` in a wheel, ``schemas/`` in a checkout."""
    try:
        return Path(str(resources.files("pesdata.schemas")))
    except ModuleNotFoundError:  # editable install / source checkout
        return Path(__file__).resolve().parents[2] / "schemas"


@cache
def load_schema(kind: str) -> dict:
    """The JSON schema of artefact ``kind`` (``schemas/<kind>.json``)."""
    path = schema_dir() / f"{kind}.json"
    if not path.is_file():
        raise ArtefactError(f"no schema for artefact kind {kind!r} ({path})")
    return json.loads(path.read_text())


def validate(kind: str, document: dict) -> None:
    """Validate ``document`` against the schema of ``kind``; raise :class:`ArtefactError`."""
    try:
        jsonschema.validate(document, load_schema(kind))
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "<root>"
        raise ArtefactError(f"{kind} artefact invalid at {where}: {exc.message}") from None


class ArtefactStore:
    """Read and write artefacts under ``root`` (a local path or fsspec URL)."""

    def __init__(self, root: str) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(root)

    def _path(self, kind: str, name: str) -> str:
        if "/" in name or name.startswith("."):
            raise ArtefactError(f"invalid artefact name {name!r}")
        return f"{self.root}/{kind}/{name}.json"

    def save(self, kind: str, name: str, document: dict, *, overwrite: bool = False) -> str:
        """Validate and write ``document`` as artefact ``kind/name``; return its path."""
        if "version" not in document:
            raise ArtefactError(f"{kind} artefact {name!r} does not name its version")
        validate(kind, document)
        path = self._path(kind, name)
        if self.fs.exists(path) and not overwrite:
            raise ArtefactError(f"{kind} artefact {name!r} exists; choose another name")
        self.fs.makedirs(f"{self.root}/{kind}", exist_ok=True)
        tmp = f"{path}.tmp"
        with self.fs.open(tmp, "w") as fh:
            json.dump(document, fh, indent=2, default=str)
        self.fs.mv(tmp, path)
        return path

    def load(self, kind: str, name: str) -> dict:
        """Read and validate artefact ``kind/name``."""
        path = self._path(kind, name)
        if not self.fs.exists(path):
            raise ArtefactError(f"no {kind} artefact named {name!r}")
        with self.fs.open(path) as fh:
            document = json.load(fh)
        validate(kind, document)
        return document

    def list(self, kind: str) -> list[str]:
        """Names of the artefacts of ``kind``, sorted."""
        base = f"{self.root}/{kind}"
        if not self.fs.exists(base):
            return []
        names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(base, detail=False)]
        return sorted(n[:-5] for n in names if n.endswith(".json"))
