"""Atomic writes: one helper for every file and directory pesdata writes.

A reader (or a crash) never sees a half-written file: content goes to a temporary file in the
target's own directory (so the final rename stays on one file system), is flushed and fsynced,
and replaces the target with ``os.replace``; on any failure the temporary file is removed and
the target is left as it was. :func:`atomic_dir` does the same for a whole directory (a model
directory, say): it is built in a hidden staging directory that is then swapped in.

With ``exclusive=True`` the target is never replaced: the finished temporary file is hard-linked
to the final name, which fails if anything is there, so of two concurrent exclusive writes of one
name exactly one succeeds and the other raises :class:`FileExistsError` (its temporary file is
removed either way).

Only regular files (or new paths) are ever replaced: a device, FIFO, socket, symlink or
directory in the way is refused with :class:`~pesdata.errors.OutputError`, so
``pesdata export STORE /dev/null`` cannot turn a device node into a regular file.

A full disk or a read-only file system met while writing (by pesdata or by the library writing
the temporary path) raises :class:`~pesdata.errors.DiskFull` or
:class:`~pesdata.errors.StoreReadOnly` naming the target, after the temporary file is removed.

>>> from pesdata.atomic import atomic_write
>>> with atomic_write("out.json", "w") as fh:            # doctest: +SKIP
...     fh.write("{}")
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ._interrupt import check as check_interrupt
from .errors import OutputError, ParameterError, from_os_error

__all__ = ["atomic_dir", "atomic_path", "atomic_write", "check_output_path", "fsync_dir"]


def check_output_path(path: str | os.PathLike, *, directory: bool = False) -> Path:
    """``path`` as a Path when it may be (re)placed by a write; else :class:`OutputError`.

    Parameters
    ----------
    path : path-like
        The target.
    directory : bool
        The target is a directory (:func:`atomic_dir`): an existing directory is allowed, an
        existing file is not. Otherwise an existing regular file is allowed, a directory is not.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    OutputError
        The path is a symlink, a device, FIFO or socket, or of the wrong kind.
    """
    p = Path(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return p
    except OSError as exc:
        raise OutputError(f"{p}: cannot inspect the output path ({exc.strerror})") from exc
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        raise OutputError(f"{p}: is a symbolic link; pesdata replaces only regular files "
                          "(write to the link's target instead)")
    if directory:
        if not stat.S_ISDIR(mode):
            raise OutputError(f"{p}: exists and is not a directory")
        return p
    if stat.S_ISDIR(mode):
        raise OutputError(f"{p}: is a directory; give a file name")
    if not stat.S_ISREG(mode):
        kind = ("a character device" if stat.S_ISCHR(mode) else "a block device"
                if stat.S_ISBLK(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
                "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise OutputError(f"{p}: is {kind}; pesdata writes only regular files")
    return p


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so a rename inside it survives a power cut (no-op where unsupported).

    Parameters
    ----------
    path : path-like
        The directory.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _exists(path: Path) -> FileExistsError:
    return FileExistsError(errno.EEXIST, "exists; an exclusive write never replaces it", str(path))


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, *, suffix: str | None = None, exclusive: bool = False
) -> Iterator[Path]:
    """A temporary path beside ``path`` to write (by any library); it replaces ``path`` on exit.

    For writers that want a file *name* (``pyarrow.parquet.write_table``, ``torch.save``, ASE's
    database backend). The temporary path does not exist when yielded. On an exception it is
    removed and ``path`` is untouched.

    Parameters
    ----------
    path : path-like
        The target (a regular file or a new path; see :func:`check_output_path`).
    suffix : str, optional
        Suffix of the temporary name (default: the target's), for writers that look at it.
    exclusive : bool
        Never replace ``path``: the finished file is hard-linked into place, which fails when
        anything exists there (also when another writer linked it first, so of concurrent
        exclusive writes exactly one wins). Needs a file system with hard links.

    Yields
    ------
    pathlib.Path
        The temporary path to write.

    Raises
    ------
    OutputError
        ``path`` is a symlink, directory, device, FIFO or socket.
    FileExistsError
        ``exclusive`` and ``path`` exists (checked before and, race-free, at the end).
    """
    p = check_output_path(path)
    if exclusive and os.path.lexists(p):
        raise _exists(p)
    with _translated(p, denied=True):  # the target's directory cannot take a file
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=(
            p.suffix if suffix is None else suffix) + ".tmp", dir=p.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp_path = Path(tmp)
    try:
        with _translated(p):
            yield tmp_path
            if tmp_path.is_file():
                with open(tmp_path, "rb+") as fh:
                    os.fsync(fh.fileno())
            check_interrupt()  # a Ctrl-C the CLI recorded stops here, before the file appears
            if exclusive:
                try:
                    os.link(tmp_path, p)  # fails if the name exists: no check-then-write race
                except FileExistsError as exc:
                    raise _exists(p) from exc
            else:
                check_output_path(p)  # nothing special appeared there meanwhile
                os.replace(tmp_path, p)
            fsync_dir(p.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike,
    mode: str = "w",
    *,
    encoding: str | None = "utf-8",
    exclusive: bool = False,
) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit it is fsynced and replaces ``path``.

    Parameters
    ----------
    path : path-like
        The target (a regular file or a new path).
    mode : {"w", "wb"}
        Text or binary.
    encoding : str, optional
        Text encoding (ignored in binary mode).
    exclusive : bool
        Never replace an existing ``path`` (see :func:`atomic_path`).

    Yields
    ------
    file object
        The open temporary file.

    Raises
    ------
    ParameterError
        ``mode`` is not ``"w"`` or ``"wb"``.
    OutputError
        ``path`` is a symlink, directory, device, FIFO or socket.
    FileExistsError
        ``exclusive`` and ``path`` exists.
    """
    if mode not in ("w", "wb"):
        raise ParameterError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}")
    with atomic_path(path, exclusive=exclusive) as tmp:
        kwargs = {} if "b" in mode else {"encoding": encoding}
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A staging directory beside ``path``; on a clean exit it replaces ``path`` whole.

    The staging directory is hidden (``.<name>.<random>.tmp``). If ``path`` exists it is first
    renamed aside and removed only after the new one is in place; if the swap fails it is put
    back. On an exception the staging directory is removed and ``path`` is untouched. Callers
    decide beforehand whether an existing ``path`` may be replaced.

    Parameters
    ----------
    path : path-like
        The target directory (new, or an existing directory the caller may replace).

    Yields
    ------
    pathlib.Path
        The staging directory to fill.

    Raises
    ------
    OutputError
        ``path`` exists and is not a directory (or is a symlink).
    """
    p = check_output_path(path, directory=True)
    with _translated(p, denied=True):
        p.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent))
    try:
        with _translated(p):
            yield stage
            _swap(stage, p)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # only left when something failed


def _swap(stage: Path, p: Path) -> None:
    """Put the finished staging directory ``stage`` in the place of ``p``."""
    stage.chmod(0o755)
    for child in stage.rglob("*"):
        if child.is_file():
            with open(child, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(stage)
    check_interrupt()
    if p.exists():
        old = p.with_name(f".{p.name}.old-{os.getpid()}")
        os.replace(p, old)
        try:
            os.replace(stage, p)
        except BaseException:
            os.replace(old, p)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, p)
    fsync_dir(p.parent)


@contextlib.contextmanager
def _translated(path: Path, denied: bool = False) -> Iterator[None]:
    """Raise DiskFull / StoreReadOnly naming ``path`` for a full disk or read-only file system
    (and, with ``denied``, a permission error) raised inside the block."""
    try:
        yield
    except OSError as exc:
        new = from_os_error(exc, path, denied=denied)
        if new is None:
            raise
        raise new from exc
