"""A store version as the novelty reference, read chunk by chunk: memory flat in its size.

``select`` on a store of 10⁶ structures once loaded every reference descriptor row into memory,
copied it per element, indexed it in faiss and shipped the fitted index with each Dask task
(3.6 GB in the driver at 4·10⁶ rows). :class:`StreamedReference` never holds the reference: it
answers the three questions novelty asks of it in passes over the chunks of a
:class:`~pesdata.descriptors._stream.DescriptorStream`, each chunk one task (Dask with a
scheduler; the driver merges small results in chunk order, so the answer does not depend on the
scheduler):

* :meth:`~StreamedReference.stats` — per element, the count, mean and sum of squared deviations
  of every feature over the finite rows (chunks merged with Chan et al.'s pairwise update, so the
  variance is as accurate as NumPy's two-pass one), and the rows dropped as non-finite;
* :meth:`~StreamedReference.gather` — given positions among an element's finite rows (in stream
  order), those rows (the calibration subsample);
* :meth:`~StreamedReference.nearest` — per query row, the distance to its nearest reference row
  of the same element in a scaled space, optionally leaving out the query's own row.

Search follows the in-memory rule (:mod:`pesdata.select._nn`): an element with at most
``exact_max`` rows is searched by brute force per chunk (faiss ``IndexFlatL2``, k = 1, its
fast path) followed by the float64 distance to the row faiss ranked first. The distance
returned is a true float64 distance to a real reference row; it can exceed the exact minimum
only when two rows are within float32 rounding of each other in squared distance (≈ 1e-7 of the
data's squared scale): by at most ~5e-4 of the scale for near-identical rows and ~1e-6 at
typical neighbour distances (tested against float64 brute force).

Above ``exact_max`` rows, **streamed IVF**: :func:`fit_streamed` trains one set of k-means cells
(``4 sqrt(rows per chunk)`` of them) on a seeded sample of the element's rows; each chunk task
files its own rows into those cells (``IndexIVFFlat``, nothing trained per chunk) and searches
the :data:`~pesdata.select._nn.IVF_NPROBE` nearest cells, then re-ranks the
``1 +`` :data:`~pesdata.select._nn.REFINE_EXTRA` proposals in float64. Memory stays flat (the
cells, cells × features float32 — 139 kB for the 1,448 cells of 24 features at 10⁶ structures —
travel with each task) and the cost per query falls from the element's rows to the cells plus
~``IVF_NPROBE / cells`` of the rows; filing a chunk's rows into the cells costs about as much
as brute force for as many queries as there are cells, so IVF pays from a few thousand query
rows per element up (a selection's candidates, a calibration subsample) and costs up to a
second per chunk more for a handful. Like the in-memory IVF it is approximate: a distance is
the true float64 distance to a real reference row, so never below the exact one, and equals it
for the recalled queries (recall tested against float64 brute force and measured at 10⁶
structures by ``benchmarks/bench_select_recall.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ElementStats", "StreamedReference", "fit_streamed"]

#: Query rows per faiss call inside one chunk.
_QUERY_BATCH = 65_536
#: Query values (rows × features) sent with each search task; more queries take more passes.
QUERY_VALUES = 2**22
#: A chunk's rows of an element are searched through the shared IVF cells only when there are
#: more than this many per cell (fewer: brute force is as fast, and exact).
IVF_ROWS_PER_CELL = 4
#: Calibration rows per element gathered and searched per pass (``n_calibration=None`` on a
#: large streamed element takes several passes instead of holding all its rows).
CALIBRATION_BLOCK = 65_536
#: Fewest training rows per IVF cell (faiss's k-means wants 39).
_MIN_TRAIN_PER_CELL = 39


@dataclass
class ElementStats:
    """Streaming statistics of one element's finite reference rows."""

    n: int
    mean: np.ndarray
    m2: np.ndarray  # per feature: sum of squared deviations from the mean
    n_nonfinite: int = 0

    def merge(self, other: ElementStats) -> ElementStats:
        """Chan et al.'s pairwise combination of two sets of rows."""
        n = self.n + other.n
        if other.n == 0:
            return ElementStats(self.n, self.mean, self.m2, self.n_nonfinite + other.n_nonfinite)
        if self.n == 0:
            return ElementStats(other.n, other.mean, other.m2,
                                self.n_nonfinite + other.n_nonfinite)
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.n * other.n / n)
        return ElementStats(n, mean, m2, self.n_nonfinite + other.n_nonfinite)

    @property
    def var(self) -> np.ndarray:
        """Per-feature variance (ddof 0)."""
        return self.m2 / max(self.n, 1)


