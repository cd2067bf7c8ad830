"""Candidate generation with any ASE calculator: explorers found by name (MD now, SSW next).

An explorer is configured once (its constructor stores parameters) and asked for candidate
frames with :meth:`Explorer.explore`; :func:`get_explorer` finds one by name through a lazy
registry, as :mod:`pesdata.select.registry` finds criteria.
"""

from ._base import Explorer, explorers, get_explorer, register_explorer

__all__ = ["Explorer", "explorers", "get_explorer", "register_explorer"]
