"""The ``pesdata`` console script and ``python -m pesdata``.

Kept free of heavy imports so that even a Ctrl-C while the command line is still loading ends
with a one-line message and exit code 130, never a traceback; a Ctrl-C that Python would lose
(see :mod:`pesdata._interrupt`) still stops the next commit and still exits with 130.
"""

from __future__ import annotations

import signal
import sys
import threading

from . import _interrupt


def _on_sigint(signum, frame) -> None:
    _interrupt.request()
    raise KeyboardInterrupt


def _interrupted() -> None:
    sys.stderr.write("\npesdata: interrupted\n")
    sys.exit(130)


def main(argv: list[str] | None = None) -> None:
    """Run the ``pesdata`` command line (``argv`` defaults to ``sys.argv[1:]``)."""
    handler = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _on_sigint) if handler else None
    try:
        from .cli import app

        app(args=argv, prog_name="pesdata")
    except SystemExit:
        if _interrupt.requested():
            _interrupted()
        raise
    except KeyboardInterrupt:
        _interrupted()
    finally:
        if handler:
            signal.signal(signal.SIGINT, previous)
    if _interrupt.requested():
        _interrupted()


if __name__ == "__main__":  # pragma: no cover - python -m pesdata
    main()
