"""Contract tests every selection criterion and diversity strategy must pass.

:class:`CriterionTests` and :class:`DiversityTests` hold the invariants of
``pesdata.select``: finite scores of the right shape, verdicts from the declared set,
thresholds that survive JSON, permutation equivariance, determinism, a ledger round trip
(:class:`CriterionTests`); exact budgets, same seed → same picks, no repeated pick, group caps
(:class:`DiversityTests`). Subclass them in a pytest module::

    from pesdata.testing import CriterionTests

    class TestMyCriterion(CriterionTests):
        criterion_factory = staticmethod(lambda: MyCriterion(alpha=1.0))
        reference_factory = staticmethod(load_reference)
        candidates_factory = staticmethod(load_candidates)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..select import Criterion, Diversity, Environments
from ..select._base import VERDICTS
from ..select.ledger import column_names, to_table

__all__ = ["CriterionTests", "DiversityTests", "permute_frames"]

_CACHE: dict[tuple[type, str], Any] = {}


def permute_frames(candidates, order: np.ndarray):
    """``candidates`` (Environments or a list of frames) with its frames in ``order``."""
    if isinstance(candidates, Environments):
        pieces = [np.flatnonzero(candidates.structure == k) for k in order]
        rows = np.concatenate(pieces) if pieces else np.zeros(0, int)
        structure = np.repeat(np.arange(len(order)), [len(p) for p in pieces])
        return Environments(candidates.features[rows], candidates.numbers[rows], structure,
                            len(order), candidates.feature_names)
    return [candidates[k] for k in order]


def _n_frames(candidates) -> int:
    return candidates.n_frames if isinstance(candidates, Environments) else len(candidates)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    for col in a.columns:
        for x, y in zip(a[col], b[col], strict=True):
            if isinstance(x, str) or x is None:
                assert x == y, (col, x, y)
            else:
                np.testing.assert_allclose(np.asarray(x, dtype=float), np.asarray(y, dtype=float),
                                           rtol=1e-10, atol=1e-12, err_msg=col)


class _Factories:
    def _factory(self, name: str) -> Callable:
        for klass in type(self).__mro__:
            if name in klass.__dict__:
                value = klass.__dict__[name]
                return value.__func__ if isinstance(value, staticmethod) else value
        raise TypeError(f"{type(self).__name__} must set {name}")

    def _cached(self, name: str):
        key = (type(self), name)
        if key not in _CACHE:
            _CACHE[key] = self._factory(name)()
        return _CACHE[key]


class CriterionTests(_Factories):
    """Contract tests for a :class:`~pesdata.select.Criterion`; subclass to run them.

    criterion_factory : callable
        ``criterion_factory()`` returns a fresh, unfitted criterion.
    reference_factory : callable
        Returns what ``fit`` takes (read once per test class).
    candidates_factory : callable
        Returns what ``score`` takes: :class:`~pesdata.select.Environments` or a list of
        frames, every frame valid (read once per test class).
    """

    criterion_factory: Callable[[], Criterion]
    reference_factory: Callable[[], Any]
    candidates_factory: Callable[[], Any]

    def fitted(self) -> Criterion:
        """A criterion fitted on the reference."""
        return self._factory("criterion_factory")().fit(self._cached("reference_factory"))

    def test_constructor_only_stores(self):
        crit = self._factory("criterion_factory")()
        assert isinstance(crit, Criterion)
        assert not any(k.endswith("_") for k in vars(crit)), "fitted state before fit"
        assert crit.name and crit.family in VERDICTS

    def test_score_shape_and_columns(self):
        cands = self._cached("candidates_factory")
        scores = self.fitted().score(cands)
        assert isinstance(scores, pd.DataFrame)
        assert len(scores) == _n_frames(cands)
        assert set(scores.columns) <= set(column_names()), "undeclared ledger columns"
        crit = self._factory("criterion_factory")()
        assert set(crit.columns) <= set(scores.columns)

    def test_scores_finite(self):
        scores = self.fitted().score(self._cached("candidates_factory"))
        for col in scores.columns:
            values = [v for v in scores[col] if not isinstance(v, str) and v is not None]
            for v in values:
                assert np.isfinite(np.asarray(v, dtype=float)).all(), f"{col}: {v}"

    def test_judge_verdicts_and_reasons(self):
        crit = self.fitted()
        judged = type(crit).judge(crit.score(self._cached("candidates_factory")),
                                  crit.thresholds_)
        assert {"verdict", "reason", "value"} <= set(judged.columns)
        assert set(judged["verdict"]) <= set(VERDICTS[crit.family])
        assert all(isinstance(r, str) and r for r in judged["reason"])

    def test_thresholds_survive_json(self):
        crit = self.fitted()
        scores = crit.score(self._cached("candidates_factory"))
        back = json.loads(json.dumps(crit.thresholds_, allow_nan=False))
        _same(type(crit).judge(scores, back), type(crit).judge(scores, crit.thresholds_))

    def test_frame_permutation_equivariance(self):
        cands = self._cached("candidates_factory")
        crit = self.fitted()
        order = np.random.default_rng(0).permutation(_n_frames(cands))
        a = crit.score(cands).iloc[order].reset_index(drop=True)
        b = crit.score(permute_frames(cands, order)).reset_index(drop=True)
        _same(a, b)

    def test_deterministic(self):
        cands = self._cached("candidates_factory")
        _same(self.fitted().score(cands), self.fitted().score(cands))

    def test_ledger_round_trip(self):
        crit = self.fitted()
        scores = crit.score(self._cached("candidates_factory"))
        back = to_table(scores).to_pandas()[list(scores.columns)]
        a = type(crit).judge(scores, crit.thresholds_)
        b = type(crit).judge(back, crit.thresholds_)
        assert list(a["verdict"]) == list(b["verdict"])
        np.testing.assert_allclose(a["value"].astype(float), b["value"].astype(float),
                                   rtol=1e-6)  # float32 per-atom columns in the ledger


class DiversityTests(_Factories):
    """Contract tests for a :class:`~pesdata.select.Diversity` strategy; subclass to run them.

    strategy_factory : callable
        ``strategy_factory(seed)`` returns a fresh strategy.
    fingerprints_factory : callable
        Returns an (n, d) array of real per-structure fingerprints, n ≥ 12.
    """

    strategy_factory: Callable[[int], Diversity]
    fingerprints_factory: Callable[[], np.ndarray]

    def _fp(self) -> np.ndarray:
        return np.asarray(self._cached("fingerprints_factory"), dtype=float)

    def test_exact_budget_without_repeats(self):
        fp = self._fp()
        for budget in (1, 5, len(fp) - 1, len(fp), len(fp) + 3):
            picks = np.asarray(self._factory("strategy_factory")(0).pick(fp, budget))
            assert len(picks) == min(budget, len(fp))
            assert len(set(picks.tolist())) == len(picks)
            assert picks.min() >= 0 and picks.max() < len(fp)

    def test_same_seed_same_picks(self):
        fp = self._fp()
        prio = np.linspace(1, 2, len(fp))
        make = self._factory("strategy_factory")
        a = make(3).pick(fp, 6, priority=prio)
        b = make(3).pick(fp, 6, priority=prio)
        np.testing.assert_array_equal(a, b)

    def test_zero_budget(self):
        assert len(self._factory("strategy_factory")(0).pick(self._fp(), 0)) == 0

    def test_group_cap(self):
        fp = self._fp()
        groups = np.array([f"g{k % 3}" for k in range(len(fp))])
        picks = self._factory("strategy_factory")(0).pick(fp, 6, groups=groups, group_cap=2)
        assert len(picks) == 6
        _, per = np.unique(groups[np.asarray(picks)], return_counts=True)
        assert per.max() <= 2
