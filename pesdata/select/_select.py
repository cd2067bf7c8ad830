"""``select``: score candidates against a store version, decide, keep the ledger, write a queue.

The steps, each a module of its own: read the candidates (:mod:`.candidates`), find the frames
that cannot be used (:mod:`.checks`) and those already stored, compute descriptors (the
reference's from the store's Zarr cache, never recomputed when cached), score novelty
(:mod:`.novelty`) and, with a model or committee, the error (:mod:`.error`,
:mod:`.committee`), fingerprint every frame (:mod:`.fingerprint`), decide (:mod:`.policy`),
keep the ledger in the store (:mod:`.ledger`) and write the labelling queue
(:mod:`pesdata.label.queue`). :func:`rescore` decides a kept ledger again with new thresholds
or a new budget, from its stored numbers alone.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from ase.data import chemical_symbols

from .._params import check_int
from ..errors import ParameterError
from ..parallel import pooled
from . import ledger as _ledger
from ._base import Environments
from ._output import check_queue_path, keep, new_name, write_selected
from .candidates import Candidates, read_candidates
from .policy import counts, decide
from .registry import get_criterion, get_diversity

__all__ = ["KEEP", "Selection", "check_policy", "select"]

Progress = Callable[[str, int, int], None]
KEEP = object()  #: ``rescore``: leave this option as the ledger had it


@dataclass
class Selection:
    """The outcome of :func:`select` / :func:`rescore`.

    Attributes
    ----------
    name : str
        Ledger name (``store.ledger(name)`` reads it back).
    ledger : pandas.DataFrame
        One row per candidate (columns: :data:`pesdata.select.ledger.COLUMNS`).
    summary : dict
        The ledger's summary (reference version, criteria thresholds, policy, counts).
    queue : pathlib.Path or None
        The queue directory written, if any.
    """

    name: str
    ledger: pd.DataFrame
    summary: dict
    queue: Path | None = None

    @property
    def counts(self) -> dict[str, int]:
        """Frames per decision."""
        return dict(self.summary["counts"])

    @property
    def selected(self) -> pd.DataFrame:
        """The selected rows, in pick order."""
        sel = self.ledger[self.ledger["decision"] == "selected"]
        return sel.sort_values("rank", kind="stable")

    def to_dict(self) -> dict:
        """What ``pesdata select --json`` prints (strict JSON: no NaN)."""
        def num(x):
            return None if x is None or pd.isna(x) or not np.isfinite(x) else float(x)

        def error(row):
            keys = ("energy_error", "force_error", "energy_std", "force_std")
            vals = {k: num(row.get(k)) for k in keys if k in row and num(row.get(k)) is not None}
            return vals or None

        return {
            "name": self.name,
            "reference_version": self.summary["version"],
            "n_candidates": self.summary["n_candidates"],
            "counts": self.counts,
            "selected": [
                {"id": r["id"], "source": r["source"], "novelty": num(r.get("novelty")),
                 "error": error(r), "reason": r["reason"]}
                for r in self.selected.to_dict("records")
            ],
            "queue": None if self.queue is None else str(self.queue),
        }


def _has_labels(atoms) -> bool:
    results = getattr(atoms.calc, "results", None) or {}
    return "energy" in results or "forces" in results


def check_policy(budget, diversity, group_cap, seed, near_duplicate) -> dict:
    if budget is not None:
        budget = check_int("budget", budget, minimum=0)
    get_diversity(diversity)  # ParameterError for an unknown name
    if group_cap is not None:
        group_cap = check_int("group_cap", group_cap)
    seed = check_int("seed", seed, minimum=0)
    try:
        near_duplicate = float(near_duplicate)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"near_duplicate must be a number ≥ 0, got {near_duplicate!r}") \
            from exc
    if not near_duplicate >= 0 or not np.isfinite(near_duplicate):
        raise ParameterError(f"near_duplicate must be a finite number ≥ 0, got {near_duplicate!r}")
    return {"budget": budget, "diversity": diversity, "group_cap": group_cap, "seed": seed,
            "near_duplicate": near_duplicate}


def _descriptor(descriptor, species: list[int]):
    """The descriptor to use: given (object, config dict or JSON file) or the novelty default."""
    from ..descriptors import Descriptor, from_config

    if descriptor is None:
        from .novelty import default_descriptor

        return default_descriptor(species)
    if isinstance(descriptor, Descriptor):
        return descriptor
    return from_config(descriptor)


def _describe_task(task: tuple) -> np.ndarray:
    """A Dask task: the descriptor rows of one batch of candidate images."""
    import torch

    descriptor, images = task
    with torch.no_grad():
        return descriptor.compute(images).cpu().numpy()


def _score_task(task: tuple) -> pd.DataFrame:
    """A Dask task: a fitted criterion's scores of one chunk of candidates."""
    crit, candidates = task
    return crit.score(candidates)


