"""DIRECT sampling: PCA (Kaiser) + BIRCH strata, one frame per stratum.

After Qi et al., "Robust training of machine learning interatomic potentials with
dimensionality reduction and stratified sampling", npj Comput. Mater. 10, 43 (2024): the
fingerprints are standardised, projected on the principal components whose eigenvalue
exceeds 1 (Kaiser's rule), each kept component scaled by its explained-variance ratio, the
result clustered by BIRCH into ``budget`` clusters, and from each cluster the member nearest
its centre is taken.
"""

from __future__ import annotations

import warnings

import numpy as np

from .._params import check_float, check_int
from ._base import Diversity
from .fps import check_pick, farthest_points, priority_weights
from .kmeans import _by_priority, cluster_medoids

__all__ = ["DirectSampling", "kaiser_components"]


def kaiser_components(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Standardise ``x``, PCA, and the number of components with eigenvalue > 1.

    Eigenvalues are those of the correlation matrix of ``x`` (the covariance, ddof 0, of the
    standardised columns; constant columns are dropped), so they sum to the number of
    non-constant columns and "> 1" means "explains more than one original column's worth".
    At least one component is kept.

    Returns
    -------
    scores : ndarray, shape (n, n_components)
        The standardised rows projected on all components (sklearn ``PCA``, full SVD).
    eigenvalues : ndarray, shape (n_components,)
        Descending.
    m : int
        Components kept.
    """
    from sklearn.decomposition import PCA

    sd = x.std(axis=0)
    keep = sd > 1e-12 * np.maximum(1.0, np.abs(x).max(axis=0))
    z = (x[:, keep] - x[:, keep].mean(axis=0)) / sd[keep]
    pca = PCA(svd_solver="full").fit(z)
    n = len(x)
    eig = pca.explained_variance_ * (n - 1) / n  # sklearn divides by n - 1
    m = max(1, int(np.sum(eig > 1.0)))
    return pca.transform(z), eig, m


class DirectSampling(Diversity):
    """DIRECT: Kaiser-rule PCA, BIRCH strata, the member nearest each stratum's centre.

    1. Standardise each fingerprint column (zero mean, unit variance; constant columns
       dropped) and keep the principal components whose eigenvalue (of the correlation
       matrix) exceeds 1 (:func:`kaiser_components`).
    2. Multiply each kept component by its explained-variance ratio (as the paper and maml's
       ``DIRECTSampler`` do), so the leading components dominate distances.
    3. ``sklearn.cluster.Birch(n_clusters=budget, threshold=t)``. ``t`` starts at
       ``threshold`` or, by default, at the RMS distance of the weighted rows to their mean
       divided by ``budget ** (1 / m)`` (the spacing of ``budget`` cells filling the data,
       ``m`` components), and shrinks by ``clip(0.95 · (s / budget) ** (1 / m), 0.3, 0.95)``
       while BIRCH makes ``s`` < ``budget`` subclusters (at most 40 times; as many as the
       distinct rows when those are fewer). The threshold used is ``threshold_``.
    4. From each cluster the member nearest the mean of its members (ties: higher priority,
       then lower index); clusters ordered by that member's priority, then size, then index.
       With a group cap, a cluster whose nearest member's group is full gives its nearest
       allowed member. If this leaves the budget short (fewer clusters, caps), the rest is
       filled by priority-weighted farthest-point sampling in the weighted PC space.

    ``n <= budget`` picks everything, by priority. Nothing random happens (PCA by full SVD,
    BIRCH is deterministic), so the seed does not change the picks.

    Parameters
    ----------
    seed : int
        Kept for the common interface.
    threshold : float, optional
        Starting BIRCH threshold in weighted-PC units (default: automatic, see above).
    branching_factor : int
        BIRCH branching factor.
    alpha : float
        Priority exponent of the farthest-point fill.

    Attributes
    ----------
    eigenvalues_, n_components_, features_, labels_, threshold_
        Set by :meth:`pick` when clustering ran: the correlation-matrix eigenvalues, the
        number kept, the weighted PC rows clustered, BIRCH's labels and threshold.
    """

    name = "direct"

    def __init__(self, seed: int = 0, threshold: float | None = None,
                 branching_factor: int = 50, alpha: float = 1.0) -> None:
        super().__init__(seed)
        self.threshold = threshold
        self.branching_factor = branching_factor
        self.alpha = alpha

    def pick(self, fingerprints, budget, priority=None, groups=None, group_cap=None):
        """Indices of at most ``budget`` frames in pick order (see the class docstring)."""
        start = (None if self.threshold is None
                 else check_float("threshold", self.threshold, low=0.0, low_open=True))
        bf = check_int("branching_factor", self.branching_factor, minimum=2)
        a = check_pick(fingerprints, budget, priority, groups, group_cap)
        w = priority_weights(a.priority, a.n, check_float("alpha", self.alpha, low=0.0))
        if a.n <= a.budget or a.budget == 0 or np.ptp(a.x, axis=0).max(initial=0.0) == 0:
            return _by_priority(a)
        scores, eig, m = kaiser_components(a.x)
        ratio = eig / eig.sum()
        f = scores[:, :m] * ratio[:m]
        labels, t = _birch(f, a.budget, start, bf)
        centres = np.stack([f[labels == c].mean(axis=0) if np.any(labels == c)
                            else np.full(m, np.inf) for c in range(labels.max() + 1)])
        self.eigenvalues_, self.n_components_ = eig, m
        self.features_, self.labels_, self.threshold_ = f, labels, t
        picks = cluster_medoids(a, f, labels, centres)
        if len(picks) < a.budget:
            picks = farthest_points(a, w, picks, x=f)
        return np.asarray(picks, dtype=np.int64)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(seed={self.seed!r}, threshold={self.threshold!r}, "
                f"branching_factor={self.branching_factor!r}, alpha={self.alpha!r})")


def _birch(f: np.ndarray, budget: int, start: float | None, bf: int) -> tuple[np.ndarray, float]:
    """BIRCH labels of ``f`` into ``budget`` clusters, and the threshold that made them."""
    from sklearn.cluster import Birch
    from sklearn.exceptions import ConvergenceWarning

    m = f.shape[1]
    target = min(budget, len(np.unique(f, axis=0)))
    rms = float(np.sqrt(np.mean(np.sum((f - f.mean(axis=0)) ** 2, axis=1))))
    t = start if start is not None else max(rms, 1e-300) / budget ** (1.0 / m)
    with warnings.catch_warnings():  # fewer subclusters than budget: filled by FPS
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(40):
            used = t
            model = Birch(threshold=t, n_clusters=budget, branching_factor=bf).fit(f)
            s = len(model.subcluster_centers_)
            if s >= target:
                break
            t *= float(np.clip(0.95 * (s / budget) ** (1.0 / m), 0.3, 0.95))
    return np.asarray(model.labels_), used
