"""The extxyz comment line, parsed as ASE parses it, fast on plain lines; keys given twice
are refused (ASE keeps the last one silently)."""

from __future__ import annotations

import json
import re

import numpy as np
from ase.io import extxyz as _ase_extxyz

from ._guards import HeaderError, duplicate_key

__all__ = ["key_val_str_to_dict"]

# a comment line of plain tokens, whitespace apart: key=value, key="value" (or 'value', [value],
# {value}: ASE's delimiters, content taken verbatim) or a bare key
_PLAIN = r"[^\s=\"'\\\[\]{}]+"
_TOKEN = re.compile(
    rf"({_PLAIN})(?:=(?:\"([^\"\\]*)\"|'([^'\\]*)'|\[([^\]\\]*)\]|\{{([^}}\\]*)\}}|({_PLAIN})))?"
    r"(?=\s|$)"
)
_STR_TO_BOOL = {"T": True, "F": False, "true": True, "false": False, "True": True,
                "False": False, "TRUE": True, "FALSE": False}
_SPLIT = re.compile(r"[^\s,]+")


def _convert(key: str, value: str):
    """One value as ``ase.io.extxyz.key_val_str_to_dict`` converts it (same rules, same order:
    ints, else floats, arrays of them; special 3x3 keys; booleans; ``_JSON``; else the string)."""
    if key.lower() in _ase_extxyz.UNPROCESSED_KEYS:
        return value
    parts = _SPLIT.findall(value)
    out = value
    try:
        try:
            num = np.array(parts, dtype=int)
        except (ValueError, OverflowError):
            num = np.array(parts, dtype=float)
        out = num[0] if len(num) == 1 else num
    except (ValueError, OverflowError):
        pass
    if key in _ase_extxyz.SPECIAL_3_3_KEYS:
        if not isinstance(out, np.ndarray) or out.shape != (9,):
            raise ValueError(
                f"Got info item {key}, expecting special 3x3 matrix, but value is not in the "
                "form of a 9-long numerical vector"
            )
        out = np.array(out).reshape((3, 3), order="F")
    if isinstance(out, str):
        try:
            flags = [_STR_TO_BOOL[v] for v in parts]
            out = flags[0] if len(flags) == 1 else flags
        except KeyError:
            if out.startswith("_JSON "):
                d = json.loads(out.replace("_JSON ", "", 1))
                out = np.array(d)
                if out.dtype.kind not in ["i", "f", "b"]:
                    out = d
    return out


def key_val_str_to_dict(comment: str) -> dict:
    """ASE's ``key_val_str_to_dict`` for an extxyz comment line, fast on plain lines.

    ASE parses the line character by character in Python (~0.1 ms a frame, a fifth of ingest
    time on a 200k-atom file). A line made only of ``key=value``, ``key="quoted value"`` and
    bare keys separated by whitespace (values may be delimited by ``"``, ``'``, ``[]`` or ``{}``
    as ASE allows; no escapes, nesting or stray ``=``) is
    split with one regular expression and its values converted by ASE's rules
    (:func:`_convert`); any other line goes to ASE's parser. A test checks both give the same
    dict on every comment line of the shared data sets and on crafted edge cases.
    """
    text = comment.strip()
    out: dict = {}
    valued: set[str] = set()  # keys given with a value: given again, they are refused
    pos = 0
    for m in _TOKEN.finditer(text):
        if text[pos : m.start()].strip():  # something the pattern does not cover: ASE decides
            return _ase_key_val_str_to_dict(comment)
        pos = m.end()
        key, *values = m.groups()
        value = next((v for v in values if v is not None), None)
        if value == "":
            return _ase_key_val_str_to_dict(comment)
        if key in out and (key in valued or value is not None):
            raise _duplicate(key)
        if value is not None:
            valued.add(key)
        out[key] = _convert(key, "T" if value is None else value)  # a bare key is True
    if text[pos:].strip():
        return _ase_key_val_str_to_dict(comment)
    return out


def _duplicate(key: str) -> HeaderError:
    shown = repr(key) if len(key) <= 80 else f"{key[:80]!r}..."
    return HeaderError(f"key {shown} is given twice on the comment line", key[:80])


def _ase_key_val_str_to_dict(comment: str) -> dict:
    """ASE's parser, after refusing a key given twice (ASE keeps the last one silently)."""
    key = duplicate_key(comment)
    if key is not None:
        raise _duplicate(key)
    return _ase_extxyz.key_val_str_to_dict(comment)
