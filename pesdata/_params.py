"""Checks of numeric arguments: finite, in range, the right kind.

Shared by every module that takes numeric arguments: models check their hyperparameters at
construction (as scikit-learn's ``_param_validation`` does at fit), so ``--force-weight nan``
is refused before any work and never reaches a model card; splits check ``k``, ``repeats``,
``test_size`` and ``seed``; the descriptor cache its ``batch_size``. Messages quote the
argument's name and the bad value (:class:`~pesdata.errors.ParameterError`).
"""

from __future__ import annotations

import math
import numbers

from .errors import ParameterError

__all__ = ["check_float", "check_int"]


def _quote(value) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def check_int(name: str, value, minimum: int = 1, *, what: str | None = None) -> int:
    """``value`` as an int when it is a whole number ≥ ``minimum``; else :class:`ParameterError`.

    Parameters
    ----------
    name : str
        The parameter's name, quoted in the message.
    value : int-like
        An integer, or a float with an integral value (``3.0``); bools and NaN are refused.
    minimum : int
        Smallest allowed value.
    what : str, optional
        How the message describes the allowed range (default: "a positive integer" for
        ``minimum == 1``, else "an integer ≥ <minimum>").

    Returns
    -------
    int
        ``value`` as a Python int.

    Raises
    ------
    ParameterError
        ``value`` is not a whole number ≥ ``minimum`` (a string, a bool, NaN, 2.5, ...).
    """
    what = what or ("a positive integer" if minimum == 1 else f"an integer ≥ {minimum}")
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value) and int(value) == value and value >= minimum)
    if not ok:
        raise ParameterError(f"{name} must be {what}, got {_quote(value)}")
    return int(value)


def check_float(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    what: str | None = None,
) -> float:
    """``value`` as a float when it is finite and within the bounds; else :class:`ParameterError`.

    Parameters
    ----------
    name : str
        The parameter's name, quoted in the message.
    value : float-like
        A real number (bools refused).
    low, high : float, optional
        Bounds; ``low_open`` / ``high_open`` make them strict.
    what : str, optional
        How the message describes the allowed values (default: "finite" and the bounds).

    Returns
    -------
    float
        ``value`` as a Python float.

    Raises
    ------
    ParameterError
        ``value`` is not a real number, not finite, or out of bounds.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        parts = []
        if low is not None:
            parts.append(f"{'>' if low_open else '≥'} {low:g}")
        if high is not None:
            parts.append(f"{'<' if high_open else '≤'} {high:g}")
        what = what or "finite" + "".join(f" and {p}" for p in parts)
        raise ParameterError(f"{name} must be {what}, got {_quote(value)}")
    return float(value)
