"""The selection policy: from scored candidates to one decision per frame.

``decide`` is a pure function of the ledger rows and the summary's criteria and policy, so a
kept ledger can be decided again with new thresholds or a new budget (``select --rescore``)
without computing a descriptor or a prediction.

A frame is decided in this order (the first rule that applies wins):

1. ``failed`` — it is unusable before any criterion (NaN/inf coordinates, overlapping atoms, a
   degenerate cell: the ``invalid`` column), or a criterion found it failed (NaN descriptor or
   prediction, an error at or above the trust window's upper bound);
2. ``duplicate`` — its geometry is already stored, or an earlier candidate has it;
3. ``accurate`` — neither novel nor an error candidate;
4. otherwise it qualifies (novel OR error candidate). Qualifying frames get a *priority*: the
   largest of their criterion values relative to the threshold that made them qualify (novelty
   over its threshold; error or committee spread over the window's lower bound; an infinite
   value — an element the reference lacks, a window with ``lo = 0`` — counts as twice the
   largest finite priority, so such frames lead without flattening the others). Going through
   them from the highest priority down, a frame whose fingerprint lies within ``near_duplicate``
   of a higher-priority one is a ``duplicate`` too. The rest are diversified down to the budget
   by the diversity strategy (FPS by default: started from the highest-priority frame, with
   priority-weighted distances, so a tight budget keeps the clearest cases and spreads the
   rest): ``selected`` (with their pick ``rank``) or ``dropped_by_budget``. A budget of 0
   scores only: qualifying frames keep the decision ``novel`` or ``candidate``.

Ties are broken by candidate order (the lower row first).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..errors import ParameterError
from .registry import get_criterion, get_diversity

__all__ = ["decide", "groups_of"]

NOVELTY_COLUMNS = ("novelty", "novelty_distance", "novelty_element", "novelty_atom")
ERROR_COLUMNS = ("trust", "e_lo", "e_hi", "f_lo", "f_hi")


def groups_of(df: pd.DataFrame) -> np.ndarray:
    """Group of each candidate for the group cap: ``group``, else its source file / store."""
    source = df["source"].astype(str).str.rsplit("#", n=1).str[0]
    group = df["group"].where(df["group"].notna(), None)
    return np.array([g if isinstance(g, str) and g else s for g, s in zip(group, source,
                                                                            strict=True)])


def _error_priority(df: pd.DataFrame) -> pd.Series:
    """Error quantities over the lower bound of their window (NaN where not scored)."""
    parts = []
    for value, lo in (("energy_error", "e_lo"), ("force_error", "f_lo"),
                      ("energy_std", "e_lo"), ("force_std", "f_lo")):
        if value in df and lo in df:
            v = pd.to_numeric(df[value], errors="coerce")
            b = pd.to_numeric(df[lo], errors="coerce")
            parts.append(v / b.where(b > 0))
    if not parts:
        return pd.Series(np.nan, index=df.index)
    return pd.concat(parts, axis=1).max(axis=1, skipna=True)


def finite_priority(p: np.ndarray) -> np.ndarray:
    """Priorities for the diversity weights: NaN → 0, +inf → twice the largest finite one."""
    p = np.nan_to_num(np.asarray(p, dtype=float), nan=0.0, posinf=np.nan, neginf=0.0)
    finite = p[np.isfinite(p)]
    top = finite.max() if len(finite) and finite.max() > 0 else 1.0
    return np.where(np.isnan(p), 2.0 * top, np.maximum(p, 0.0))


def decide(ledger: pd.DataFrame, criteria: Mapping[str, Mapping], policy: Mapping) -> pd.DataFrame:
    """Decide every candidate of ``ledger``.

    Parameters
    ----------
    ledger : pandas.DataFrame
        Ledger rows with the metadata, validity, duplicate and score columns filled.
    criteria : mapping
        Criterion name → the thresholds it applies (its ``thresholds_``).
    policy : mapping
        ``budget`` (int or None: every qualifying frame), ``diversity`` (strategy name),
        ``group_cap`` (int or None), ``seed`` (int), ``near_duplicate`` (fingerprint distance).

    Returns
    -------
    pandas.DataFrame
        A copy with ``novelty_verdict``, ``error_verdict``, the novelty summary and trust
        window columns, ``priority``, ``decision``, ``reason`` and ``rank`` (re)set.
    """
    budget = policy.get("budget")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int | np.integer)
                               or budget < 0):
        raise ParameterError(f"budget must be a non-negative integer or None, got {budget!r}")
    tol = float(policy.get("near_duplicate", 0.0))
    if not tol >= 0:
        raise ParameterError(f"near_duplicate must be a distance ≥ 0, got {tol!r}")
    df = ledger.copy().reset_index(drop=True)
    n = len(df)
    valid = df["invalid"].isna().to_numpy() if "invalid" in df else np.ones(n, bool)
    reasons = [[] for _ in range(n)]
    failed = ~valid
    for k in np.flatnonzero(~valid):
        reasons[k].append(str(df.at[k, "invalid"]))
    novel = np.zeros(n, bool)
    candidate = np.zeros(n, bool)
    for cname in ("novelty", "error", "committee"):
        if cname not in criteria:
            continue
        cls = get_criterion(cname)
        rows = np.flatnonzero(valid)
        judged = cls.judge(df.iloc[rows].reset_index(drop=True), criteria[cname])
        verdict_col = "novelty_verdict" if cls.family == "novelty" else "error_verdict"
        if verdict_col not in df:
            df[verdict_col] = None
        df[verdict_col] = df[verdict_col].astype(object)
        extra = NOVELTY_COLUMNS if cls.family == "novelty" else ERROR_COLUMNS
        for col in extra:
            if col in judged:
                if col not in df:
                    df[col] = None
                if df[col].dtype != object and judged[col].dtype == object:
                    df[col] = df[col].astype(object)
                df.loc[rows, col] = judged[col].to_numpy()
        df.loc[rows, verdict_col] = judged["verdict"].to_numpy()
        for k, v, why in zip(rows, judged["verdict"], judged["reason"], strict=True):
            reasons[k].append(str(why))
            failed[k] |= v == "failed"
            novel[k] |= v == "novel"
            candidate[k] |= v == "candidate"
    dup = (df["duplicate_of"].notna().to_numpy() if "duplicate_of" in df else np.zeros(n, bool))
    if not criteria:  # diversity alone: every usable frame qualifies, equally
        candidate = ~failed & ~dup
        for k in np.flatnonzero(candidate):
            reasons[k].append("diversity only (no criterion)")
    qualifies = (novel | candidate) & ~failed & ~dup
    prio = np.full(n, np.nan)
    if "novelty" in df:
        nov = pd.to_numeric(df["novelty"], errors="coerce").to_numpy(float)
        prio = np.where(novel, nov, prio)
    err = _error_priority(df).to_numpy(float) if criteria else np.ones(n)
    prio = np.where(candidate & ~(prio >= err), err, prio)
    decision = np.where(failed, "failed", np.where(dup, "duplicate", "accurate")).astype(object)
    for k in np.flatnonzero(dup & ~failed):
        reasons[k].insert(0, f"same geometry as {df.at[k, 'duplicate_of']}")
    rank = np.full(n, -1)
    q = np.flatnonzero(qualifies)
    if len(q):
        fp = np.array([np.asarray(f, dtype=float) for f in df.loc[q, "fingerprint"]])
        p = finite_priority(prio[q])
        order = np.lexsort((q, -p))  # highest priority first, ties by row
        keep = np.ones(len(q), bool)
        if tol > 0 and len(q) > 1:
            from .fingerprint import near_duplicates

            earlier = near_duplicates(fp[order], tol)
            for j in np.flatnonzero(earlier >= 0):
                k = q[order[j]]
                keep[order[j]] = False
                decision[k] = "duplicate"
                first = df.at[q[order[earlier[j]]], "id"]
                reasons[k].insert(0, f"near-duplicate of candidate {first} (fingerprint "
                                     f"distance < {tol:g})")
        q, fp, p = q[keep], fp[keep], p[keep]
        if budget == 0:  # score only: qualifying frames keep what made them qualify
            decision[q] = np.where(novel[q], "novel", "candidate")
        elif len(q):
            _diversify(df, q, fp, p, budget, policy, decision, rank, reasons)
    if "novelty" in criteria and "novelty_element" in df:
        per = criteria["novelty"].get("per_element", {})
        df["novelty_threshold"] = [per.get(e) if isinstance(e, str) else None
                                   for e in df["novelty_element"]]
    df["priority"] = prio
    df["decision"] = decision
    df["reason"] = ["; ".join(r) for r in reasons]
    df["rank"] = pd.array(np.where(rank >= 0, rank, -1), dtype="Int32")
    df.loc[rank < 0, "rank"] = pd.NA
    return df


def _diversify(df, q, fp, p, budget, policy, decision, rank, reasons) -> None:
    """Pick at most ``budget`` of the qualifying rows ``q``; mark the others dropped."""
    strategy = get_diversity(policy.get("diversity", "fps"))(seed=int(policy.get("seed", 0)))
    groups = groups_of(df.iloc[q]) if policy.get("group_cap") else None
    size = len(q) if budget is None else int(budget)
    picks = np.asarray(strategy.pick(fp, size, priority=p, groups=groups,
                                     group_cap=policy.get("group_cap")), dtype=int)
    decision[q] = "dropped_by_budget"
    why = (f"not among the {len(picks)} picks of {strategy.name} (budget {size})"
           if budget is not None else f"not picked by {strategy.name}")
    cap = policy.get("group_cap")
    full = set()
    if cap:
        picked_groups = pd.Series(groups[picks]).value_counts()
        full = set(picked_groups[picked_groups >= cap].index)
    for j, k in enumerate(q):
        if cap and groups[j] in full:
            reasons[k].append(f"{why}; group {groups[j]!r} reached the cap of {cap}")
        else:
            reasons[k].append(why)
    for r, j in enumerate(picks):
        k = q[j]
        decision[k] = "selected"
        rank[k] = r
        reasons[k][-1] = f"selected: pick {r + 1} of {len(picks)} ({strategy.name})"


def counts(df: pd.DataFrame) -> dict[str, int]:
    """Frames per decision (decisions with none left out)."""
    return {str(k): int(v) for k, v in df["decision"].value_counts(sort=False).items()}
