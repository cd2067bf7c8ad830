"""Structure fingerprints, near-duplicates and the diversity strategies (FPS, k-means, DIRECT).

Numbers are checked against independent references: a brute-force FPS on a full distance
matrix, sklearn's KMeans and Birch, numpy's eigendecomposition, per-frame numpy loops.
Real fingerprints come from the mlearn Si frames (train + test) with the default ACSF.
"""

from __future__ import annotations

import subprocess
import sys

import ase.io
import numpy as np
import pytest
from scipy.spatial.distance import cdist

from pesdata.errors import ParameterError
from pesdata.select._base import Environments
from pesdata.select.direct import DirectSampling
from pesdata.select.fingerprint import element_scaling, near_duplicates, structure_fingerprints
from pesdata.select.fps import FarthestPointSampling
from pesdata.select.kmeans import KMeansMedoids
from pesdata.select.registry import get_diversity

from .conftest import DATA

STRATEGIES = (FarthestPointSampling, KMeansMedoids, DirectSampling)


def _env(frames, descriptor) -> Environments:
    x = descriptor.compute(frames).numpy()
    s = np.repeat(np.arange(len(frames)), [len(a) for a in frames])
    return Environments(x, np.concatenate([a.numbers for a in frames]), s, len(frames))


@pytest.fixture(scope="module")
def si():
    """(frames, Environments, fingerprints, groups) of the 239 mlearn Si frames."""
    from pesdata.descriptors import ACSF

    frames = (ase.io.read(DATA / "mlearn/Si_training.extxyz", ":")
              + ase.io.read(DATA / "mlearn/Si_test.extxyz", ":"))
    env = _env(frames, ACSF(["Si"], 5.0))
    fp = structure_fingerprints(env, [14])
    return frames, env, fp, np.array([a.info["group"] for a in frames])


def fps_reference(x, budget, priority=None, alpha=1.0, groups=None, cap=None):
    """Brute-force weighted FPS on the full distance matrix (the documented rule)."""
    d = cdist(x, x)
    n = len(x)
    if priority is None:
        w = np.ones(n)
        first = int(np.argmax(np.linalg.norm(x - x.mean(axis=0), axis=1)))
    else:
        w = (priority / priority.max()) ** alpha
        first = int(np.argmax(priority))
    picks, count = [], {}

    def allowed(i):
        return i not in picks and (cap is None or count.get(groups[i], 0) < cap)

    def take(i):
        picks.append(i)
        if groups is not None:
            count[groups[i]] = count.get(groups[i], 0) + 1

    take(first)
    while len(picks) < budget:
        best, bi = -1.0, None
        for i in range(n):
            if allowed(i):
                s = min(d[i, j] for j in picks) * w[i]
                if s > best:  # strict: the lowest index wins ties
                    best, bi = s, i
        if bi is None:
            break
        take(bi)
    return picks


def coverage(d, picks):
    """Largest distance of any frame to its nearest pick."""
    return d[:, picks].min(axis=1).max()


# -- fingerprints --------------------------------------------------------------------------

def test_fingerprint_matches_per_frame_loop():
    """Two elements (TiO2): fraction, mean, std, max per element against a numpy loop."""
    from pesdata.descriptors import ACSF

    frames = ase.io.read(DATA / "tio2/TiO2_aenet_subset.extxyz", ":6")
    env = _env(frames, ACSF(["Ti", "O"], 4.0))
    ref_env = _env(ase.io.read(DATA / "tio2/TiO2_aenet_subset.extxyz", "10:20"),
                   ACSF(["Ti", "O"], 4.0))
    center, scale = element_scaling(ref_env)
    for z in (8, 22):
        rows = ref_env.features[ref_env.numbers == z]
        assert np.allclose(center[z], rows.mean(axis=0))
        assert np.allclose(scale[z], np.where(rows.std(axis=0) > 0, rows.std(axis=0), 1))
    fp = structure_fingerprints(env, [8, 22], center, scale, stats=("max", "mean", "std"))
    d = env.features.shape[1]
    assert fp.shape == (6, 2 * (1 + 3 * d))
    for f in range(6):
        parts = []
        for z in (8, 22):
            m = (env.structure == f) & (env.numbers == z)
            r = (env.features[m] - center[z]) / scale[z]
            parts += [[m.sum() / (env.structure == f).sum()], r.mean(0), r.std(0), r.max(0)]
        assert np.allclose(fp[f], np.concatenate(parts), atol=1e-10)


