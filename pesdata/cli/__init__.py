"""The ``pesdata`` command line: parses arguments, calls the library, prints the result.

``_common`` holds the Typer app, the shared options and the error mapping; the store commands
(curate, describe, log, info, diff, tag, export, optimize) live in ``_store`` and split, train,
cv and evaluate in ``_model``, select in ``_select`` and the ``label`` sub-commands (export,
run, import) in ``_label``. Every command takes ``--json`` for machine-readable output and
``--traceback`` to show the full traceback of an error; otherwise an error is one line on stderr
and a non-zero exit code. The ``pesdata`` script is :func:`pesdata.__main__.main`.
"""

from __future__ import annotations

from . import _explore, _housekeeping, _label, _loop, _model, _report, _select, _store  # noqa: F401, E501 - register the commands
from ._common import app

__all__ = ["app"]
