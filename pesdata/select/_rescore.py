"""``rescore``: decide a kept ledger again with new thresholds or a new budget, from its numbers."""

from __future__ import annotations

import datetime as _dt
import os
import secrets
from collections.abc import Mapping

from ..errors import InputError, ParameterError
from . import ledger as _ledger
from ._output import check_queue_path, keep, write_selected
from ._select import KEEP, Selection, check_policy
from .candidates import read_candidates
from .policy import counts, decide
from .registry import get_criterion

__all__ = ["rescore"]


def rescore(
    store,
    ledger: str,
    *,
    novelty_threshold: float | None = None,
    novelty_quantile: float | None = None,
    novelty_top_k: int | None = None,
    error_thresholds: Mapping | None = None,
    budget=KEEP,
    diversity: str | None = None,
    group_cap=KEEP,
    seed: int | None = None,
    near_duplicate: float | None = None,
    name: str | None = None,
    out: str | os.PathLike | None = None,
    trust=None,
) -> Selection:
    """Decide a kept ledger again with new thresholds or a new budget, recomputing nothing.

    Options left out keep the ledger's values (``budget`` and ``group_cap`` accept None to
    lift them). The result is kept as a new ledger ``name`` whose summary names the original.
    With ``out``, the candidates are read again from the sources the ledger names (reading,
    not describing) to write the queue; a source that changed since (another geometry under
    the same row) is refused.

    Parameters
    ----------
    store : pesdata.Store
        The store keeping the ledger (the new ledger is kept there too).
    ledger : str
        Name of the kept ledger.
    novelty_threshold, novelty_quantile : float, optional
        New absolute threshold or calibration quantile for novelty.
    novelty_top_k : int, optional
        Judge novelty as the mean of the ``k`` largest ratios (0: back to the maximum).
    error_thresholds : mapping, optional
        Changes for the error/committee thresholds (e.g. ``{"f_lo": 0.1}``), applied after
        ``trust``.
    trust : TrustWindows, dict or path, optional
        New trust windows (default window and per config_type/composition overrides) for
        the error/committee criterion, judged again on the stored errors.
    budget, diversity, group_cap, seed, near_duplicate : optional
        New policy values.
    name : str, optional
        Name of the new ledger (default ``<ledger>-rescored-<hex>``).
    out : path, optional
        Queue directory to write.

    Returns
    -------
    Selection
    """
    df, old = _ledger.load_ledger(store, ledger)
    pol = dict(old["policy"])
    for key, value in (("budget", budget), ("group_cap", group_cap)):
        if value is not KEEP:
            pol[key] = value
    for key, value in (("diversity", diversity), ("seed", seed),
                       ("near_duplicate", near_duplicate)):
        if value is not None:
            pol[key] = value
    policy = check_policy(**pol)
    criteria = {k: dict(v) for k, v in old["criteria"].items()}
    if novelty_threshold is not None or novelty_quantile is not None or \
            novelty_top_k is not None:
        if "novelty" not in criteria:
            raise ParameterError(f"ledger {ledger!r} has no novelty scores to rescore")
        changes = {}
        if novelty_threshold is not None:
            changes["threshold"] = novelty_threshold
        if novelty_quantile is not None:
            changes["quantile"] = novelty_quantile
        if novelty_top_k is not None:
            changes.update({"aggregate": "top_k", "top_k": novelty_top_k} if novelty_top_k
                           else {"aggregate": "max"})
        criteria["novelty"] = get_criterion("novelty").update_thresholds(criteria["novelty"],
                                                                         **changes)
    if error_thresholds or trust is not None:
        cname = next((c for c in ("error", "committee") if c in criteria), None)
        if cname is None:
            raise ParameterError(f"ledger {ledger!r} has no error or committee scores")
    if trust is not None:
        from .trust import as_trust

        columns = criteria[cname].get("columns")
        criteria[cname] = {**as_trust(trust, cname).to_dict(), "columns": columns}
    if error_thresholds:
        criteria[cname] = get_criterion(cname).update_thresholds(criteria[cname],
                                                                 **dict(error_thresholds))
    name = name or f"{ledger}-rescored-{secrets.token_hex(2)}"
    _ledger.check_name(store, name)
    if out is not None:
        check_queue_path(out)
    decided = decide(df, criteria, policy)
    summary = {**old, "name": name, "rescored_from": ledger,
               "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "criteria": criteria, "policy": policy, "counts": counts(decided)}
    cands = None
    if out is not None:
        cands = read_candidates(old["candidates"])
        if len(cands) != len(decided) or list(cands.meta["geometry_hash"]) != list(
                decided["geometry_hash"]):
            raise InputError("the candidate sources changed since the ledger was made; the "
                             "queue cannot be written from them",
                             path=", ".join(old["candidates"]))
    queue = keep(store, name, decided, summary, None if out is None else
                 lambda: write_selected(store, out, cands, decided, summary))
    return Selection(name, decided, summary, queue)
