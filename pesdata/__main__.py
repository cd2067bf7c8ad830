"""The ``pesdata`` console script and ``python -m pesdata``.

Kept free of heavy imports so that even a Ctrl-C while the command line is still loading ends
with a one-line message and exit code 130, never a traceback.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run the ``pesdata`` command line (``argv`` defaults to ``sys.argv[1:]``)."""
    try:
        from .cli import app

        app(args=argv, prog_name="pesdata")
    except KeyboardInterrupt:
        sys.stderr.write("\npesdata: interrupted\n")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover - python -m pesdata
    main()
