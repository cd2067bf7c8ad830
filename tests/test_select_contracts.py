"""The shipped contract kits (pesdata.testing.CriterionTests / DiversityTests) run on the novelty
criterion and on every diversity strategy, with real mlearn Si descriptors."""

from __future__ import annotations

import functools

import ase.io
import numpy as np
import torch

from pesdata.select import Environments
from pesdata.select.direct import DirectSampling
from pesdata.select.fingerprint import element_scaling, structure_fingerprints
from pesdata.select.fps import FarthestPointSampling
from pesdata.select.kmeans import KMeansMedoids
from pesdata.select.novelty import NoveltyCriterion, default_descriptor
from pesdata.testing import CriterionTests, DiversityTests

from .conftest import DATA


@functools.cache
def _si() -> tuple[Environments, Environments]:
    """Si bulk training frames (reference) and the Si test frames (candidates), described."""
    desc = default_descriptor(["Si"])
    train = ase.io.read(DATA / "mlearn/Si_training.extxyz", ":")
    ref = [a for a in train if a.info["group"] in ("Elastic", "AIMD-NVT")][::3]
    cand = ase.io.read(DATA / "mlearn/Si_test.extxyz", ":")

    def env(frames):
        with torch.no_grad():
            f = desc.compute(frames).numpy()
        n = [len(a) for a in frames]
        return Environments(f, np.concatenate([a.numbers for a in frames]),
                            np.repeat(np.arange(len(frames)), n), len(frames))

    return env(ref), env(cand)


def _fingerprints() -> np.ndarray:
    ref, cand = _si()
    center, scale = element_scaling(ref)
    return structure_fingerprints(cand, [14], center=center, scale=scale)


class TestNoveltyContract(CriterionTests):
    criterion_factory = staticmethod(lambda: NoveltyCriterion())
    reference_factory = staticmethod(lambda: _si()[0])
    candidates_factory = staticmethod(lambda: _si()[1])


class TestNoveltyTopKContract(CriterionTests):
    criterion_factory = staticmethod(lambda: NoveltyCriterion(aggregate="top_k", top_k=4,
                                                              quantile=0.9))
    reference_factory = staticmethod(lambda: _si()[0])
    candidates_factory = staticmethod(lambda: _si()[1])


class TestFPSContract(DiversityTests):
    strategy_factory = staticmethod(lambda seed: FarthestPointSampling(seed=seed))
    fingerprints_factory = staticmethod(_fingerprints)


class TestKMeansContract(DiversityTests):
    strategy_factory = staticmethod(lambda seed: KMeansMedoids(seed=seed))
    fingerprints_factory = staticmethod(_fingerprints)


class TestDirectContract(DiversityTests):
    strategy_factory = staticmethod(lambda seed: DirectSampling(seed=seed))
    fingerprints_factory = staticmethod(_fingerprints)
