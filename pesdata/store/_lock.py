"""A store-wide writer lock (advisory ``flock`` on a local lock file).

Writers to one store serialise on this lock, so a curate's duplicate and conflict report is
exact; readers never take it. The kernel drops the lock when its process dies, so a killed
writer never blocks the next. On object stores (no local file) the lock is a no-op and Lance's
own optimistic commit protocol keeps versions consistent.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator

from ..errors import ConcurrentWriteError, StoreCorruptError, from_os_error

__all__ = ["write_lock"]


@contextlib.contextmanager
def write_lock(path: str | None, timeout: float = 600.0, poll: float = 0.05) -> Iterator[None]:
    """Hold the exclusive write lock at ``path`` (``None``: no lock).

    Parameters
    ----------
    path : str or None
        The lock file (created if missing); ``None`` on object stores, where this is a no-op.
    timeout : float
        Seconds to wait for another writer before giving up.
    poll : float
        Seconds between attempts.

    Yields
    ------
    None
        The lock is held inside the ``with`` block and released on exit.

    Raises
    ------
    ConcurrentWriteError
        When another writer holds the lock for more than ``timeout`` seconds.
    StoreReadOnly
        The store is on a read-only file system or not writable by this user.
    DiskFull
        The lock file cannot be created: no space left on the device.
    StoreCorruptError
        Something else is where the lock belongs (a directory, an unreadable file).
    """
    if path is None:
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        store = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        known = from_os_error(exc, f"{store}: cannot write to the store (its write lock {path})")
        if known is not None:  # a read-only store, or a full disk: not damage
            raise known from exc
        # a directory or unreadable file where the lock belongs
        raise StoreCorruptError(
            f"{path}: cannot open the store's write lock ({exc.strerror or exc})"
        ) from exc
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as exc:
                if time.monotonic() > deadline:
                    raise ConcurrentWriteError(
                        f"another process has been writing to this store for over {timeout:.0f}"
                        f" s (lock {path}); try again when it has finished"
                    ) from exc
                time.sleep(poll)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
