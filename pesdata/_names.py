"""One rule for the names users give things kept in a store: tags, splits, ledgers, loops,
queues' selections and model cards.

A name becomes a file name under ``<store>/artefacts/<kind>/`` (or a Lance tag), so it must not
be able to leave that directory or make a file the file system refuses: it is one non-empty path
component without ``/``, ``\\``, NUL or other control characters, not ``.``/``..`` and not
hidden (leading ``.``), not an option (leading ``-``), without surrounding blanks, and at most
:data:`MAX_BYTES` bytes in UTF-8 (file systems cap a component at 255 bytes; the rest is left for
suffixes such as ``.parquet`` and temporary names).
"""

from __future__ import annotations

import unicodedata

from .errors import ParameterError

__all__ = ["MAX_BYTES", "check_name"]

#: Longest name, in UTF-8 bytes.
MAX_BYTES = 160


def check_name(name: object, what: str = "name") -> str:
    """``name`` when it is a safe store name, else :class:`ParameterError` saying why.

    Parameters
    ----------
    name : object
        The candidate name.
    what : str
        What is being named (``"tag name"``, ``"split name"``, ...), for the message.

    Returns
    -------
    str
        The name, unchanged.

    Raises
    ------
    ParameterError
        ``name`` is not a string, is empty, too long, ``.``/``..``, starts with ``.`` or ``-``,
        has blanks around it, or holds ``/``, ``\\``, NUL or another control character.
    """
    if not isinstance(name, str):
        raise ParameterError(f"invalid {what} {name!r:.100}: a name is a string, "
                             f"not {type(name).__name__}")
    shown = repr(name) if len(name) <= 80 else repr(name[:77]) + "..."
    why = None
    if not name:
        why = "it is empty"
    elif len(name.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        why = f"it is longer than {MAX_BYTES} bytes"
    elif name in (".", ".."):
        why = "it is a relative directory"
    elif "/" in name or "\\" in name:
        why = "it holds a path separator"
    elif any(unicodedata.category(c) in ("Cc", "Cs") or c == "\u2028" or c == "\u2029"
             for c in name):
        why = "it holds NUL or another control character"
    elif name.startswith("."):
        why = "it starts with '.' (hidden)"
    elif name.startswith("-"):
        why = "it starts with '-' (reads as an option)"
    elif name != name.strip():
        why = "it has blanks around it"
    if why is not None:
        raise ParameterError(
            f"invalid {what} {shown}: {why}; a name is one file name of at most {MAX_BYTES} "
            "bytes, without '/', '\\' or control characters, not starting with '.' or '-'"
        )
    return name
