"""The shipped kit catches broken descriptors: each defect fails the kit test meant for it.

Every broken descriptor below is ACSF with one defect; the kit's test methods are called
directly (they take no fixtures) and must raise, while the contract items the defect does not
touch still pass — so a failure points at the right property.
"""

import subprocess
import sys
import threading
import time

import pytest
import torch

from pesdata.descriptors import ACSF
from pesdata.testing import DescriptorTests

from .conftest import contract_structures

PARAMS = dict(g2_params=[[0.05, 0.0], [0.5, 2.0]], g4_params=[[0.005, 4, 1], [0.02, 1, -1]])


def structures():
    """The contract structures, the periodic TiO2 cell first."""
    si, tio2, cluster = contract_structures()
    return [tio2, si, cluster]


def kit(cls: type[ACSF], registered: bool = False) -> DescriptorTests:
    """An instance of a kit class testing ``cls`` on the real structures above."""

    class Kit(DescriptorTests):
        descriptor_factory = staticmethod(
            lambda dtype=torch.float64: cls(["O", "Si", "Ti"], 4.5, **PARAMS, dtype=dtype))
        structures_factory = staticmethod(structures)

    Kit.registered = registered
    return Kit()


class NotPermutationInvariant(ACSF):
    """Adds the atom's index in the structure to its first feature."""

    def from_pairs(self, vec, center, tj, n_atoms):
        out = super().from_pairs(vec, center, tj, n_atoms)
        return out + torch.nn.functional.one_hot(torch.tensor(0), self.n_features).to(
            out.dtype) * torch.arange(n_atoms, dtype=out.dtype)[:, None]


class NotRotationInvariant(ACSF):
    """Adds Σ_j fc-free x components of the pair vectors (a direction) to the first feature."""

    def from_pairs(self, vec, center, tj, n_atoms):
        out = super().from_pairs(vec, center, tj, n_atoms)
        x = torch.zeros(n_atoms, dtype=vec.dtype).index_add_(0, center, vec[:, 0] ** 2)
        return out + x[:, None] * (torch.arange(self.n_features) == 0).to(vec.dtype)


class DetachedTerm(ACSF):
    """A term that depends on the geometry but is hidden from autograd: wrong forces."""

    def from_pairs(self, vec, center, tj, n_atoms):
        out = super().from_pairs(vec, center, tj, n_atoms)
        r2 = torch.zeros(n_atoms, dtype=vec.dtype).index_add_(0, center, (vec * vec).sum(1))
        return out + 0.01 * r2.detach()[:, None]


class BatchDependent(ACSF):
    """Features that depend on how many atoms share the batch."""

    def from_pairs(self, vec, center, tj, n_atoms):
        return super().from_pairs(vec, center, tj, n_atoms) + 1e-3 * n_atoms


class AbsolutePositions(ACSF):
    """Reads absolute positions (not the pair vectors): breaks periodic images."""

    def forward(self, positions, numbers, cells, pbc, structure):
        out = super().forward(positions, numbers, cells, pbc, structure)
        return out + torch.cos(positions[:, :1])


class IgnoresDtype(ACSF):
    """Always returns float64."""

    def from_pairs(self, vec, center, tj, n_atoms):
        return super().from_pairs(vec.double(), center, tj, n_atoms)


class ForgetsG4InConfig(ACSF):
    """config() leaves out the G4 rows: the rebuilt descriptor computes something else."""

    def config(self):
        return {**super().config(), "g4_params": []}


class SharedScratch(ACSF):
    """Keeps per-call state on the instance: two threads overwrite each other's."""

    def from_pairs(self, vec, center, tj, n_atoms):
        self._scratch = float(vec[0, 0]) if len(vec) else 0.0
        time.sleep(0.02)  # the other thread's call runs meanwhile
        out = super().from_pairs(vec, center, tj, n_atoms)
        return out + self._scratch * 1e-3


def test_kit_methods_run_when_called_directly():
    """Outside pytest's collection, without fixtures (the whole kit on a healthy ACSF is
    TestACSFContract's job in test_descriptors_acsf.py; one method is enough here)."""
    kit(ACSF, registered=True).test_config_round_trip()


@pytest.mark.parametrize(("broken", "fails", "passes"), [
    (NotPermutationInvariant, "test_permutation_equivariance", "test_rotation_invariance"),
    (NotRotationInvariant, "test_rotation_invariance", "test_permutation_equivariance"),
    (DetachedTerm, "test_gradients_match_finite_differences", "test_rotation_invariance"),
    (BatchDependent, "test_batch_equals_single", "test_rotation_invariance"),
    (AbsolutePositions, "test_periodic_wrap_invariance", "test_permutation_equivariance"),
    (AbsolutePositions, "test_translation_invariance", "test_batch_equals_single"),
    (IgnoresDtype, "test_float32_agrees_with_float64", "test_batch_equals_single"),
    (IgnoresDtype, "test_features_finite_shape_dtype", "test_rotation_invariance"),
    (ForgetsG4InConfig, "test_config_round_trip", "test_pickle_round_trip"),
    (SharedScratch, "test_thread_safety", "test_features_finite_shape_dtype"),
])
def test_kit_catches_a_broken_descriptor(broken, fails, passes):
    k = kit(broken)
    with pytest.raises(AssertionError):
        getattr(k, fails)()
    getattr(k, passes)()  # the defect is specific: an unrelated contract item still holds


def test_detached_term_is_caught_by_finite_differences_with_a_clear_message():
    with pytest.raises(AssertionError, match=r"∂E/∂position\[0,0\] of .*: autograd .*, finite "
                                             r"differences"):
        kit(DetachedTerm).test_gradients_match_finite_differences()


def test_permutation_message_names_the_property():
    with pytest.raises(AssertionError, match="permuted atoms: features differ by"):
        kit(NotPermutationInvariant).test_permutation_equivariance()


def test_kit_without_factories_says_what_to_set():
    class Empty(DescriptorTests):
        pass

    with pytest.raises(TypeError, match="Empty must set descriptor_factory"):
        Empty().test_rotation_invariance()


def test_thread_safety_test_really_runs_two_threads():
    seen = set()

    class Recording(ACSF):
        def from_pairs(self, vec, center, tj, n_atoms):
            seen.add(threading.get_ident())
            time.sleep(0.01)
            return super().from_pairs(vec, center, tj, n_atoms)

    kit(Recording).test_thread_safety()
    assert len(seen) >= 2


def test_import_pesdata_does_not_import_the_kit_or_pytest():
    code = ("import sys, pesdata, pesdata.descriptors; "
            "print('pytest' in sys.modules, 'pesdata.testing' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]