def _element_rows(plan, feats: np.ndarray):
    """{z: finite rows of element z (float64, chunk order)} and {z: non-finite count}."""
    out, dropped = {}, {}
    numbers = np.asarray(plan.numbers)
    for z in np.unique(numbers).tolist():
        x = feats[numbers == z]
        finite = np.isfinite(x).all(axis=1)
        out[int(z)] = x[finite]
        dropped[int(z)] = int((~finite).sum())
    return out, dropped


def _stats_task(plan) -> dict[int, ElementStats]:
    """One chunk's per-element statistics."""
    rows, dropped = _element_rows(plan, plan.read())
    out = {}
    for z, x in rows.items():
        mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
        m2 = ((x - mean) ** 2).sum(axis=0) if len(x) else np.zeros(x.shape[1])
        out[z] = ElementStats(len(x), mean, m2, dropped[z])
    return out


def _gather_task(task) -> dict[int, np.ndarray]:
    """The rows at ``picks[z]`` (positions among the chunk's finite rows of element z); with
    ``scaled[z] = (centre, scale)``, as float32 ``(x - centre) / scale``."""
    plan, picks, scaled = task
    rows, _ = _element_rows(plan, plan.read())
    out = {}
    for z, p in picks.items():
        x = rows[z][p]
        if z in scaled:
            x = ((x - scaled[z][0]) / scaled[z][1]).astype(np.float32)
        out[z] = x
    return out


