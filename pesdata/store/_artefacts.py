"""Artefacts: JSON documents pinned to a store version, validated against ``schemas/``.

Artefacts (curate reports now; split manifests, selection ledgers and model cards later) live
under ``<store>/artefacts/<kind>/<name>.json``. Each names the version it belongs to and is
validated against ``schemas/<kind>.json`` before it is written and again when it is read.

Local artefacts are written through :mod:`pesdata.atomic` (a temporary file beside the target,
fsynced, then renamed; removed on failure). Without ``overwrite`` the temporary file is
hard-linked to the final name, which fails if the name exists, so of two concurrent saves of one
name exactly one succeeds. Object-store URLs are written with one fsspec PUT.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path

import fsspec
import jsonschema

from ..atomic import atomic_write, check_output_path, fsync_dir
from ..errors import ArtefactError, ArtefactNotFound

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


@cache
def _validator(kind: str):
    """A checked validator for ``kind`` (checking the schema itself once, not per document)."""
    schema = load_schema(kind)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate(kind: str, document: dict) -> None:
    """Validate ``document`` against the schema of ``kind``; raise :class:`ArtefactError`."""
    try:
        _validator(kind).validate(document)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "<root>"
        raise ArtefactError(f"{kind} artefact invalid at {where}: {exc.message}") from exc


class ArtefactStore:
    """Read and write artefacts under ``root`` (a local path or fsspec URL)."""

    def __init__(self, root: str) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(root)
        self.local = "://" not in root or root.startswith("file://")

    def _path(self, kind: str, name: str) -> str:
        if not name or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
            raise ArtefactError(f"invalid artefact name {name!r}")
        return f"{self.root}/{kind}/{name}.json"

    def save(self, kind: str, name: str, document: dict, *, overwrite: bool = False) -> str:
        """Validate and write ``document`` as artefact ``kind/name``; return its path.

        Raises
        ------
        ArtefactError
            The document does not validate, or ``kind/name`` exists and ``overwrite`` is false
            (also when another process saved it first).
        OutputError
            The target is a symlink or not a regular file.
        """
        if "version" not in document:
            raise ArtefactError(f"{kind} artefact {name!r} does not name its version")
        validate(kind, document)
        path = self._path(kind, name)
        text = json.dumps(document, indent=2, default=str)
        exists = ArtefactError(f"{kind} artefact {name!r} exists; choose another name")
        if not self.local:  # pragma: no cover - object stores
            if self.fs.exists(path) and not overwrite:
                raise exists
            self.fs.makedirs(f"{self.root}/{kind}", exist_ok=True)
            with self.fs.open(path, "w") as fh:
                fh.write(text)
            return path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if overwrite:
            with atomic_write(path, "w") as fh:
                fh.write(text)
            return path
        check_output_path(path)
        if os.path.lexists(path):
            raise exists
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".json.tmp",
                                   dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # fails if the name exists: no check-then-write race
            except FileExistsError as exc:
                raise exists from exc
            fsync_dir(os.path.dirname(path))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return path

    def load(self, kind: str, name: str) -> dict:
        """Read and validate artefact ``kind/name``.

        Raises
        ------
        ArtefactNotFound
            No artefact ``kind/name``.
        ArtefactError
            It is not valid JSON or does not validate against its schema.
        """
        path = self._path(kind, name)
        try:
            with self.fs.open(path) as fh:
                raw = fh.read()
        except FileNotFoundError as exc:
            raise ArtefactNotFound(f"no {kind} artefact named {name!r}") from exc
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise ArtefactError(f"{path}: not valid JSON ({exc})") from exc
        validate(kind, document)
        return document

    def list(self, kind: str) -> list[str]:
        """Names of the artefacts of ``kind``, sorted."""
        base = f"{self.root}/{kind}"
        if not self.fs.exists(base):
            return []
        names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(base, detail=False)]
        return sorted(n[:-5] for n in names if n.endswith(".json"))
