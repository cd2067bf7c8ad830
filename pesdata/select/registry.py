"""Criteria and diversity strategies by name, imported only when asked for (as ASE finds formats).

A diversity-only selection never imports torch: the table below names modules, and a module is
imported by :func:`get_criterion` / :func:`get_diversity` on first use.
"""

from __future__ import annotations

from .._lazy import load_registered
from ..errors import ParameterError
from ._base import Criterion, Diversity

__all__ = ["criteria", "diversities", "get_criterion", "get_diversity", "register"]

_CRITERIA: dict[str, str | type] = {
    "novelty": "pesdata.select.novelty:NoveltyCriterion",
    "error": "pesdata.select.error:ErrorCriterion",
    "committee": "pesdata.select.committee:CommitteeCriterion",
}
_DIVERSITY: dict[str, str | type] = {
    "fps": "pesdata.select.fps:FarthestPointSampling",
    "kmeans": "pesdata.select.kmeans:KMeansMedoids",
    "direct": "pesdata.select.direct:DirectSampling",
}


def get_criterion(name: str) -> type[Criterion]:
    """The :class:`Criterion` subclass registered as ``name``; ParameterError if unknown."""
    return load_registered(_CRITERIA, "criterion", name, Criterion)


def get_diversity(name: str) -> type[Diversity]:
    """The :class:`Diversity` subclass registered as ``name``; ParameterError if unknown."""
    return load_registered(_DIVERSITY, "diversity strategy", name, Diversity)


def criteria() -> tuple[str, ...]:
    """Registered criterion names."""
    return tuple(sorted(_CRITERIA))


def diversities() -> tuple[str, ...]:
    """Registered diversity strategy names."""
    return tuple(sorted(_DIVERSITY))


def register(cls: type) -> type:
    """Register a Criterion or Diversity subclass under its ``name`` (usable as a decorator)."""
    if isinstance(cls, type) and issubclass(cls, Criterion) and cls.name:
        _CRITERIA[cls.name] = cls
    elif isinstance(cls, type) and issubclass(cls, Diversity) and cls.name:
        _DIVERSITY[cls.name] = cls
    else:
        raise ParameterError(f"{cls!r} is not a named Criterion or Diversity subclass")
    return cls