#: Candidate frames per scoring task (error, committee) when a scheduler is given; novelty
#: runs its tasks over chunks of the reference instead (:mod:`._reference`).
SCORE_CHUNK = 512


def _scores(crit, candidates, n: int, parallel: tuple) -> pd.DataFrame:
    """``crit.score(candidates)`` (a list of images); with a scheduler, as Dask tasks over
    chunks of :data:`SCORE_CHUNK` frames (each frame's score depends on that frame alone)."""
    from ..parallel import stream_map

    if parallel[0] is None or n <= SCORE_CHUNK:
        return crit.score(candidates)
    pieces = (candidates[a:a + SCORE_CHUNK] for a in range(0, n, SCORE_CHUNK))
    parts = list(stream_map(_score_task, ((crit, p) for p in pieces), scheduler=parallel[0],
                            workers=parallel[1]))
    return pd.concat(parts, ignore_index=True)


def _environments(descriptor, images: list, progress: Progress | None,
                  batch: int = 64, parallel: tuple = (None, None)) -> Environments:
    """Per-atom descriptor rows of ``images``, computed in batches (Dask tasks with a
    scheduler)."""
    from ..parallel import stream_map

    feats = []
    tasks = ((descriptor, images[start:start + batch]) for start in range(0, len(images), batch))
    for rows in stream_map(_describe_task, tasks, scheduler=parallel[0], workers=parallel[1]):
        feats.append(rows)
        if progress is not None:
            progress("describe candidates", min(len(feats) * batch, len(images)), len(images))
    n = np.array([len(a) for a in images], dtype=int)
    f = (np.concatenate(feats) if feats
         else np.zeros((0, descriptor.n_features)))
    numbers = (np.concatenate([a.numbers for a in images]) if images
               else np.zeros(0, int))
    return Environments(f, numbers, np.repeat(np.arange(len(images)), n), len(images),
                        tuple(descriptor.feature_names))


def _candidate_environments(desc, cands: Candidates, valid: np.ndarray,
                            progress: Progress | None,
                            parallel: tuple = (None, None)) -> Environments:
    """Descriptors of the valid candidates: from the Zarr cache of candidate stores (computed
    there once, kept for the next selection), computed in memory for candidate files."""
    from ..descriptors import describe, load_descriptors

    if not cands.stores or sum(len(s[0].read(s[1])) for s in cands.stores) != len(cands):
        return _environments(desc, [cands.images[k] for k in valid], progress,
                             parallel=parallel)
    parts = []
    for store, version, first in cands.stores:
        def store_progress(done, total):
            if progress is not None:
                progress("describe candidates", done, total)

        describe(store, desc, version, progress=store_progress, scheduler=parallel[0],
                 workers=parallel[1])
        env = Environments.from_cache(load_descriptors(store, desc, version))
        parts.append(Environments(env.features, env.numbers, env.structure + first,
                                  first + env.n_frames))
    env = Environments(np.concatenate([p.features for p in parts]),
                       np.concatenate([p.numbers for p in parts]),
                       np.concatenate([p.structure for p in parts]), len(cands),
                       tuple(desc.feature_names))
    return _subset(env, valid)


