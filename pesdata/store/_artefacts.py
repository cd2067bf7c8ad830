"""Artefacts: JSON documents pinned to a store version, validated against ``schemas/``.

Artefacts (curate reports now; split manifests, selection ledgers and model cards later) live
under ``<store>/artefacts/<kind>/<name>.json``. Each names the version it belongs to and is
validated against ``schemas/<kind>.json`` before it is written and again when it is read.

Local artefacts are written through :mod:`pesdata.atomic` (a temporary file beside the target,
fsynced, then renamed; removed on failure). Without ``overwrite`` the write is exclusive (the
temporary file is hard-linked to the final name, which fails if the name exists), so of two
concurrent saves of one name exactly one succeeds. Object-store URLs are written with one
fsspec PUT.

Artefact names and kinds are arguments: an unsafe name (``../x``) or a kind without a schema
raises :class:`~pesdata.errors.ParameterError`; a document that does not validate raises
:class:`~pesdata.errors.ArtefactError` naming the artefact and the failing field.
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import resources
from pathlib import Path

import fsspec
import jsonschema

from .._names import check_name
from ..atomic import atomic_write
from ..errors import ArtefactError, ArtefactNotFound, ParameterError

__all__ = ["ArtefactStore", "artefact_kinds", "load_schema", "schema_dir", "validate"]


def schema_dir() -> Path:
    """Where the schema files are: ``pesdata.schemas`` in a wheel, ``schemas/`` in a checkout.

    Returns
    -------
    pathlib.Path
    """
    try:
        return Path(str(resources.files("pesdata.schemas")))
    except ModuleNotFoundError:  # editable install / source checkout
        return Path(__file__).resolve().parents[2] / "schemas"


_NOT_ARTEFACTS = ("structure",)  # schemas/structure.json describes the table, not an artefact


def artefact_kinds() -> list[str]:
    """The artefact kinds there is a schema for (``schemas/<kind>.json``), sorted.

    Returns
    -------
    list of str
        E.g. ``["curate_report", "descriptor_config", "model_card", "split"]``.
    """
    return sorted(p.stem for p in schema_dir().glob("*.json") if p.stem not in _NOT_ARTEFACTS)


def _check_kind(kind: str) -> str:
    if not isinstance(kind, str) or kind not in artefact_kinds():
        raise ParameterError(
            f"unknown artefact kind {kind!r}; known kinds: {', '.join(artefact_kinds())}"
        )
    return kind


@cache
def load_schema(kind: str) -> dict:
    """The JSON schema of artefact ``kind`` (``schemas/<kind>.json``).

    Parameters
    ----------
    kind : str
        One of :func:`artefact_kinds`.

    Returns
    -------
    dict

    Raises
    ------
    ParameterError
        No schema for ``kind``; the message lists the known kinds.
    """
    path = schema_dir() / f"{_check_kind(kind)}.json"
    return json.loads(path.read_text())


@cache
def _validator(kind: str):
    """A checked validator for ``kind`` (checking the schema itself once, not per document)."""
    schema = load_schema(kind)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate(kind: str, document: dict, where: str | os.PathLike | None = None) -> None:
    """Validate ``document`` against the schema of ``kind``.

    Parameters
    ----------
    kind : str
        Artefact kind (one of :func:`artefact_kinds`).
    document : dict
        The parsed JSON document.
    where : str or path-like, optional
        The artefact's name or file, quoted in the message (``model_card artefact 'm1'
        invalid at ...``).

    Raises
    ------
    ArtefactError
        The document does not validate; the message names the artefact (when ``where`` is
        given), the failing field and the reason.
    ParameterError
        ``kind`` has no schema.
    """
    try:
        _validator(kind).validate(document)
    except jsonschema.ValidationError as exc:
        field = "/".join(str(p) for p in exc.absolute_path) or "<root>"
        what = f"{kind} artefact" if where is None else f"{kind} artefact {str(where)!r}"
        raise ArtefactError(f"{what} invalid at {field}: {exc.message}") from exc


class ArtefactStore:
    """Read and write artefacts under ``root`` (a local path or fsspec URL).

    Parameters
    ----------
    root : str
        The artefact directory of a store (``<store>/artefacts``), local or an fsspec URL.
    """

    def __init__(self, root: str) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(root)
        self.local = "://" not in root or root.startswith("file://")

    def _path(self, kind: str, name: str) -> str:
        _check_kind(kind)
        check_name(name, f"{kind} artefact name")
        return f"{self.root}/{kind}/{name}.json"

    def save(self, kind: str, name: str, document: dict, *, overwrite: bool = False) -> str:
        """Validate and write ``document`` as artefact ``kind/name``.

        Parameters
        ----------
        kind : str
            Artefact kind (one of :func:`artefact_kinds`).
        name : str
            Artefact name (a plain file name, without ``.json``).
        document : dict
            The document; it must name its ``version``.
        overwrite : bool
            Replace an existing artefact of that name (atomically).

        Returns
        -------
        str
            The path of the written file.

        Raises
        ------
        ParameterError
            ``name`` is not a plain file name, or ``kind`` has no schema.
        ArtefactError
            The document does not validate, or ``kind/name`` exists and ``overwrite`` is false
            (also when another process saved it first).
        OutputError
            The target is a symlink or not a regular file.
        """
        path = self._path(kind, name)
        if "version" not in document:
            raise ArtefactError(f"{kind} artefact {name!r} does not name its version")
        validate(kind, document, where=name)
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
        try:
            with atomic_write(path, "w", exclusive=not overwrite) as fh:
                fh.write(text)
        except FileExistsError as exc:  # also when another process saved it first
            raise exists from exc
        return path

    def load(self, kind: str, name: str) -> dict:
        """Read and validate artefact ``kind/name``.

        Parameters
        ----------
        kind : str
            Artefact kind (one of :func:`artefact_kinds`).
        name : str
            Artefact name (without ``.json``).

        Returns
        -------
        dict
            The validated document.

        Raises
        ------
        ParameterError
            ``name`` is not a plain file name, or ``kind`` has no schema.
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
        validate(kind, document, where=path)
        return document

    def list(self, kind: str) -> list[str]:
        """Names of the artefacts of ``kind``, sorted.

        Parameters
        ----------
        kind : str
            Artefact kind (one of :func:`artefact_kinds`).

        Returns
        -------
        list of str
            Names (without ``.json``); empty when there are none.

        Raises
        ------
        ParameterError
            ``kind`` has no schema.
        """
        _check_kind(kind)
        base = f"{self.root}/{kind}"
        if not self.fs.exists(base):
            return []
        names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(base, detail=False)]
        return sorted(n[:-5] for n in names if n.endswith(".json"))
