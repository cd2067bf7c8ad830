"""``Atoms.info`` as JSON: what the structure table's ``info`` column holds and gives back.

Ints, floats, bools, strings, None, numpy arrays (dtype kept, as ``{"__ndarray__": [...],
"dtype": "<f8"}``) and nested lists and dicts of these are kept. Tuples come back as lists and
numpy scalars as Python numbers. Anything else (complex numbers, bytes, arbitrary objects) is
refused with a :class:`~pesdata.errors.SchemaError` naming the frame and key.
"""

from __future__ import annotations

import json

import numpy as np

from .errors import SchemaError

__all__ = ["info_from_json", "info_to_json"]


def _jsonable(value):
    """``value`` with numpy arrays and scalars made JSON-serialisable (arrays keep their dtype)."""
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _from_json(value):
    """Inverse of :func:`_jsonable`: ``{"__ndarray__": ...}`` becomes a numpy array again."""
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.array(value["__ndarray__"], dtype=np.dtype(value["dtype"]))
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _json_ok(value) -> bool:
    try:
        json.dumps(_jsonable(value))
    except (TypeError, ValueError):
        return False
    return True


def info_to_json(info: dict, source: str = "") -> str:
    """A frame's ``info`` as the JSON text stored in the ``info`` column.

    Parameters
    ----------
    info : dict
        The frame's ``info`` (without the reserved ``method``/``config_type``/``group``).
    source : str
        The frame's source (``file#frame``), quoted in the error.

    Returns
    -------
    str

    Raises
    ------
    SchemaError
        A value JSON cannot hold; names the source, key, type and (capped) value.
    """
    try:
        return json.dumps(_jsonable(info))
    except (TypeError, ValueError) as exc:
        bad = next((k for k, v in info.items() if not _json_ok(v)), "?")
        value = repr(info.get(bad))
        if len(value) > 200:
            value = f"{value[:200]}... ({len(value)} characters)"
        raise SchemaError(
            f"{source}: info key '{bad}' holds {type(info.get(bad)).__name__} "
            f"{value}, which pesdata cannot keep (info values must be numbers, strings, bools, "
            "None, arrays of those, or lists/dicts of them)"
        ) from exc


def info_from_json(text: str) -> dict:
    """The ``info`` dict stored as ``text`` by :func:`info_to_json` (arrays as numpy again).

    Parameters
    ----------
    text : str
        The ``info`` column's value.

    Returns
    -------
    dict
    """
    return _from_json(json.loads(text))
