"""The pesdata exception hierarchy.

Every error pesdata raises on purpose derives from :class:`PesdataError`, so callers (and the
CLI, which maps them to a one-line message and a non-zero exit code) can catch them in one place.
Messages name the file, frame and field involved wherever there is one.
"""

from __future__ import annotations

__all__ = [
    "ArtefactError",
    "ConcurrentWriteError",
    "FormatError",
    "InputError",
    "PesdataError",
    "SchemaError",
    "StoreExistsError",
    "StoreNotFoundError",
    "ValidationError",
    "VersionNotFound",
]


class PesdataError(Exception):
    """Base class of all pesdata errors."""

    exit_code: int = 1


class SchemaError(PesdataError):
    """Data does not fit the structure schema (wrong dtype, shape, unknown column...)."""


class InputError(PesdataError):
    """An input file cannot be read: missing, empty, a directory, truncated or malformed.

    Parameters
    ----------
    message : str
        What is wrong.
    path : str, optional
        The file involved.
    frame : int, optional
        The 0-based frame index inside the file.
    field : str, optional
        The field (label, array or info key) involved.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        frame: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path, self.frame, self.field, self.reason = path, frame, field, message
        where = []
        if path is not None:
            where.append(str(path))
        if frame is not None:
            where.append(f"frame {frame}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(": ".join([*where, message]))


class FormatError(InputError):
    """The file format is unknown or ambiguous; name it with ``format=`` / ``--format``."""


class ValidationError(PesdataError):
    """A curate run found invalid frames and, by policy, wrote nothing.

    The full :class:`~pesdata.curate.CurateReport` is attached as ``report``.
    """

    exit_code = 3

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class StoreNotFoundError(PesdataError):
    """No pesdata store at the given location (use ``create=True`` to make one)."""


class StoreExistsError(PesdataError):
    """A store already exists where a new one was asked for."""


class VersionNotFound(PesdataError):
    """The requested version number or tag does not exist in the store."""


class ConcurrentWriteError(PesdataError):
    """Another writer held the store's write lock for longer than the timeout."""


class ArtefactError(PesdataError):
    """An artefact is missing, or does not validate against its schema."""
