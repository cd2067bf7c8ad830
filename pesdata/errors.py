"""The pesdata exception hierarchy.

Every error pesdata raises on purpose derives from :class:`PesdataError`, so callers (and the
CLI, which maps them to a one-line message and a non-zero exit code) can catch them in one place.
Each class also derives from the builtin it means, as zarr's errors do, so code that catches
builtins catches them too:

=========================  ============================  ======================================
class                      builtin                       raised when
=========================  ============================  ======================================
:class:`ParameterError`    ``ValueError``                an argument is out of range or unknown
:class:`SchemaError`       ``ValueError``                data does not fit the table schema
:class:`InputError`        ``ValueError``                an input file cannot be read
:class:`FormatError`       ``ValueError``                the file format is unknown/ambiguous
:class:`ValidationError`   ``ValueError``                frames failed validation
:class:`ArtefactError`     ``ValueError``                an artefact is invalid
:class:`ArtefactNotFound`  ``LookupError``               an artefact does not exist
:class:`VersionNotFound`   ``LookupError``               a version number or tag does not exist
:class:`TagExistsError`    ``ValueError``                a tag name is taken
:class:`StoreNotFoundError` ``FileNotFoundError``        no store at a path
:class:`StoreExistsError`  ``FileExistsError``           a store (or a file) is in the way
:class:`StoreCorruptError` ``OSError``                   stored files are damaged or unreadable
:class:`OutputError`       ``OSError``                   an output path cannot be written safely
:class:`ConcurrentWriteError` ``TimeoutError``           the write lock was not released in time
:class:`StoreReadOnly`     ``PermissionError``           a store or output is not writable
:class:`DiskFull`          ``OSError``                   no space left on the device (or quota)
=========================  ============================  ======================================

Messages name the file, frame and field involved wherever there is one. Errors raised while
handling another keep it as ``__cause__`` (``raise ... from exc``), so ``--traceback`` shows the
root cause. :func:`from_os_error` turns the operating system's "read-only file system",
"permission denied" and "no space left on device" (also when Lance or Arrow report them as
text) into :class:`StoreReadOnly` and :class:`DiskFull` naming the path.
"""

from __future__ import annotations

import errno
import re

__all__ = [
    "ArtefactError",
    "ArtefactNotFound",
    "ConcurrentWriteError",
    "DiskFull",
    "FormatError",
    "InputError",
    "OutputError",
    "ParameterError",
    "PesdataError",
    "SchemaError",
    "StoreCorruptError",
    "StoreExistsError",
    "StoreNotFoundError",
    "StoreReadOnly",
    "TagExistsError",
    "ValidationError",
    "VersionNotFound",
    "from_os_error",
]


class PesdataError(Exception):
    """Base class of all pesdata errors."""

    exit_code: int = 1

    def __str__(self) -> str:  # OSError/LookupError subclasses would otherwise repr the args
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class ParameterError(PesdataError, ValueError):
    """An argument is out of range, non-finite, of the wrong kind or unknown.

    The message quotes the argument and the bad value.
    """

    exit_code = 2


class SchemaError(PesdataError, ValueError):
    """Data does not fit the structure schema (wrong dtype, shape, unknown column...)."""


class InputError(PesdataError, ValueError):
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


class ValidationError(PesdataError, ValueError):
    """Frames failed validation: a curate run that, by policy, wrote nothing (the full
    :class:`~pesdata.curate.CurateReport` is attached as ``report``), or frames that
    ``evaluate`` or training refuse (non-finite labels, broken geometry; ``report`` is None).
    """

    exit_code = 3

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class StoreNotFoundError(PesdataError, FileNotFoundError):
    """No pesdata store at the given location (use ``create=True`` to make one)."""


class StoreExistsError(PesdataError, FileExistsError):
    """A store already exists where a new one was asked for, or a file is in the way."""


class StoreCorruptError(PesdataError, OSError):
    """Files of the store are damaged or unreadable (I/O error, truncated manifest, ...)."""


class OutputError(PesdataError, OSError):
    """An output path cannot be written safely (a device, FIFO, symlink or directory)."""

    exit_code = 2


class VersionNotFound(PesdataError, LookupError):
    """The requested version number or tag does not exist in the store."""


class TagExistsError(PesdataError, ValueError):
    """A tag of that name already names a version."""


class ConcurrentWriteError(PesdataError, TimeoutError):
    """Another writer held the store's write lock for longer than the timeout."""


class ArtefactError(PesdataError, ValueError):
    """An artefact does not validate against its schema, or cannot be used as asked."""


class ArtefactNotFound(ArtefactError, LookupError):
    """No artefact of that kind and name."""


class StoreReadOnly(PesdataError, PermissionError):
    """A store (or an output path) cannot be written: a read-only file system or no write
    permission. Nothing was written; the store is as it was."""


class DiskFull(PesdataError, OSError):
    """No space left on the device (or the disk quota is exhausted) while writing. What was
    being written is discarded; the store is as it was."""


_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_READ_ONLY = (errno.EROFS,)
_DENIED = (errno.EACCES, errno.EPERM)
_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how Rust (Lance, object_store) reports errno
_TEXT = {  # strerror texts for errors that carry no errno (Arrow's IOError, Lance's)
    "no space left on device": errno.ENOSPC, "disk quota exceeded": _FULL[1],
    "read-only file system": errno.EROFS, "permission denied": errno.EACCES,
}


def _errno(exc: BaseException) -> int | None:
    number = getattr(exc, "errno", None)
    if isinstance(number, int):
        return number
    text = str(exc)
    found = _OS_ERROR.search(text)
    if found:
        return int(found.group(1))
    low = text.lower()
    for words, number in _TEXT.items():
        if words in low:
            return number
    return None


def from_os_error(
    exc: BaseException, path: object, *, denied: bool = True
) -> PesdataError | None:
    """The pesdata error for an OS error met while writing ``path``, or None.

    Parameters
    ----------
    exc : BaseException
        The error (an ``OSError`` with an errno, or any error whose text carries Rust's
        ``(os error N)`` or the system's message, as Lance and Arrow raise them).
    path : path-like or str
        What was being written (the store, the file): quoted first in the message.
    denied : bool
        Also map "permission denied" (EACCES, EPERM). Turn it off where the error may come
        from reading something else.

    Returns
    -------
    DiskFull, StoreReadOnly or None
        None when ``exc`` is none of these (or already a PesdataError); raise it
        ``from exc``.
    """
    if isinstance(exc, PesdataError) or not isinstance(exc, Exception):
        return None
    number = _errno(exc)
    if number in _FULL:
        return DiskFull(f"{path}: no space left on device; nothing was written")
    if number in _READ_ONLY:
        return StoreReadOnly(f"{path}: read-only file system; nothing was written")
    if denied and number in _DENIED:
        return StoreReadOnly(f"{path}: permission denied (not writable); nothing was written")
    return None
