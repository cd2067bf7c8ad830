"""Candidate generation with any ASE calculator: stochastic surface walking (SSW) and MD.

>>> from ase.cluster import Icosahedron                                # doctest: +SKIP
>>> from pesdata.explore import SSW, LennardJonesCluster              # doctest: +SKIP
>>> walk = SSW(start, LennardJonesCluster(), temperature=5000, seed=1).run(50)  # doctest: +SKIP
>>> walk.best_energy_, len(walk.archive_)                               # doctest: +SKIP

* :class:`SSW` — the walker (``SSW(atoms, calculator, ...).run(steps)``, as ASE's
  ``BasinHopping``): clusters, slabs, and crystals with a variable cell; seeded, checkpointed,
  with a minima archive (:class:`MinimaArchive`) and a cap on evaluations.
* :func:`run_walkers` — several seeded walkers in worker processes sharing one archive (what
  ``pesdata explore`` runs).
* Explorers for the active-learning loop, found by name (:func:`get_explorer`): ``md``
  (:class:`~pesdata.explore.md.MDExplorer`) and ``ssw``
  (:class:`~pesdata.explore.ssw_explorer.SSWExplorer`); an explorer is configured once (its
  constructor stores parameters) and asked for candidate frames with
  :meth:`Explorer.explore`.
* :class:`LennardJonesCluster` (exact, untruncated LJ) and :class:`CountingCalculator`
  (counts and caps any calculator's evaluations), for benchmarks.

The names are imported on first use.
"""

from .._lazy import lazy_getattr
from ._base import Explorer, explorers, get_explorer, register_explorer

_LAZY = {
    "SSW": "pesdata.explore.ssw",
    "MinimaArchive": "pesdata.explore.archive",
    "run_walkers": "pesdata.explore.walkers",
    "resolve_calculator": "pesdata.explore.walkers",
    "LennardJonesCluster": "pesdata.explore.lj",
    "CountingCalculator": "pesdata.explore.counting",
    "MDExplorer": "pesdata.explore.md",
    "SSWExplorer": "pesdata.explore.ssw_explorer",
}

__all__ = ["Explorer", "explorers", "get_explorer", "register_explorer", *sorted(_LAZY)]

__getattr__ = lazy_getattr("pesdata.explore", _LAZY, globals())