def test_fingerprint_absent_element_nan_and_own_scaling():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 3))
    numbers = np.array([8, 8, 8, 22, 8, 8, 22])
    structure = np.array([0, 0, 0, 1, 1, 2, 2])
    x[5, 1] = np.nan
    env = Environments(x, numbers, structure, 3)
    fp = structure_fingerprints(env, [22, 8], center={22: 0.0, 8: 0.0}, scale={22: 1.0, 8: 2.0})
    block = 1 + 2 * 3
    assert np.all(fp[0, :block] == 0)  # no Ti in frame 0: zeros, fraction 0
    assert fp[0, block] == 1.0 and np.allclose(fp[0, block + 1:block + 4], x[:3].mean(0) / 2)
    assert np.isnan(fp[2]).any() and np.isfinite(fp[:2]).all()  # NaN stays in its frame
    # an element missing from center/scale is standardised with env's own statistics
    own = structure_fingerprints(env, [22, 8], center={8: 0.0}, scale={8: 1.0})
    ti = x[numbers == 22]
    assert np.allclose(own[1, 1:4], (x[3] - ti.mean(0)) / ti.std(0))


def test_fingerprint_permutation_and_supercell_invariant(si):
    from pesdata.descriptors import ACSF

    frames, env, _, _ = si
    desc = ACSF(["Si"], 5.0)
    center, scale = element_scaling(env)
    bulk, surface = frames[0], next(a for a in frames if a.info["group"] == "Surface")
    perm = np.random.default_rng(0).permutation(len(surface))
    images = [bulk, bulk * (2, 2, 1), surface, surface[perm], surface * (1, 2, 1)]
    fp = structure_fingerprints(_env(images, desc), [14], center, scale)
    assert np.abs(fp[0]).max() > 0.1  # not trivially zero
    assert np.allclose(fp[1], fp[0], atol=1e-9)
    assert np.allclose(fp[3], fp[2], atol=1e-9)
    assert np.allclose(fp[4], fp[2], atol=1e-9)
    assert not np.allclose(fp[2], fp[0], atol=1e-3)


def test_fingerprint_bad_arguments():
    env = Environments(np.zeros((2, 3)), np.array([14, 8]), np.array([0, 0]), 1)
    with pytest.raises(ParameterError, match=r"misses element\(s\) \[8\]"):
        structure_fingerprints(env, [14])
    with pytest.raises(ParameterError, match="'median'"):
        structure_fingerprints(env, [8, 14], stats=("median",))
    with pytest.raises(ParameterError, match=r"scale\[14\] must be finite and > 0"):
        structure_fingerprints(env, [8, 14], center={14: 0.0}, scale={14: 0.0})
    with pytest.raises(ParameterError, match=r"shape \(3,\)"):
        structure_fingerprints(env, [8, 14], center={14: [1.0, 2.0]}, scale={14: 1.0})


# -- near duplicates -----------------------------------------------------------------------

def near_duplicates_reference(x, tol):
    out = np.full(len(x), -1)
    for i in range(len(x)):
        for j in range(i):
            if out[j] < 0 and np.linalg.norm(x[i] - x[j]) <= tol:
                out[i] = j
                break
    return out