def _refined(index, xs: np.ndarray, q: np.ndarray, k: int, own: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the float64 distance to, and row of, the nearest of the ``k`` rows faiss
    proposes (float32), leaving out row ``own[j]`` for query j (-1, inf where none is left)."""
    kk = max(1, min(k, index.ntotal))
    dist = np.full(len(q), np.inf)
    row = np.full(len(q), -1, dtype=np.int64)
    step = max(1, _QUERY_BATCH // kk)  # the (step, kk, d) float64 proposals stay bounded
    for a in range(0, len(q), step):
        qb = q[a:a + step]
        _, i = index.search(np.ascontiguousarray(qb, dtype=np.float32), kk)
        diff = xs[np.maximum(i, 0)]
        diff -= qb[:, None, :]
        d = np.sqrt(np.einsum("mkd,mkd->mk", diff, diff))
        del diff
        # faiss answers -1 when it cannot rank (a query beyond float32's range, an empty cell)
        bad = i < 0
        if own is not None:
            bad |= i == own[a:a + step, None]
        d[bad] = np.inf
        best = np.argmin(d, axis=1)
        at = np.arange(len(qb))
        dist[a:a + len(qb)] = d[at, best]
        row[a:a + len(qb)] = np.where(np.isfinite(d[at, best]), i[at, best], -1)
    return dist, row


def _nearest_task(task) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per element: (distance, global position) of each query's nearest row in this chunk."""
    from . import _nn

    plan, offsets, queries = task
    rows, _ = _element_rows(plan, plan.read())
    out = {}
    for z, (mu, scale, q, own, cells) in queries.items():
        x = rows.get(z)
        m = len(q)
        if x is None or not len(x) or not m:
            out[z] = (np.full(m, np.inf), np.full(m, -1, dtype=np.int64))
            continue
        xs = (x - mu) / scale
        ivf = cells is not None and len(x) > IVF_ROWS_PER_CELL * len(cells)
        index = _nn.ivf_from_centroids(cells, xs) if ivf else _nn.exact_index(xs)
        extra = _nn.REFINE_EXTRA if ivf else 0
        off = offsets[z]
        dist, row = _refined(index, xs, q, 1 + extra)
        if own is not None:  # leave-one-out: queries whose own row lies in this chunk
            mine = np.flatnonzero((own >= off) & (own < off + len(x)))
            if len(mine):
                dist[mine], row[mine] = _refined(index, xs, q[mine], 2 + extra, own[mine] - off)
        out[z] = (dist, np.where(row >= 0, row + off, -1))
    return out


class StreamedReference:
    """The cached descriptors of a store version, as a novelty reference read in chunks.

    Parameters
    ----------
    stream : DescriptorStream
        The version's descriptor rows (:class:`pesdata.descriptors._stream.DescriptorStream`).
    scheduler, workers :
        Run the per-chunk work as Dask tasks (:func:`pesdata.parallel.stream_map`); ``None``:
        in this process.
    """

    def __init__(self, stream, scheduler: str | None = None, workers: int | None = None) -> None:
        self.stream = stream
        self.scheduler = scheduler
        self.workers = workers
        self.feature_names = stream.feature_names
        self.n_features = stream.n_features
        self._stats: dict[int, ElementStats] | None = None
        self._counts: list[dict[int, int]] = []  # finite rows per element, per chunk

    def _map(self, func, tasks):
        from ..parallel import stream_map

        return stream_map(func, tasks, scheduler=self.scheduler, workers=self.workers)

    # -- pass 1 ----------------------------------------------------------------------------
    def stats(self) -> dict[int, ElementStats]:
        """Per element (atomic number): statistics of its finite rows (computed once)."""
        if self._stats is None:
            total: dict[int, ElementStats] = {}
            counts = []
            for part in self._map(_stats_task, self.stream.plans()):
                counts.append({z: s.n for z, s in part.items()})
                for z, s in part.items():
                    total[z] = total[z].merge(s) if z in total else s
            self._stats, self._counts = dict(sorted(total.items())), counts
        return self._stats

    def _offsets(self) -> list[dict[int, int]]:
        """Per chunk: the position of its first finite row of each element."""
        self.stats()
        run: dict[int, int] = {}
        out = []
        for c in self._counts:
            out.append({z: run.get(z, 0) for z in self._stats})
            for z, n in c.items():
                run[z] = run.get(z, 0) + n
        return out

    # -- pass 2 ----------------------------------------------------------------------------
    def gather(self, picks: dict[int, np.ndarray], scaled: dict | None = None
               ) -> dict[int, np.ndarray]:
        """The finite rows of element z at sorted positions ``picks[z]`` (stream order); for
        the elements in ``scaled`` (``{z: (centre, scale)}``), scaled and float32."""
        scaled = scaled or {}
        if not picks:
            return {}
        offsets = self._offsets()
        out = {z: np.empty((len(p), self.n_features), np.float32 if z in scaled else np.float64)
               for z, p in picks.items()}  # filled in place: no second copy of the rows
        filled = dict.fromkeys(picks, 0)

        def tasks():
            for plan, off, counts in zip(self.stream.plans(), offsets, self._counts,
                                         strict=True):
                mine = {}
                for z, p in picks.items():
                    lo, hi = np.searchsorted(p, [off.get(z, 0), off.get(z, 0) + counts.get(z, 0)])
                    if hi > lo:
                        mine[z] = np.asarray(p[lo:hi]) - off[z]
                if mine:  # a chunk holding no pick is not read
                    yield plan, mine, {z: scaled[z] for z in mine if z in scaled}

        for part in self._map(_gather_task, tasks()):
            for z, rows in part.items():
                out[z][filled[z]:filled[z] + len(rows)] = rows
                filled[z] += len(rows)
        return out

    # -- pass 3 ----------------------------------------------------------------------------
    def nearest(self, queries: dict[int, tuple]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Distance from each query row to its nearest reference row of the same element.

        Parameters
        ----------
        queries : dict
            ``{z: (centre, scale, rows, own, cells)}``: reference rows of element z are mapped
            to ``(x - centre) / scale`` and compared with ``rows`` (already in that space,
            float64); ``own`` (positions among z's finite rows, or None) leaves each query's
            own row out (leave-one-out); ``cells`` (IVF centroids in that space, or None) makes
            each chunk search its rows of z through an IVF index over those cells instead of
            brute force. Sent in blocks of :data:`QUERY_VALUES` values, one
            pass over the reference per block, so a task's payload stays bounded.

        Returns
        -------
        dict
            ``{z: (distance, position)}``: float64 distances (inf where z has no reference row)
            and the neighbour's position among z's finite rows (-1 where none).
        """
        best = {z: (np.full(len(q[2]), np.inf), np.full(len(q[2]), -1, dtype=np.int64))
                for z, q in queries.items()}
        block = max(1, QUERY_VALUES // max(self.n_features, 1))
        longest = max((len(q[2]) for q in queries.values()), default=0)
        offsets = self._offsets()
        for a in range(0, max(longest, 1), block):  # bounded payload per task: one pass each
            payload = {z: (np.asarray(mu, float), scale, np.asarray(q[a:a + block], np.float64),
                           None if own is None else np.asarray(own[a:a + block], np.int64),
                           cells)
                       for z, (mu, scale, q, own, cells) in queries.items()
                       if len(q[a:a + block])}
            if not payload:
                break
            tasks = ((plan, off, payload) for plan, off in zip(self.stream.plans(), offsets,
                                                               strict=True))
            for part in self._map(_nearest_task, tasks):
                for z, (d, p) in part.items():
                    bd, bp = best[z][0][a:a + block], best[z][1][a:a + block]
                    better = d < bd  # ties keep the earlier chunk: scheduler-independent
                    bd[better], bp[better] = d[better], p[better]
        return best


def fit_streamed(crit, ref: StreamedReference, p: dict):
    """:meth:`NoveltyCriterion.fit <pesdata.select.novelty.NoveltyCriterion.fit>` on a
    reference read in chunks: the same statistics, calibration subsample (the same random
    draws, element by element) and leave-one-out distances.

    Elements, in order of atomic number, whose rows and index fit the ``index_mb`` budget
    (``n × (8 d + 8)`` bytes: float32 rows, the index's copy and its ids) are gathered and
    indexed in memory as :meth:`fit` does; the others keep no rows and are searched chunk by
    chunk (:meth:`StreamedReference.nearest`) in :meth:`fit` and in every ``score`` — through
    IVF cells trained here (``crit.quantisers_``) when they have more than ``exact_max`` rows.
    """
    from ase.data import chemical_symbols

    from ..errors import ParameterError
    from . import _nn
    from .novelty import _GRID

    stats = ref.stats()
    if not stats:
        raise ParameterError("the reference has no atomic environments")
    d = ref.n_features
    crit.n_features_ = d
    crit.centre_, crit.scale_, crit.indexes_, crit.rows_ = {}, {}, {}, {}
    crit.reference_ = ref
    n_ref, n_cal, dropped, calibration = {}, {}, {}, {}
    budget = p["index_mb"] * 2**20
    in_memory = {}
    for z, st in stats.items():
        sym = chemical_symbols[z]
        n_ref[sym], dropped[sym] = st.n, st.n_nonfinite
        if not st.n:
            continue  # every row non-finite: the element counts as absent
        crit.centre_[sym], crit.scale_[sym] = crit._scale(st.mean, st.var)
        if st.n * (8 * d + 8) <= budget:
            budget -= st.n * (8 * d + 8)
            in_memory[z] = (crit.centre_[sym], crit.scale_[sym])
    # streamed elements above exact_max rows: IVF cells trained on a seeded sample (its own
    # draws: the calibration's are fit's), gathered in the same pass as the in-memory rows
    n_cells, train = {}, {}
    for z, st in stats.items():
        if z in in_memory or st.n <= p["exact_max"]:
            continue
        per_chunk = max(c.get(z, 0) for c in ref._counts)
        n_cells[z] = max(1, min(int(4 * np.sqrt(per_chunk)), st.n // _MIN_TRAIN_PER_CELL))
        n_train = min(st.n, n_cells[z] * _nn._TRAIN_PER_CELL)
        draw = np.random.default_rng([p["seed"], z])
        train[z] = (np.arange(st.n) if n_train == st.n
                    else np.sort(draw.choice(st.n, n_train, replace=False)))
    scaled = {**in_memory, **{z: (crit.centre_[chemical_symbols[z]],
                                  crit.scale_[chemical_symbols[z]]) for z in train}}
    rows = ref.gather({**{z: np.arange(stats[z].n) for z in in_memory}, **train}, scaled=scaled)
    cells = {z: _nn.train_centroids(rows.pop(z), n_cells[z], p["seed"]) for z in train}
    crit.quantisers_ = {chemical_symbols[z]: c for z, c in cells.items()}
    rng = np.random.default_rng(p["seed"])
    picks = {}
    for z, st in stats.items():  # in fit's order: the calibration draws are fit's
        sym = chemical_symbols[z]
        if z in in_memory:
            xs = rows.pop(z)
            index = _nn.build_index(xs, p["exact_max"], p["seed"])
            crit.indexes_[sym], crit.rows_[sym] = index, xs
            calibration[sym], n_cal[sym] = crit._calibrate(index, xs, p, rng)
        elif st.n:
            calibration[sym], n_cal[sym] = None, 0
            if st.n >= 2:
                picks[z] = np.arange(st.n)
                if p["n_calibration"] is not None and st.n > p["n_calibration"]:
                    picks[z] = np.sort(rng.choice(st.n, p["n_calibration"], replace=False))
    sym_of = {z: chemical_symbols[z] for z in picks}
    found: dict[int, list] = {z: [] for z in picks}
    longest = max((len(v) for v in picks.values()), default=0)
    for a in range(0, longest, CALIBRATION_BLOCK):  # one block unless n_calibration is None
        block = {z: v[a:a + CALIBRATION_BLOCK] for z, v in picks.items()
                 if len(v[a:a + CALIBRATION_BLOCK])}
        cal = ref.gather(block)
        queries = {z: (crit.centre_[sym_of[z]], crit.scale_[sym_of[z]],
                       (cal.pop(z) - crit.centre_[sym_of[z]]) / crit.scale_[sym_of[z]], block[z],
                       cells.get(z))
                   for z in block}
        for z, (dist, _) in ref.nearest(queries).items():
            found[z].append(dist)
    for z, parts in found.items():
        dist = np.concatenate(parts)
        loo = dist[np.isfinite(dist)]
        if len(loo):
            sym = sym_of[z]
            calibration[sym] = [float(v) for v in np.quantile(loo, _GRID)]
            n_cal[sym] = len(picks[z])
    search = {sym: (type(crit.indexes_[sym]).__name__ if sym in crit.indexes_
                    else "streamed IVF" if sym in crit.quantisers_ else "streamed")
              for sym in crit.centre_}
    return crit._set_thresholds(p, calibration, n_ref, n_cal, dropped, search)