def _subset(env: Environments, frames: np.ndarray) -> Environments:
    """The rows of ``frames`` (sorted frame indices), renumbered 0..len(frames)-1."""
    keep = np.isin(env.structure, frames)
    new = np.searchsorted(frames, env.structure[keep])
    return Environments(env.features[keep], env.numbers[keep], new, len(frames),
                        env.feature_names)


def _stored_ids(store, versions, hashes: set) -> dict[str, str]:
    """{geometry_hash: id} of the stored structures (in ``versions``) with one of ``hashes``,
    scanned in batches (a store's hashes are never all in memory)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = pa.array(sorted(h for h in hashes if isinstance(h, str)), pa.string())
    out: dict[str, str] = {}
    for v in sorted(versions):
        for batch in store.read(v).batches(["geometry_hash", "id"]):
            hit = pc.is_in(batch.column(0), value_set=wanted)
            if pc.any(hit).as_py():
                kept = batch.filter(hit)
                out.update(zip(kept.column(0).to_pylist(), kept.column(1).to_pylist(),
                               strict=True))
    return out


def _place(df: pd.DataFrame, rows: np.ndarray, scores: pd.DataFrame) -> None:
    """Write ``scores`` (one row per entry of ``rows``) into ``df`` at ``rows``."""
    for col in scores.columns:
        if col not in df:
            df[col] = None
        if df[col].dtype != object:
            df[col] = df[col].astype(object)
        df.loc[rows, col] = pd.Series(list(scores[col]), dtype=object).to_numpy()


@pooled  # one process pool for select's passes (describe, statistics, gathers, searches)
def select(
    store,
    candidates: Candidates | str | os.PathLike | Sequence[str | os.PathLike],
    *,
    reference: int | str | None = None,
    descriptor=None,
    model: str | os.PathLike | None = None,
    committee: str | os.PathLike | None = None,
    novelty: bool = True,
    novelty_threshold: float | None = None,
    novelty_quantile: float = 0.99,
    novelty_top_k: int | None = None,
    novelty_index_mb: float | None = None,
    trust=None,
    budget: int | None = None,
    diversity: str = "fps",
    group_cap: int | None = None,
    seed: int = 0,
    near_duplicate: float = 1e-3,
    method: str | None = None,
    name: str | None = None,
    out: str | os.PathLike | None = None,
    progress: Progress | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
) -> Selection:
    """Pick the candidate frames worth labelling; keep the ledger; optionally write a queue.

    Parameters
    ----------
    store : pesdata.Store
        The store holding the reference data (a local store).
    candidates : Candidates, path or sequence of paths
        Structure files or ``STORE@VERSION`` sources (see :func:`read_candidates`).
    reference : int or str, optional
        Reference version or tag (default: the latest).
    descriptor : Descriptor, dict or path, optional
        Descriptor for novelty and fingerprints (default: the novelty default for the elements
        of reference and candidates).
    model, committee : path, optional
        A model directory (error against the candidates' labels) or a committee directory
        (disagreement); at most one.
    novelty : bool
        Score novelty (default true).
    novelty_threshold : float, optional
        Absolute threshold (descriptor-space distance) for every element, instead of the
        calibrated one.
    novelty_quantile : float
        Quantile of the reference's leave-one-out distances that calibrates each element's
        threshold.
    novelty_top_k : int, optional
        Frame novelty = mean of the ``k`` largest per-atom distance/threshold ratios instead
        of the largest one.
    novelty_index_mb : float, optional
        Megabytes of the reference's descriptor rows that novelty may hold in memory and
        index (default :data:`~pesdata.select.novelty.INDEX_MB`, 256); elements beyond it are
        searched chunk by chunk from the store's cache (exact; memory flat in the reference's
        size). The reference itself is never loaded whole.
    trust : TrustWindows, dict or path, optional
        Trust windows for the error / committee criterion (default windows when omitted).
    budget : int, optional
        Most frames to select (default: every qualifying frame).
    diversity : str
        ``fps`` (default), ``kmeans`` or ``direct``.
    group_cap : int, optional
        At most this many selected frames per group (``group`` info, else source file).
    seed : int
        Seed of every random choice.
    near_duplicate : float
        Fingerprint distance under which a qualifying frame is a near-duplicate of a
        higher-priority one.
    method : str, optional
        Level of theory the candidates will be labelled with (enters their ids).
    name : str, optional
        Ledger name (default ``sel-<timestamp>-<hex>``).
    out : path, optional
        Queue directory to write the selected frames to.
    progress : callable, optional
        ``progress(stage, done, total)``.
    scheduler : str, optional
        Run the per-candidate work as Dask tasks (``synchronous``, ``threads``,
        ``processes`` or ``tcp://HOST:PORT``, see :mod:`pesdata.parallel`): descriptors of
        the reference and the candidates, novelty and error / committee scores over chunks of
        candidates. The decision (thresholds, diversity, ledger) stays here; the ledger equals
        the serial one. ``None`` (default): serial.
    workers : int, optional
        Local Dask workers (default one per core).

    Returns
    -------
    Selection
    """
    from ..parallel import check_scheduler, check_workers
    from .checks import invalid_reasons, label_reasons
    from .fingerprint import element_scaling, structure_fingerprints

    policy = check_policy(budget, diversity, group_cap, seed, near_duplicate)
    parallel = (check_scheduler(scheduler), check_workers(workers))
    if model is not None and committee is not None:
        raise ParameterError("give --model or --committee, not both")
    if trust is not None and model is None and committee is None:
        raise ParameterError("trust windows (--trust, --e-lo/--e-hi/--f-lo/--f-hi) judge a "
                             "model's error or a committee's spread: give --model or "
                             "--committee")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ParameterError(f"name must be a non-empty string, got {name!r}")
    name = name or new_name()
    _ledger.check_name(store, name)
    orphan = None  # the queue of this selection left by a run killed before its ledger
    if out is not None and check_queue_path(out, store, name):
        orphan = Path(out)
    version = store.resolve(reference)
    snap = store.read(version)
    if len(snap) == 0 and novelty:
        raise ParameterError(f"reference version {version} has no structures: novelty needs a "
                             "reference; for a first pick from nothing, select on diversity "
                             "alone (--no-novelty)")
    cands = candidates if isinstance(candidates, Candidates) else read_candidates(candidates,
                                                                                  method)
    images = cands.images
    n = len(images)
    df = cands.meta.copy()
    df["invalid"] = pd.Series([a or b for a, b in zip(invalid_reasons(images),
                                                       label_reasons(images), strict=True)],
                              dtype=object)
    stored_by_gh = _stored_ids(store, {version, store.version}, set(df["geometry_hash"]))
    first_by_gh: dict[str, str] = {}
    dup = []
    for gh, id_ in zip(df["geometry_hash"], df["id"], strict=True):
        dup.append(stored_by_gh.get(gh) or first_by_gh.get(gh))
        first_by_gh.setdefault(gh, id_)
    df["duplicate_of"] = pd.Series(dup, dtype=object)

    ref_species = snap.elements()
    cand_species = sorted({int(z) for a in images for z in np.unique(a.numbers)})
    desc = _descriptor(descriptor, sorted(set(ref_species) | set(cand_species)))
    lacking = set(cand_species) - set(desc.species)
    if lacking:
        for k, a in enumerate(images):
            bad = sorted(set(a.numbers.tolist()) & lacking)
            if bad and pd.isna(df.at[k, "invalid"]):
                df.at[k, "invalid"] = ("element(s) " + ", ".join(chemical_symbols[z] for z in bad)
                                       + " not in the descriptor's species")
    valid = np.flatnonzero(df["invalid"].isna().to_numpy())

    from ..descriptors._cache import BATCH_SIZE, _describe
    from ..descriptors._stream import DescriptorStream
    from ._reference import StreamedReference

    def ref_progress(done, total):
        if progress is not None:
            progress("describe reference", done, total)

    ref = None
    if len(snap):  # the reference is read in chunks, never whole (memory flat in its size)
        _, located = _describe(store, desc, version, BATCH_SIZE, ref_progress, *parallel)
        ref = StreamedReference(DescriptorStream(store, desc, version, locations=located),
                                *parallel)
    cand_env = _candidate_environments(desc, cands, valid, progress, parallel)

    criteria: dict[str, dict] = {}
    model_hash = None
    if novelty:
        top = {} if novelty_top_k is None else {"aggregate": "top_k", "top_k": novelty_top_k}
        if novelty_index_mb is not None:
            top["index_mb"] = novelty_index_mb
        crit = get_criterion("novelty")(threshold=novelty_threshold, quantile=novelty_quantile,
                                        seed=seed, **top).fit(ref)
        if progress is not None:
            progress("novelty", 0, len(valid))
        # streamed elements: Dask tasks over the reference's chunks; elements held in memory
        # are searched here (shipping their index with every task cost a copy per task)
        _place(df, valid, crit.score(cand_env))
        if progress is not None:
            progress("novelty", len(valid), len(valid))
        criteria["novelty"] = crit.thresholds_
    if model is not None or committee is not None:
        cname = "error" if model is not None else "committee"
        cls = get_criterion(cname)
        crit = (cls(model, trust=trust) if model is not None
                else cls(committee, trust=trust)).fit(None)
        if progress is not None:
            progress(cname, 0, len(valid))
        if cname == "error" and not any(_has_labels(images[k]) for k in valid):
            raise ParameterError("--model compares predictions with the candidates' labels, "
                                 "but no candidate carries an energy or forces; use "
                                 "--committee for unlabelled candidates")
        scores = _scores(crit, [images[k] for k in valid], len(valid), parallel)
        if progress is not None:
            progress(cname, len(valid), len(valid))
        _place(df, valid, scores)
        model_hash = crit.model_hash_
        criteria[cname] = crit.thresholds_
    center, scale = element_scaling(ref if ref is not None else cand_env)
    if ref is not None:  # the last read of the reference: its join's temporary files go
        ref.stream.close()
    fp = structure_fingerprints(cand_env, desc.species, center=center, scale=scale)
    df["fingerprint"] = pd.Series([[] for _ in range(n)], dtype=object)
    df.loc[valid, "fingerprint"] = pd.Series([row.astype(np.float32) for row in fp],
                                             dtype=object).to_numpy()
    if "model_hash" not in df:
        df["model_hash"] = None
    bad_fp = [k for k, row in zip(valid, fp, strict=True) if not np.isfinite(row).all()]
    for k in bad_fp:  # a NaN/inf descriptor row, also when novelty is off
        df.at[k, "invalid"] = "NaN/inf descriptor (fingerprint not finite)"
    df["reference_version"] = version
    df["seed"] = policy["seed"]
    decided = decide(df, criteria, policy)
    summary = {
        "name": name,
        "version": int(version),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "rescored_from": None,
        "candidates": [str(Path(s).resolve()) if not str(s).startswith(("s3:", "gs:"))
                       else str(s) for s in cands.specs],
        "n_candidates": n,
        "descriptor": desc.config(),
        "descriptor_hash": desc.config_hash,
        "model": None if (model or committee) is None else str(model or committee),
        "model_hash": model_hash,
        "criteria": criteria,
        "policy": policy,
        "counts": counts(decided),
        "fingerprint": {"center": {chemical_symbols[z]: c.tolist() for z, c in center.items()},
                        "scale": {chemical_symbols[z]: np.asarray(s).tolist()
                                  for z, s in scale.items()}},
    }
    queue = keep(store, name, decided, summary, None if out is None else
                 lambda: write_selected(store, out, cands, decided, summary), replace=orphan)
    return Selection(name, decided, summary, queue)