def test_near_duplicates():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(20, 4))
    x = np.vstack([base, base[3], base[10] + 1e-6])
    assert near_duplicates(x, 0).tolist() == [-1] * 20 + [3, -1]
    assert near_duplicates(x, 1e-5).tolist() == [-1] * 20 + [3, 10]
    # a chain: 1 is a copy of 0, 2 is within tol of 1 only, so it is kept
    assert near_duplicates(np.array([[0.0], [0.6], [1.2]]), 1.0).tolist() == [-1, 0, -1]
    y = rng.normal(size=(300, 3))
    tol = np.quantile(cdist(y, y)[np.triu_indices(300, 1)], 0.01)
    got = near_duplicates(y, tol)
    assert (got >= 0).sum() > 10
    assert got.tolist() == near_duplicates_reference(y, tol).tolist()
    with pytest.raises(ParameterError, match="tol must be"):
        near_duplicates(y, -1.0)
    with pytest.raises(ParameterError, match=r"row\(s\) \[1\]"):
        near_duplicates(np.array([[0.0], [np.nan]]), 0.1)


# -- FPS -----------------------------------------------------------------------------------

def test_registry_names():
    assert get_diversity("fps") is FarthestPointSampling
    assert get_diversity("kmeans") is KMeansMedoids
    assert get_diversity("direct") is DirectSampling


@pytest.mark.parametrize("alpha", [0.0, 1.0, 3.0])
def test_fps_equals_brute_force(si, alpha):
    rng = np.random.default_rng(3)
    _, _, fp, _ = si
    # real frames that are copies to rounding (2e-15 apart) would make the order depend on
    # the last bit of two distance routines: keep one of each (the tie rule is tested below)
    real = fp[near_duplicates(fp, 1e-9) < 0]
    assert len(real) > 190  # 42 of the 239 are rounding-level copies of another
    x = rng.normal(size=(150, 6))
    for data in (x, real):
        p = rng.uniform(0.1, 3.0, len(data))
        for prio in (None, p):
            got = FarthestPointSampling(alpha=alpha, radius=0).pick(data, 25, priority=prio)
            assert len(got) == 25
            assert got.tolist() == fps_reference(data, 25, prio, alpha)
            if prio is not None:
                assert got[0] == np.argmax(prio)


def test_fps_cap_equals_brute_force(si):
    _, _, fp, groups = si
    keep = near_duplicates(fp, 1e-9) < 0
    fp, groups = fp[keep], groups[keep]
    for cap in (1, 3):
        got = FarthestPointSampling(alpha=1, radius=0).pick(fp, 10, groups=groups,
                                                            group_cap=cap)
        assert got.tolist() == fps_reference(fp, 10, groups=groups, cap=cap)
        assert len(got) == min(10, 4 * cap)


def test_fps_ties_determinism_and_seed():
    x = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]])
    # centroid (0, 0): rows 1-4 tie for the first pick -> 1; then 3; then 2 and 4 tie -> 2
    assert FarthestPointSampling().pick(x, 5).tolist() == [1, 3, 2, 4, 0]
    # priority ties: the lowest index of the highest priority starts
    assert FarthestPointSampling().pick(x, 1, priority=[0, 1, 5, 5, 1]).tolist() == [2]
    rng = np.random.default_rng(4)
    y, p = rng.normal(size=(80, 3)), rng.uniform(size=80)
    runs = [FarthestPointSampling(seed=s).pick(y, 30, priority=p) for s in (0, 0, 7)]
    assert runs[0].tolist() == runs[1].tolist() == runs[2].tolist()
    assert len(FarthestPointSampling().pick(y, 500)) == 80
    assert len(FarthestPointSampling().pick(y, 0)) == 0


