"""Checks that stop hostile input before a parser trusts it.

A header that lies must end in a precise error, never a hang, a huge allocation or silently
dropped data: a ``Properties`` string declaring 10¹¹ columns, an atom line with more values than
declared (ASE's reader ignores the extra ones), a ``pbc`` of words, a key given twice, a POSCAR
claiming 10⁹ atoms (ASE's reader loops over them), a ``vasprun.xml`` cut in the middle (ASE's
reader yields the steps before the cut without a word).
"""

from __future__ import annotations

import re

import numpy as np

__all__ = [
    "MAX_COLUMNS", "HeaderError", "check_atom_tokens", "check_outcar", "check_pbc", "check_poscar",
    "check_properties", "check_vasp_xml", "duplicate_key",
]

#: Most columns a ``Properties`` string may declare (real files have < 100).
MAX_COLUMNS = 100_000
_TYPES = frozenset("SRIL")


class HeaderError(ValueError):
    """A frame's header is inconsistent; ``field`` names the key involved."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def check_properties(props: str) -> int:
    """The number of columns ``props`` declares, checked before ASE builds a dtype from it.

    Raises
    ------
    HeaderError
        Not ``name:type:count`` triples, an unknown type letter, a count that is not a
        positive integer, or more than :data:`MAX_COLUMNS` columns in all.
    """
    parts = props.split(":")
    if len(parts) % 3:
        raise HeaderError(
            f"Properties {_cut(props)} is not a list of name:type:count triples", "Properties"
        )
    total = 0
    for name, kind, count in zip(parts[::3], parts[1::3], parts[2::3], strict=True):
        if kind not in _TYPES:
            raise HeaderError(
                f"column {_cut(name)} has unknown type {_cut(kind)} "
                "(one of S, R, I, L)", "Properties",
            )
        if not count.isdigit() or int(count) < 1:
            raise HeaderError(
                f"column {_cut(name)} has count {_cut(count)}, expected a positive "
                "integer", "Properties",
            )
        total += int(count)
        if total > MAX_COLUMNS:
            raise HeaderError(
                f"Properties declares more than {MAX_COLUMNS} columns ({_cut(name)} alone "
                f"{int(count)})", "Properties",
            )
    return total


def check_atom_tokens(lines: list[str], ncols: int) -> None:
    """Every atom line holds exactly ``ncols`` values.

    ASE's reader drops the values beyond the declared columns (a ``Properties`` that forgets
    ``forces`` would lose them silently) and fails on too few with a NumPy message.

    Raises
    ------
    HeaderError
        Naming the first atom (0-based) whose line has another number of values.
    """
    for k, line in enumerate(lines):
        n = len(line.split())
        if n != ncols:
            raise HeaderError(
                f"atom {k} has {n} values but Properties declares {ncols} columns", "Properties"
            )


def check_pbc(value) -> None:
    """A ``pbc`` value must be booleans (``T``/``F``) or 0/1, one or three of them.

    ``numpy.asarray("yes no maybe", bool)`` is True: words would make every direction
    periodic without a word.

    Raises
    ------
    HeaderError
    """
    arr = np.asarray(value)
    ok = arr.dtype.kind == "b" or (arr.dtype.kind in "iu" and np.isin(arr, (0, 1)).all())
    if not ok or arr.size not in (1, 3) or arr.ndim > 1:
        raise HeaderError(f"pbc {_cut(str(value))} is not three of T/F", "pbc")


# the comment-line tokeniser of ase.io.extxyz.key_val_str_to_dict (same loop), keys only
_DELIMITERS = {"'": "'", '"': '"', "{": "}", "[": "]"}


def duplicate_key(comment: str) -> str | None:
    """The first key given twice on an extxyz comment line, once at least with a value (ASE
    keeps the last silently); a bare word repeated in a free-text comment is no duplicate.

    Tokenises as ``ase.io.extxyz.key_val_str_to_dict`` does, character by character.
    """
    pairs: list[list[list[str]]] = [[[]]]
    closing, escaped = None, False
    for char in comment.strip():
        if escaped:
            pairs[-1][-1].append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif closing:
            if char == closing:
                closing = None
            else:
                pairs[-1][-1].append(char)
        elif char in _DELIMITERS:
            closing = _DELIMITERS[char]
        elif char.isspace():
            if pairs[-1][-1]:
                pairs.append([[]])
        elif char == "=":
            if pairs[-1] == [[]] and len(pairs) > 1:
                del pairs[-1]
            pairs[-1].append([])
        else:
            pairs[-1][-1].append(char)
    seen: dict[str, bool] = {}  # key -> given with a value
    for pair in pairs:
        if not pair or pair == [[]]:
            continue
        key, valued = "".join(pair[0]), len(pair) > 1
        if key in seen and (valued or seen[key]):
            return key
        seen[key] = seen.get(key, False) or valued
    return None


_INT = re.compile(r"^[+-]?\d+$")


def check_poscar(path: str) -> None:
    """A POSCAR/CONTCAR's atom counts must fit in the file (ASE loops over each claimed atom).

    Raises
    ------
    HeaderError
        A negative count, or more atoms than the file has lines.
    """
    from ase.io.formats import open_with_compression

    with open_with_compression(path, "rb") as fh:
        head = [fh.readline(4096) for _ in range(7)]
        rest = sum(1 for _ in iter(lambda: fh.readline(1 << 16), b""))
    tokens = [ln.decode("utf-8", "replace").split() for ln in head]
    for row in tokens[5:7]:  # VASP 4: counts on line 6; VASP 5: symbols there, counts on 7
        if row and all(_INT.match(t) for t in row):
            counts = [int(t) for t in row]
            if min(counts) < 0:
                raise HeaderError(f"negative atom count in {row}", "atom count")
            if sum(counts) > rest + 7:
                raise HeaderError(
                    f"the header claims {sum(counts)} atoms but only {rest + 7} lines are in "
                    "the file", "atom count",
                )
            return


def check_outcar(path: str) -> None:
    """The CONTCAR or POSCAR beside an OUTCAR, which ASE's OUTCAR reader reads for constraints.

    Raises
    ------
    HeaderError
        That file's atom counts do not fit in it (see :func:`check_poscar`).
    """
    from pathlib import Path

    folder = Path(path).parent
    for name in ("CONTCAR", "POSCAR"):  # ASE reads the first non-empty one
        sibling = folder / name
        if sibling.is_file() and sibling.stat().st_size > 0:
            try:
                check_poscar(str(sibling))
            except HeaderError as exc:
                raise HeaderError(
                    f"the {name} beside it, which ASE reads for constraints: {exc}", exc.field
                ) from exc
            return


def check_vasp_xml(path: str) -> None:
    """A ``vasprun.xml`` must end with ``</modeling>``: ASE reads a cut one without a word.

    Raises
    ------
    HeaderError
    """
    from ase.io.formats import open_with_compression

    with open_with_compression(path, "rb") as fh:
        tail = b""
        for block in iter(lambda: fh.read(1 << 20), b""):
            tail = (tail + block)[-4096:]
    if b"</modeling>" not in tail:
        raise HeaderError(
            "vasprun.xml is truncated: it does not end with </modeling> (a killed or running "
            "VASP job?)"
        )


def _cut(text: str, limit: int = 80) -> str:
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"
