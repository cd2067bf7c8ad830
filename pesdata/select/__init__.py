"""Selection: which candidate frames are worth labelling, and why (DESIGN.md section 6).

>>> from pesdata.select import select                                  # doctest: +SKIP
>>> sel = select(store, ["md.extxyz"], budget=20, out="queue")          # doctest: +SKIP
>>> sel.counts, store.ledger(sel.name).head()                           # doctest: +SKIP

Criteria (:class:`NoveltyCriterion`, :class:`ErrorCriterion`, :class:`CommitteeCriterion`) and
diversity strategies (FPS, k-means medoids, DIRECT) are found by name through
:mod:`pesdata.select.registry`; the names below are imported on first use, so importing this
package loads neither torch nor faiss nor scikit-learn.
"""

from __future__ import annotations

from .._lazy import lazy_getattr
from ._base import Criterion, Diversity, Environments
from .registry import criteria, diversities, get_criterion, get_diversity, register

_LAZY = {
    "Selection": "pesdata.select._select",
    "select": "pesdata.select._select",
    "rescore": "pesdata.select._rescore",
    "decide": "pesdata.select.policy",
    "read_candidates": "pesdata.select.candidates",
    "Candidates": "pesdata.select.candidates",
    "load_ledger": "pesdata.select.ledger",
    "NoveltyCriterion": "pesdata.select.novelty",
    "ErrorCriterion": "pesdata.select.error",
    "CommitteeCriterion": "pesdata.select.committee",
    "TrustWindows": "pesdata.select.trust",
    "structure_fingerprints": "pesdata.select.fingerprint",
}

__all__ = ["Criterion", "Diversity", "Environments", "criteria", "diversities", "get_criterion",
           "get_diversity", "register", *sorted(_LAZY)]


__getattr__ = lazy_getattr("pesdata.select", _LAZY, globals())
