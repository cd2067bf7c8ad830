"""Label values as they arrive (calculator results, ``info``/``arrays`` entries) → numbers.

A label that cannot be taken as a number is not dropped silently: it becomes NaN of the right
shape and the reason is kept (``Frame.label_errors``) for the ``label_value`` validator to report
— a boolean (extxyz ``energy=T``), text that is not a number, several values where one is
expected, a complex number. Stress comes as 6 Voigt values (xx yy zz yz xz xy) or a 3×3 /
9-value tensor; a virial (eV) becomes ``stress = -virial / volume``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["numbers", "scalar", "to_voigt", "virial_to_stress"]

def to_voigt(value: np.ndarray) -> np.ndarray:
    """6 Voigt components (xx yy zz yz xz xy) of a 3×3 or 9-value tensor; 6 values as given."""
    v = np.asarray(value, dtype=float).reshape(-1)
    if v.size == 9:
        m = v.reshape(3, 3)
        return np.array([m[0, 0], m[1, 1], m[2, 2], m[1, 2], m[0, 2], m[0, 1]])
    return v  # 6 values, or a wrong size the shape validator reports


def virial_to_stress(virial, cell) -> np.ndarray | None:
    """``-virial / volume`` (eV → eV/Å³); None when the cell has no volume."""
    volume = abs(np.linalg.det(np.asarray(cell, dtype=float)))
    return -np.asarray(virial, dtype=float) / volume if volume > 0 else None


_SHOWN = 80  # characters of a bad label value quoted in a message


def _show(value) -> str:
    """A label value quoted for a message: its ``repr`` (lists for arrays), cut to 80 chars."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text)} characters)"


def scalar(value) -> tuple[float | None, str | None]:
    """A label that should be one number, and why it is not one (None when it is).

    A boolean (extxyz ``energy=T``), a string that is not a number, several values or none,
    or a complex number is NaN with the reason; a NaN or inf stays itself (the finite
    validator reports it).
    """
    if value is None:
        return None, None
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):  # ragged nested lists
        return float("nan"), f"energy value {_show(value)} is not a number"
    if arr.dtype.kind == "b":
        return float("nan"), f"energy value {_show(value)} is a boolean, not a number"
    if arr.size != 1:
        return float("nan"), (
            f"energy value {_show(value)} is not one number ({arr.size} values)"
        )
    if arr.dtype.kind == "c":
        return float("nan"), f"energy value {_show(value)} is a complex number"
    item = arr.reshape(-1)[0]
    if isinstance(item, (bool, np.bool_)):  # an object array holding a bool
        return float("nan"), f"energy value {_show(value)} is a boolean, not a number"
    try:
        return float(item), None
    except (TypeError, ValueError):
        return float("nan"), f"energy value {_show(value)} is not a number"


def numbers(value, label: str, shape) -> tuple[np.ndarray | None, str | None]:
    """A label that should be an array of numbers (float64), and why it is not one.

    Booleans, strings that are not numbers, complex numbers and ragged lists give an array of
    NaN of ``shape`` (so only the reason is reported, not the shape) and the reason; a numeric
    array of any shape is returned as float64 (the shape validator checks it).
    """
    if value is None:
        return None, None
    why = None
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):  # ragged nested lists
        arr, why = None, f"{label} value {_show(value)} is not an array of numbers"
    if arr is not None:
        if arr.dtype.kind == "b" or (
            arr.dtype.kind == "O" and any(isinstance(v, (bool, np.bool_)) for v in arr.flat)
        ):
            why = f"{label} value {_show(value)} holds booleans, not numbers"
        elif arr.dtype.kind == "c":
            why = f"{label} value {_show(value)} holds complex numbers"
        else:
            try:
                return np.asarray(arr, dtype=np.float64), None
            except (TypeError, ValueError):
                why = f"{label} value {_show(value)} is not an array of numbers"
    return np.full(shape, np.nan), why
