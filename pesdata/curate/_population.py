"""The population (outlier) validators over a curate run's rows, in bounded memory.

An outlier validator compares each row's statistic with the median and MAD of its population
(:class:`~pesdata.curate._validators._OutlierValidator`), so it needs all the population's
values; a run of 10⁸ frames would hold them all. When the run's statistics were spilled to disk
(:class:`~pesdata.curate._stats.RunStats`) the populations are instead

1. counted (one pass over the statistics file),
2. packed into bins of at most ``mem_rows`` rows, a population larger than that alone in its
   bin, and the rows written to one file per bin (:class:`~pesdata._spill.Parts`),
3. judged bin by bin: a bin of small populations is read whole and given to every validator's
   ``check_population`` as before; a large population's median and MAD are found exactly by a
   radix selection (four passes of 16 bits over the float64 values' order-preserving integers,
   :func:`kth_smallest`), then its rows are flagged in one more pass.

The result is the in-memory one exactly: the same medians (NumPy's mean of the two middle values
for an even count), the same z-scores, the same issues. A validator that is not one of the
built-in outlier validators (or overrides their ``check_population``) is given the whole run in
memory, as before: it may compare across populations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from .._spill import Parts
from ._stats import STAT_REC, RunStats, records_arrays
from ._validators import Issue, _OutlierValidator

__all__ = ["flag_outliers", "kth_smallest", "streamed_median"]

#: Rows of populations judged in memory at a time.
MEM_ROWS = 1 << 18
_BIN_REC = np.dtype([("idx", "<i8"), *[(n, STAT_REC[n]) for n in STAT_REC.names if n != "pos"]])
_SIGN = np.uint64(1 << 63)


def _ordered(v: np.ndarray) -> np.ndarray:
    """float64 → uint64 with the same order (negative values' bits flipped)."""
    u = np.ascontiguousarray(v, dtype=np.float64).view(np.uint64)
    return np.where(u & _SIGN, ~u, u | _SIGN)


def _from_ordered(u: int) -> float:
    u = np.uint64(u)
    bits = (u & ~_SIGN) if u & _SIGN else ~u
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


def kth_smallest(chunks: Callable[[], Iterable[np.ndarray]], ks: list[int]) -> list[float]:
    """The ``k``-th smallest (0-based) of a stream of finite float64 values, for each of ``ks``.

    ``chunks()`` is called once per pass (four passes) and must yield the same values each time.
    Memory: one chunk and a 65,536-bin histogram per ``k``.
    """
    prefix = [0] * len(ks)
    rest = list(ks)
    for shift in (48, 32, 16, 0):
        hist = [np.zeros(1 << 16, np.int64) for _ in ks]
        for v in chunks():
            u = _ordered(v)
            for j in range(len(ks)):
                w = u if shift == 48 else u[(u >> np.uint64(shift + 16)) == np.uint64(prefix[j])]
                hist[j] += np.bincount(((w >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(
                    np.int64), minlength=1 << 16)
        for j in range(len(ks)):
            cum = np.cumsum(hist[j])
            d = int(np.searchsorted(cum, rest[j], side="right"))
            rest[j] -= int(cum[d - 1]) if d else 0
            prefix[j] = (prefix[j] << 16) | d
    return [_from_ordered(p) for p in prefix]


def streamed_median(chunks: Callable[[], Iterable[np.ndarray]], n: int) -> float:
    """``np.median`` of ``n`` finite values streamed by ``chunks`` (see :func:`kth_smallest`)."""
    if n % 2:
        return kth_smallest(chunks, [n // 2])[0]
    a, b = kth_smallest(chunks, [n // 2 - 1, n // 2])
    return float(np.mean(np.array([a, b])))


def _live(rec: np.ndarray, dropped: Callable[[int, int], np.ndarray] | None) -> np.ndarray:
    """Which records' spool rows were not dropped (``dropped(lo, hi)``: the sorted packed
    positions in a range, :meth:`~pesdata.curate._spool.Spool.dropped`)."""
    if dropped is None or not len(rec):
        return np.ones(len(rec), bool)
    packed = rec["pos"].astype(np.int64) >> 2  # the spool's packed position (_stats._pack)
    d = dropped(int(packed.min()), int(packed.max()) + 1)
    if not len(d):
        return np.ones(len(rec), bool)
    at = np.minimum(np.searchsorted(d, packed), len(d) - 1)
    return d[at] != packed


def flag_outliers(stats: RunStats, checks: list, spill: Path, mem_rows: int | None = None,
                  dropped: Callable[[int, int], np.ndarray] | None = None
                  ) -> dict[int, list[Issue]]:
    """Row index → issues of the outliers the population ``checks`` find among ``stats``.

    In memory (every check's ``check_population`` on all rows) unless the statistics were
    spilled; then binned under ``spill`` (a new directory) as the module doc says. Rows whose
    spool position ``dropped(lo, hi)`` lists (sorted, packed as ``file << 32 | row``:
    duplicates and superseded copies) take no part.
    """
    found: dict[int, dict[int, Issue]] = {j: {} for j in range(len(checks))}  # per check
    whole = [j for j, c in enumerate(checks) if not stats.spilled or not _builtin(c)]
    if whole:  # in memory: a small run, or custom checks (they see the whole run)
        rec = np.concatenate(list(stats.chunks())) if len(stats) else np.zeros(0, STAT_REC)
        live = np.flatnonzero(_live(rec, dropped))
        arrays = records_arrays(rec[live], stats.keys, stats.populations)
        del rec
        for j in whole:
            found[j] = {int(live[idx]): issue
                        for idx, issue in checks[j].check_population(arrays).items()}
        del arrays, live
    builtin = [j for j in range(len(checks)) if j not in whole]
    if builtin:
        _binned(stats, [checks[j] for j in builtin], spill, mem_rows, dropped,
                [found[j] for j in builtin])
    flagged: dict[int, list[Issue]] = {}
    for j in range(len(checks)):  # a row's issues in the order of the checks
        for idx, issue in found[j].items():
            flagged.setdefault(idx, []).append(issue)
    return {idx: flagged[idx] for idx in sorted(flagged)}


def _binned(stats: RunStats, checks: list, spill: Path, mem_rows: int | None,
            dropped: Callable[[int, int], np.ndarray] | None,
            found: list[dict[int, Issue]]) -> None:
    """Built-in outlier ``checks`` over the populations, binned to files (module doc, 2–3);
    each check's issues are added to its dict in ``found``."""
    mem_rows = MEM_ROWS if mem_rows is None else max(1, int(mem_rows))
    counts = np.zeros(len(stats.keys), np.int64)
    for rec in stats.chunks():
        counts += np.bincount(rec["group"][_live(rec, dropped)], minlength=len(counts))
    bin_of, large, n_bins, room = np.zeros(len(counts), np.int64), set(), 0, 0
    for g in np.argsort(-counts, kind="stable"):  # largest first; first fit in the open bin
        if counts[g] > mem_rows:
            bin_of[g] = n_bins
            large.add(n_bins)
            n_bins += 1
        elif counts[g]:
            if not n_bins or n_bins - 1 in large or room < counts[g]:
                n_bins, room = n_bins + 1, mem_rows
            bin_of[g] = n_bins - 1
            room -= counts[g]
    parts = Parts(max(n_bins, 1), _BIN_REC, spill)
    at = 0
    for rec in stats.chunks():
        live = np.flatnonzero(_live(rec, dropped))
        out = np.empty(len(live), _BIN_REC)
        out["idx"] = at + live
        for name in _BIN_REC.names[1:]:
            out[name] = rec[name][live]
        parts.add(bin_of[out["group"]], out)
        at += len(rec)
    for b in range(n_bins):
        rec = None if b in large else parts.take(b)
        for j, check in enumerate(checks):
            if rec is None:
                found[j].update(_large(check, parts, b, stats, mem_rows))
            else:
                found[j].update({int(rec["idx"][k]): issue for k, issue in check.check_population(
                    records_arrays(rec, stats.keys, stats.populations)).items()})


def _builtin(check) -> bool:
    """Whether ``check`` judges each population on its own with the built-in rule (so it can
    be binned and streamed): an outlier validator whose ``check_population`` is not overridden."""
    return (isinstance(check, _OutlierValidator)
            and type(check).check_population is _OutlierValidator.check_population)


def _large(check: _OutlierValidator, parts: Parts, b: int, stats: RunStats,
           rows: int) -> dict[int, Issue]:
    """A built-in outlier validator over one population too large to hold (bin ``b``, read
    ``rows`` at a time)."""
    stat = check.stat

    def values() -> Iterator[np.ndarray]:
        for rec in parts.chunks(b, rows):
            v = rec[stat]
            yield v[np.isfinite(v)]

    n = sum(len(v) for v in values())
    if n < check.min_group:
        return {}
    med = streamed_median(values, n)
    mad = max(streamed_median(lambda: (np.abs(v - med) for v in values()), n), check.mad_floor)
    if mad <= 0:
        return {}
    out: dict[int, Issue] = {}
    population = None
    for rec in parts.chunks(b, rows):
        v = rec[stat]
        fin = np.isfinite(v)
        z = np.zeros(len(v))
        z[fin] = 0.6745 * (v[fin] - med) / mad
        for k in np.flatnonzero(fin & (np.abs(z) > check.threshold)):
            key = stats.keys[int(rec["group"][k])]
            if population is None:
                population = {**stats.populations.get(key, {"group": str(key)}), "n": int(n)}
            out[int(rec["idx"][k])] = check.issue(v[k], z[k], key, population)
    return out
