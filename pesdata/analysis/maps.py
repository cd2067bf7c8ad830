"""A 2-D map of descriptor space: PCA of per-structure fingerprints.

Each stored structure becomes one fingerprint (:func:`pesdata.select.fingerprint.
structure_fingerprints`: per element, the atom fraction and the mean and spread of its
standardised per-atom descriptor rows), computed from the descriptor cache
(:func:`pesdata.descriptors.describe` computes only what is not cached yet). The principal
axes are fitted on the stored structures (numpy SVD of the centred fingerprints); the
candidates of a selection ledger are projected onto the same axes from the fingerprints the
ledger kept, which were computed with the ledger's descriptor and its reference's scaling —
so the map uses that descriptor and scaling too, and both live in the same space.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["MAP_COLUMNS", "descriptor_map"]

#: Columns of :func:`descriptor_map`.
MAP_COLUMNS = ("kind", "id", "version_added", "decision", "pc1", "pc2")


def _ledger_space(store, ledger: str):
    """Descriptor, centre and scale a ledger's fingerprints were made with, and its rows."""
    from ase.data import atomic_numbers

    from ..descriptors import from_config
    from ..select.ledger import load_ledger

    df, summary = load_ledger(store, ledger)
    if not summary.get("descriptor") or not summary.get("fingerprint"):
        return None
    desc = from_config(summary["descriptor"])
    fp = summary["fingerprint"]
    center = {atomic_numbers[s]: np.asarray(v, float) for s, v in fp["center"].items()}
    scale = {atomic_numbers[s]: np.asarray(v, float) for s, v in fp["scale"].items()}
    return desc, center, scale, df


def _pca(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, the two leading principal axes (rows) and their explained-variance ratios."""
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    var = s**2
    total = var.sum()
    k = min(2, len(s))
    axes = np.zeros((2, x.shape[1]))
    axes[:k] = vt[:k]
    ratio = np.zeros(2)
    if total > 0:
        ratio[:k] = var[:k] / total
    # a deterministic sign: the largest-magnitude loading of each axis is positive
    for i in range(k):
        j = int(np.argmax(np.abs(axes[i])))
        if axes[i, j] < 0:
            axes[i] = -axes[i]
    return mean, axes, ratio


def descriptor_map(store, version: int | str | None = None,
                   ledger: str | None = None) -> pd.DataFrame:
    """Stored structures (and a ledger's candidates) on the first two principal axes.

    Parameters
    ----------
    store : pesdata.Store
        A local store (the descriptor cache lives in it; missing descriptors are computed and
        cached).
    version : int or str, optional
        Version whose structures fit the axes (default: the latest).
    ledger : str, optional
        A selection ledger whose candidates are projected (coloured by decision in the report).
        Its descriptor and fingerprint scaling are used for everything; without it, the
        novelty default descriptor (:func:`pesdata.select.novelty.default_descriptor`) for the
        version's elements and the version's own per-element scaling.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`MAP_COLUMNS`: ``kind`` (``stored`` or ``candidate``), ``id``,
        ``version_added`` (stored; NA for candidates), ``decision`` (candidates; None for
        stored), ``pc1``, ``pc2`` (dimensionless: fingerprints are standardised descriptor
        statistics). ``attrs``: ``explained`` (variance ratio of the two axes),
        ``descriptor`` (config hash), ``version``, ``ledger``, ``dropped`` (structures left
        out, with the reason, e.g. a non-finite fingerprint, or a ledger whose elements the
        version lacks).
    """
    from ..descriptors import describe, load_descriptors
    from ..select._base import Environments
    from ..select.fingerprint import element_scaling, structure_fingerprints
    from ..select.novelty import default_descriptor

    snap = store.read(version)
    table = snap.to_pandas()[["id", "version_added"]]
    empty = pd.DataFrame(columns=list(MAP_COLUMNS))
    empty.attrs.update(explained=[0.0, 0.0], descriptor=None, version=snap.version,
                       ledger=ledger, dropped={})
    if not len(table):
        return empty
    dropped: dict[str, str] = {}
    species = sorted({int(z) for z in snap.to_arrays(columns=("numbers",))["numbers"]})
    space = _ledger_space(store, ledger) if ledger is not None else None
    if space is not None and not set(species) <= set(space[0].species):
        dropped[f"ledger {ledger}"] = (
            f"its descriptor covers elements {list(space[0].species)}, version {snap.version} "
            f"has {species}")
        space = None
    if space is not None:
        desc, center, scale, cand = space
    else:
        desc, center, scale, cand = default_descriptor(species), None, None, None
    describe(store, desc, snap.version)
    env = Environments.from_cache(load_descriptors(store, desc, snap.version))
    if center is None:
        center, scale = element_scaling(env)
    fp = structure_fingerprints(env, desc.species, center=center, scale=scale)
    ok = np.isfinite(fp).all(axis=1)
    for i in table["id"][~ok]:
        dropped[str(i)] = "non-finite descriptor (fingerprint not finite)"
    table, fp = table[ok].reset_index(drop=True), fp[ok]
    if not len(table):
        empty.attrs["dropped"] = dropped
        return empty
    mean, axes, ratio = _pca(fp)
    xy = (fp - mean) @ axes.T
    out = pd.DataFrame({
        "kind": "stored", "id": table["id"], "version_added": table["version_added"],
        "decision": None, "pc1": xy[:, 0], "pc2": xy[:, 1],
    })
    if cand is not None:
        rows = [(str(i), d, np.asarray(f, float)) for i, d, f in
                zip(cand["id"], cand["decision"], cand["fingerprint"], strict=True)
                if f is not None and len(f) == fp.shape[1]]
        finite = [r for r in rows if np.isfinite(r[2]).all()]
        if len(finite) < len(cand):
            dropped[f"ledger {ledger}"] = (
                f"{len(cand) - len(finite)} candidate(s) without a usable fingerprint "
                "(invalid or failed frames)")
        if finite:
            cxy = (np.stack([r[2] for r in finite]) - mean) @ axes.T
            out = pd.concat([out, pd.DataFrame({
                "kind": "candidate", "id": [r[0] for r in finite], "version_added": pd.NA,
                "decision": [r[1] for r in finite], "pc1": cxy[:, 0], "pc2": cxy[:, 1],
            })], ignore_index=True)
    out["version_added"] = out["version_added"].astype("Int64")
    out.attrs.update(explained=ratio.tolist(), descriptor=desc.config_hash,
                     version=snap.version, ledger=ledger if cand is not None else None,
                     dropped=dropped)
    return out
