"""Lazy names: a package's public names imported on first use (PEP 562), and registries of
classes found by name whose modules are imported only when asked for (as ASE finds formats)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, MutableMapping

from .errors import ParameterError

__all__ = ["lazy_getattr", "load_registered"]


def lazy_getattr(package: str, table: dict[str, str], namespace: dict) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``table[name]`` (a module path) on first use.

    The value is cached in ``namespace`` (the package's ``globals()``) so later look-ups skip
    the hook.
    """

    def __getattr__(name: str):
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__


def load_registered(table: MutableMapping[str, str | type], kind: str, name: str, base: type):
    """The class registered as ``name`` in ``table`` (``"module:Class"`` strings are imported
    and replaced by the class on first use); ParameterError for an unknown name."""
    entry = table.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ParameterError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}")
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
        table[name] = entry
    if not (isinstance(entry, type) and issubclass(entry, base)):  # pragma: no cover - guard
        raise ParameterError(f"{kind} {name!r} is not a {base.__name__} subclass")
    return entry
