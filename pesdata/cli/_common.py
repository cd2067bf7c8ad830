"""What every ``pesdata`` command shares: the Typer app, common options, error mapping, output.

Commands are thin: they parse, call the library and print. :func:`command` maps a
:class:`~pesdata.errors.PesdataError` to a one-line message and its exit code (``--traceback``
shows the whole chain instead).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..errors import PesdataError

__all__ = [
    "JsonOpt", "StoreArg", "TraceOpt", "VersionOpt", "app", "bar", "command", "counting", "err",
    "one_line", "open_store", "out", "print_json",
]

app = typer.Typer(
    name="pesdata",
    help="Versioned, curated datasets for machine-learning interatomic potentials.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
TraceOpt = Annotated[bool, typer.Option("--traceback", help="Show the full traceback on error.")]
StoreArg = Annotated[str, typer.Argument(help="Store directory or URL.")]
VersionOpt = Annotated[
    str | None, typer.Option("--version", "-v", help="Version number or tag (default: latest).")
]


def command(fn):
    """Run a command body, mapping errors to a one-line message and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        trace = kwargs.get("traceback", False)
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except PesdataError as exc:
            if trace:
                raise
            err.print(f"[red]error:[/red] {one_line(exc)}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None  # the message says it all
        except Exception as exc:  # noqa: BLE001 - anything else is still one line
            if trace:
                raise
            err.print(f"[red]error:[/red] {type(exc).__name__}: {one_line(exc)}",
                      highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def one_line(exc: BaseException | str) -> str:
    """An error message as one line of literal text for the console.

    Line breaks become `` | `` (a message quoting a file's content may hold some) and rich
    markup is escaped: ``[/]`` or ``[bold]`` in a file name, a value or a line quoted from a
    file is printed as it is, never interpreted (an unbalanced closing tag would raise).
    """
    from rich.markup import escape

    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return escape(" | ".join(lines))


def print_json(obj) -> None:
    """Write ``obj`` to stdout as JSON (strict: NaN is refused, never printed)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str, allow_nan=False) + "\n")


def bar(quiet: bool) -> Progress:
    """A transient progress bar on stderr (off for --json and when stderr is no terminal)."""
    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
        TextColumn("{task.completed} structures"), TimeElapsedColumn(),
        console=err, transient=True, disable=quiet or not err.is_terminal,
    )


@contextlib.contextmanager
def counting(quiet: bool, description: str):
    """A progress bar (see :func:`bar`) and the ``progress(done, total)`` callback moving it."""
    with bar(quiet) as progress:
        task = progress.add_task(description, total=None)
        yield lambda done, total=None: progress.update(task, completed=done, total=total)


def open_store(store: str, create: bool = False):
    """The store at ``store`` (the library import happens here, not at CLI start-up)."""
    from ..store import open_store as _open_store

    return _open_store(store, create=create)