def test_fps_priority_weighting_keeps_clear_cases_drops_copies():
    rng = np.random.default_rng(5)
    spread = rng.uniform(-1, 1, size=(40, 2))  # weak cases (priority 1) all over
    clear = np.array([[3.0, 3.0]]) + rng.normal(scale=1e-3, size=(6, 2))  # 6 near-copies
    far_clear = np.array([[-3.0, 3.0]])  # another clear case
    x = np.vstack([spread, clear, far_clear])
    p = np.r_[np.ones(40), np.full(6, 10.0), 10.0]
    got = FarthestPointSampling().pick(x, 4, priority=p)
    assert 46 in got  # both clear regions kept under a tight budget
    assert np.isin(got, np.arange(40, 46)).sum() == 1  # but one of the near-copies only
    plain = FarthestPointSampling(alpha=0).pick(x, 4, priority=p)
    assert np.isin(plain, np.arange(40, 46)).sum() == 1
    # without the redundancy radius a steep priority weight picks the copies of the clearest
    steep = FarthestPointSampling(alpha=4, radius=0).pick(x, 4, priority=p)
    assert np.isin(steep, np.arange(40, 46)).sum() > 1


def test_fps_radius_defers_copies_until_nothing_else_is_left():
    x = np.array([[0.0, 0.0], [0.01, 0.0], [0.0, 0.01], [5.0, 0.0], [0.0, 5.0]])
    p = np.array([10.0, 9.9, 9.8, 1.0, 1.0])
    got = FarthestPointSampling(alpha=4, radius=0.5).pick(x, 5, priority=p)
    assert got.tolist()[:3] == [0, 3, 4]  # far weak cases before the copies of the clear one
    assert sorted(got.tolist()[3:]) == [1, 2]
    assert FarthestPointSampling(radius=0.5).pick(x, 1, priority=p).tolist() == [0]
    with pytest.raises(ParameterError, match="radius"):
        FarthestPointSampling(radius="big").pick(x, 2)
    with pytest.raises(ParameterError, match="radius"):
        FarthestPointSampling(radius=-1.0).pick(x, 2)


# -- group cap, all strategies -------------------------------------------------------------

@pytest.mark.parametrize("cls", STRATEGIES)
def test_group_cap_respected_and_budget_met(cls):
    rng = np.random.default_rng(6)
    x = np.vstack([rng.normal(size=(150, 4)), rng.normal(loc=6, size=(50, 4))])
    groups = np.r_[rng.integers(0, 10, 150), np.full(50, 99)]  # one trajectory far away
    got = cls(seed=1).pick(x, 25, priority=rng.uniform(size=200), groups=groups, group_cap=3)
    assert len(got) == 25 and len(set(got.tolist())) == 25
    assert np.bincount(np.unique(groups, return_inverse=True)[1][got]).max() <= 3
    # not enough groups: as many as the caps allow; frames without group are not capped
    two = np.where(np.arange(200) < 100, "a", "b").astype(object)
    assert len(cls().pick(x, 25, groups=two, group_cap=3)) == 6
    two[:10] = None
    got = cls().pick(x, 25, groups=two, group_cap=3)
    assert len(got) == 16 and np.isin(np.arange(10), got).all()


@pytest.mark.parametrize("cls", STRATEGIES)
def test_pick_bad_arguments(cls):
    x = np.zeros((5, 2))
    with pytest.raises(ParameterError, match="budget must be an integer ≥ 0, got -1"):
        cls().pick(x, -1)
    with pytest.raises(ParameterError, match=r"row\(s\) \[2\] are NaN"):
        cls().pick(np.where(np.arange(10).reshape(5, 2) == 4, np.nan, 0.0), 2)
    with pytest.raises(ParameterError, match="group_cap must be a positive integer, got 0"):
        cls().pick(x, 2, groups=list("aabbc"), group_cap=0)
    with pytest.raises(ParameterError, match="needs groups"):
        cls().pick(x, 2, group_cap=1)
    with pytest.raises(ParameterError, match=r"priority must have shape \(5,\)"):
        cls().pick(x, 2, priority=[1, 2])
    with pytest.raises(ParameterError, match=r"got \[-1.0\]"):
        cls().pick(x, 2, priority=[1, 2, -1, 0, 0])
    with pytest.raises(ParameterError, match="2-D"):
        cls().pick(np.zeros(5), 2)


# -- k-means and DIRECT --------------------------------------------------------------------

