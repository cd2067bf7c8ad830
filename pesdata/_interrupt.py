"""Ctrl-C on the command line: never lost, never half-done.

Python turns SIGINT into ``KeyboardInterrupt`` wherever the main thread happens to be; when that
is inside a callback (a weakref callback of the import system, say) the exception is printed as
"Exception ignored" and the program carries on — a curate interrupted at the wrong moment would
then commit and exit 0. The ``pesdata`` script (:mod:`pesdata.__main__`) therefore also records
the request here, and the commit points of the library (the table's one commit, every atomic
file or directory replacement) call :func:`check` first: a recorded Ctrl-C stops them before
anything becomes visible, and the script exits with 130. Library users who never install the
handler are unaffected (nothing is ever recorded).
"""

from __future__ import annotations

import threading

__all__ = ["check", "request", "requested"]

_REQUESTED = threading.Event()


def request() -> None:
    """Record that the user asked to stop (the CLI's SIGINT handler calls this)."""
    _REQUESTED.set()


def requested() -> bool:
    """True once :func:`request` was called in this process."""
    return _REQUESTED.is_set()


def check() -> None:
    """Raise ``KeyboardInterrupt`` when a stop was requested (call before making a write visible).

    Raises
    ------
    KeyboardInterrupt
        A stop was requested.
    """
    if _REQUESTED.is_set():
        raise KeyboardInterrupt
