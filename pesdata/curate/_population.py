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
built-in outlier validators gets a large population whole in memory.
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


def flag_outliers(stats: RunStats, checks: list, spill: Path,
                  mem_rows: int | None = None) -> dict[int, list[Issue]]:
    """Row index → issues of the outliers the population ``checks`` find among ``stats``.

    In memory (every check's ``check_population`` on all rows) unless the statistics were
    spilled; then binned under ``spill`` (a new directory) as the module doc says.
    """
    flagged: dict[int, list[Issue]] = {}
    if not stats.spilled:
        arrays = stats.arrays()
        for check in checks:
            for idx, issue in check.check_population(arrays).items():
                flagged.setdefault(int(idx), []).append(issue)
        return flagged
    mem_rows = MEM_ROWS if mem_rows is None else max(1, int(mem_rows))
    counts = np.zeros(len(stats.keys), np.int64)
    for rec in stats.chunks():
        counts += np.bincount(rec["group"], minlength=len(counts))
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
        out = np.empty(len(rec), _BIN_REC)
        out["idx"] = np.arange(at, at + len(rec))
        for name in _BIN_REC.names[1:]:
            out[name] = rec[name]
        parts.add(bin_of[rec["group"]], out)
        at += len(rec)
    for b in range(n_bins):
        streamed = b in large
        rec = None if streamed else parts.take(b)
        for check in checks:
            if streamed and isinstance(check, _OutlierValidator):
                found = _large(check, parts, b, stats)
            else:
                rec = parts.take(b) if rec is None else rec
                found = {int(rec["idx"][k]): issue for k, issue in check.check_population(
                    records_arrays(rec, stats.keys, stats.populations)).items()}
            for idx, issue in found.items():
                flagged.setdefault(idx, []).append(issue)
    return flagged


def _large(check: _OutlierValidator, parts: Parts, b: int, stats: RunStats) -> dict[int, Issue]:
    """A built-in outlier validator over one population too large to hold (bin ``b``)."""
    stat = check.stat

    def values() -> Iterator[np.ndarray]:
        for rec in parts.chunks(b, MEM_ROWS):
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
    for rec in parts.chunks(b, MEM_ROWS):
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