def test_kmeans_medoids_nearest_to_sklearn_centres(si):
    from sklearn.cluster import KMeans

    _, _, fp, _ = si
    p = np.random.default_rng(7).uniform(size=len(fp))
    got = KMeansMedoids(seed=3).pick(fp, 15, priority=p)
    km = KMeans(n_clusters=15, n_init=1, max_iter=300, random_state=3).fit(fp)
    expected = []
    for c in range(15):
        members = np.flatnonzero(km.labels_ == c)
        expected.append(members[np.argmin(cdist(fp[members], km.cluster_centers_[c:c + 1]))])
    assert sorted(got.tolist()) == sorted(expected)
    assert np.all(np.diff(p[got]) <= 0)  # clusters ordered by their medoid's priority
    assert got.tolist() == KMeansMedoids(seed=3).pick(fp, 15, priority=p).tolist()
    # n <= budget: everything, by priority
    assert KMeansMedoids().pick(fp[:5], 9, priority=p[:5]).tolist() == \
        np.argsort(-p[:5], kind="stable").tolist()


def test_direct_kaiser_pca_and_birch_strata(si):
    from sklearn.cluster import Birch

    _, _, fp, _ = si
    direct = DirectSampling()
    got = direct.pick(fp, 20)
    assert len(got) == 20 and len(set(got.tolist())) == 20
    # Kaiser rule against numpy's eigendecomposition of the standardised covariance
    keep = fp.std(axis=0) > 0
    z = (fp[:, keep] - fp[:, keep].mean(0)) / fp[:, keep].std(0)
    eig, vec = np.linalg.eigh(np.cov(z, rowvar=False, ddof=0))
    eig, vec = eig[::-1], vec[:, ::-1]
    m = int((eig > 1).sum())
    assert 1 < m < keep.sum()
    assert direct.n_components_ == m
    assert np.allclose(direct.eigenvalues_, eig[:len(direct.eigenvalues_)], atol=1e-8)
    weighted = (z @ vec[:, :m]) * (eig[:m] / eig.sum())
    for k in range(m):  # same components up to sign
        col = direct.features_[:, k]
        assert np.allclose(col, weighted[:, k], atol=1e-8) or \
            np.allclose(col, -weighted[:, k], atol=1e-8)
    # the picks cover every BIRCH cluster, one each, nearest its centre
    labels = Birch(threshold=direct.threshold_, n_clusters=20).fit(direct.features_).labels_
    assert np.array_equal(labels, direct.labels_)
    assert len(np.unique(labels)) == 20
    assert sorted(labels[got].tolist()) == list(range(20))
    for i in got:
        members = np.flatnonzero(labels == labels[i])
        centre = direct.features_[members].mean(axis=0)
        dist = np.linalg.norm(direct.features_[members] - centre, axis=1)
        assert i == members[np.argmin(dist)]


def test_direct_fills_budget_with_duplicates():
    """Fewer distinct rows than the budget: BIRCH gives fewer clusters, FPS fills."""
    rng = np.random.default_rng(8)
    x = np.repeat(rng.normal(size=(6, 5)), 4, axis=0)
    got = DirectSampling().pick(x, 10)
    assert len(got) == 10 and len(set(got.tolist())) == 10
    assert len({tuple(r) for r in x[got[:6]]}) == 6  # one per distinct row first


@pytest.mark.parametrize("cls", STRATEGIES)
def test_coverage_beats_random(si, cls):
    _, _, fp, _ = si
    d = cdist(fp, fp)
    budget = 20
    random_cover = np.mean([coverage(d, np.random.default_rng(s).choice(len(fp), budget,
                                                                         replace=False))
                            for s in range(20)])
    got = cls(seed=0).pick(fp, budget)
    assert len(got) == budget
    assert coverage(d, got) < 0.75 * random_cover


def test_fingerprint_and_fps_import_no_sklearn_or_torch():
    code = ("import sys, pesdata.select.fingerprint, pesdata.select.fps; "
            "print(sorted(m for m in ('sklearn', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
