"""Contract tests every pesdata descriptor must pass (:class:`DescriptorTests`)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import ase
import numpy as np
import pytest
import torch

from ..descriptors import Descriptor, batch_atoms, from_config
from ..descriptors.jacobian import pair_gradients

__all__ = ["DescriptorTests"]

_STRUCTURES: dict[type, list[ase.Atoms]] = {}


class DescriptorTests:
    """Contract tests for a :class:`~pesdata.descriptors.Descriptor`; subclass to run them.

    A subclass named ``Test...`` sets two factories and inherits every ``test_*`` method:

    descriptor_factory : callable
        ``descriptor_factory(dtype=torch.float64)`` returns a fresh descriptor under test.
    structures_factory : callable
        ``structures_factory()`` returns a few ``ase.Atoms`` (periodic and not, every element
        of the descriptor's species; keep them small — each test computes them a few times).

    Plain functions and lambdas may be assigned directly (they are not bound to the test
    instance). The tests take no fixtures, so they can also be called directly. Tolerances
    are class attributes, relative to the largest feature magnitude where they say so.

    The contract: finite features of shape (n_atoms, n_features) in the descriptor's dtype;
    a batch gives what each structure gives alone; invariance under periodic images,
    translation and rotation; permutation equivariance; gradients equal to central finite
    differences (float64) in positions and cell, by autograd and by :meth:`pair_jacobian`;
    the config round trip and pickling keep the config hash and the values; computing from
    two threads at once gives the single-threaded result; float32 agrees with float64.
    """

    descriptor_factory: Callable[..., Descriptor]
    structures_factory: Callable[[], Sequence[ase.Atoms]]
    #: ``pesdata.descriptors.from_config`` knows the descriptor (set False for your own kinds)
    registered: bool = True
    #: float64 agreement of recomputed features, relative to the largest feature
    rtol: float = 1e-10
    #: float32 against float64, relative to the largest feature
    float32_rtol: float = 1e-5
    #: central finite differences: step (Å) and relative tolerance on each derivative
    fd_step: float = 1e-5
    fd_rtol: float = 1e-5
    seed: int = 0

    # -- helpers ------------------------------------------------------------------------------
    def _factory(self, name: str) -> Callable:
        for klass in type(self).__mro__:
            if name in klass.__dict__:
                value = klass.__dict__[name]
                return value.__func__ if isinstance(value, staticmethod) else value
        raise TypeError(f"{type(self).__name__} must set {name} (see DescriptorTests)")

    def descriptor(self, dtype: torch.dtype = torch.float64) -> Descriptor:
        """A fresh descriptor under test, in ``dtype``."""
        desc = self._factory("descriptor_factory")(dtype=dtype)
        assert isinstance(desc, Descriptor), f"descriptor_factory gave {type(desc).__name__}"
        return desc

    def structures(self) -> list[ase.Atoms]:
        """Copies of the structures under test (read once per test class)."""
        cls = type(self)
        if cls not in _STRUCTURES:
            images = list(self._factory("structures_factory")())
            assert images, "structures_factory gave no structures"
            _STRUCTURES[cls] = images
        return [a.copy() for a in _STRUCTURES[cls]]

    def assert_features_equal(self, got: torch.Tensor, want: torch.Tensor, what: str,
                              rtol: float | None = None) -> None:
        """``got`` equals ``want`` to ``rtol`` times the largest feature of ``want``."""
        assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
        scale = max(1.0, float(want.abs().max())) if want.numel() else 1.0
        tol = (self.rtol if rtol is None else rtol) * scale
        err = float((got.double() - want.double()).abs().max()) if want.numel() else 0.0
        assert err <= tol, f"{what}: features differ by {err:.3g} (tolerance {tol:.3g})"

    def _energy(self, desc: Descriptor, atoms: ase.Atoms, weights: torch.Tensor):
        """E = Σ w·g of one structure, as a function of positions and cell tensors."""
        b = batch_atoms(atoms, desc.dtype, desc.device)

        def energy(pos: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
            g = desc.forward(pos, b.numbers, cell[None], b.pbc, b.structure)
            return (g * weights).sum()

        return energy, b

    # -- the contract -------------------------------------------------------------------------
    def test_features_finite_shape_dtype(self) -> None:
        """Features: finite, (n_atoms, n_features), the descriptor's dtype, named, not all 0."""
        desc = self.descriptor()
        names = desc.feature_names
        assert len(names) == desc.n_features, "one feature name per column"
        assert len(set(names)) == len(names), "feature names are unique"
        for atoms in self.structures():
            g = desc.compute(atoms)
            assert g.shape == (len(atoms), desc.n_features), f"shape {tuple(g.shape)}"
            assert g.dtype == desc.dtype, f"dtype {g.dtype}, descriptor's {desc.dtype}"
            assert g.device.type == desc.device.type
            assert torch.isfinite(g).all(), "features are finite"
        assert any(desc.compute(a).abs().max() > 0 for a in self.structures()), (
            "features are not all zero")
        g32 = self.descriptor(torch.float32).compute(self.structures()[0])
        assert g32.dtype == torch.float32, f"a float32 descriptor returned {g32.dtype}"

    def test_batch_equals_single(self) -> None:
        """A batch of structures gives what each structure gives alone."""
        desc = self.descriptor()
        images = self.structures()
        single = torch.cat([desc.compute(a) for a in images])
        self.assert_features_equal(desc.compute(images, batch_size=len(images), n_workers=1),
                                   single, "one batch vs one by one")
        self.assert_features_equal(desc.compute(images, batch_size=2, n_workers=1),
                                   single, "batches of 2 vs one by one")

    def test_periodic_wrap_invariance(self) -> None:
        """Lattice-vector moves, wrapping and a 2x1x1 supercell change no feature."""
        desc = self.descriptor()
        periodic = [a for a in self.structures() if a.pbc.all()]
        if not periodic:
            pytest.skip("no fully periodic structure among the structures under test")
        rng = np.random.default_rng(self.seed)
        for atoms in periodic:
            ref = desc.compute(atoms)
            moved = atoms.copy()
            moved.positions += rng.integers(-2, 3, size=(len(atoms), 3)) @ atoms.cell.array
            self.assert_features_equal(desc.compute(moved), ref, "atoms moved by lattice vectors")
            moved.wrap()
            self.assert_features_equal(desc.compute(moved), ref, "positions wrapped into the cell")
            bigger = desc.compute(atoms * (2, 1, 1))
            self.assert_features_equal(bigger[: len(atoms)], ref, "a 2x1x1 supercell")
            self.assert_features_equal(bigger[len(atoms) :], ref, "a 2x1x1 supercell")

    def test_translation_invariance(self) -> None:
        """Translating every atom changes no feature."""
        desc = self.descriptor()
        for atoms in self.structures():
            moved = atoms.copy()
            moved.positions += [1.3, -0.7, 2.2]
            self.assert_features_equal(desc.compute(moved), desc.compute(atoms), "translated")

    def test_rotation_invariance(self) -> None:
        """Rotating atoms and cell changes no feature."""
        desc = self.descriptor()
        for atoms in self.structures():
            rotated = atoms.copy()
            rotated.rotate(37, (1, 2, 3), center="COP", rotate_cell=True)
            self.assert_features_equal(desc.compute(rotated), desc.compute(atoms), "rotated")

    def test_permutation_equivariance(self) -> None:
        """Permuting the atoms permutes the feature rows the same way."""
        desc = self.descriptor()
        rng = np.random.default_rng(self.seed)
        for atoms in self.structures():
            perm = rng.permutation(len(atoms))
            self.assert_features_equal(desc.compute(atoms[perm]), desc.compute(atoms)[perm],
                                       "permuted atoms")

    def _fd_cases(self, atoms: ase.Atoms) -> list[tuple[int, int]]:
        n = len(atoms)
        return sorted({(0, 0), (n // 2, 1), (n - 1, 2)})

    def test_gradients_match_finite_differences(self) -> None:
        """Autograd derivatives of Σ w·g in positions and cell equal central finite differences."""
        desc = self.descriptor(torch.float64)
        rng = np.random.default_rng(self.seed)
        for atoms in self.structures()[:2]:
            weights = torch.as_tensor(rng.uniform(0.5, 1.5, desc.n_features), dtype=desc.dtype,
                                      device=desc.device)
            energy, b = self._energy(desc, atoms, weights)
            pos = b.positions.clone().requires_grad_(True)
            cell = b.cells[0].clone().requires_grad_(True)
            g_pos, g_cell = torch.autograd.grad(energy(pos, cell), (pos, cell), allow_unused=True)
            g_cell = torch.zeros_like(cell) if g_cell is None else g_cell
            pos, cell = pos.detach(), cell.detach()
            with torch.no_grad():
                terms = float((desc.forward(pos, b.numbers, cell[None], b.pbc, b.structure)
                               * weights).abs().sum())
            h = self.fd_step
            rounding = 50 * np.finfo(np.float64).eps * terms / h  # FD noise of the sum
            cases = [("position", a, k, g_pos) for a, k in self._fd_cases(atoms)]
            if atoms.pbc.any():
                cases += [("cell", a, k, g_cell) for a, k in ((0, 0), (1, 2), (2, 1))]
            for kind, a, k, grad in cases:
                d = torch.zeros(3 if kind == "cell" else len(atoms), 3, dtype=desc.dtype,
                                device=desc.device)
                d[a, k] = h
                if kind == "position":
                    fd = (energy(pos + d, cell) - energy(pos - d, cell)) / (2 * h)
                else:  # strain the cell with the atoms fixed in Cartesian space
                    fd = (energy(pos, cell + d) - energy(pos, cell - d)) / (2 * h)
                got, want = float(grad[a, k]), float(fd)
                tol = self.fd_rtol * abs(want) + rounding
                assert abs(got - want) <= tol, (
                    f"∂E/∂{kind}[{a},{k}] of {atoms.get_chemical_formula()}: autograd {got:.10g}"
                    f", finite differences {want:.10g} (tolerance {tol:.3g})")

    def test_pair_jacobian_gives_the_autograd_gradient(self) -> None:
        """:meth:`pair_jacobian` gives the features and the autograd gradients."""
        desc = self.descriptor(torch.float64)
        images = self.structures()[:2]
        b = batch_atoms(images, desc.dtype, desc.device)
        rng = np.random.default_rng(self.seed)
        dedg = torch.as_tensor(rng.normal(size=(len(b.numbers), desc.n_features)),
                               dtype=desc.dtype, device=desc.device)
        pos = b.positions.clone().requires_grad_(True)
        cells = b.cells.clone().requires_grad_(True)
        g = desc.forward(pos, b.numbers, cells, b.pbc, b.structure)
        want_pos, want_cell = torch.autograd.grad((g * dedg).sum(), (pos, cells),
                                                  allow_unused=True)
        want_cell = torch.zeros_like(cells) if want_cell is None else want_cell
        g2, pairs, jac = desc.pair_jacobian(b.positions, b.numbers, b.cells, b.pbc, b.structure)
        assert jac.shape == (len(pairs.i), desc.n_features, 3), f"jac shape {tuple(jac.shape)}"
        self.assert_features_equal(g2, g.detach(), "pair_jacobian's features vs forward")
        got_pos, got_cell = pair_gradients(dedg, pairs.i, pairs.j, pairs.shift, jac,
                                           b.structure, len(images))
        for got, want, what in ((got_pos, want_pos, "positions"), (got_cell, want_cell, "cells")):
            scale = max(1.0, float(want.abs().max()))
            err = float((got - want).abs().max())
            assert err <= 1e-9 * scale, f"pair-Jacobian gradient in {what} off by {err:.3g}"

    def test_config_round_trip(self) -> None:
        """``config()`` is plain JSON and rebuilds an equal descriptor (also by from_config)."""
        desc = self.descriptor()
        config = desc.config()
        assert config["descriptor"] == desc.name
        assert json.loads(json.dumps(config)) == config, "config is JSON-serialisable as is"
        kwargs = {k: v for k, v in config.items() if k != "descriptor"}
        rebuilt = [type(desc)(**kwargs, dtype=desc.dtype)]
        if self.registered:
            rebuilt.append(from_config(config, dtype=desc.dtype))
        atoms = self.structures()[0]
        for other in rebuilt:
            assert type(other) is type(desc)
            assert other.config_hash == desc.config_hash, "same config, same hash"
            assert other.config() == config
            self.assert_features_equal(other.compute(atoms), desc.compute(atoms),
                                       "rebuilt from config", rtol=0)

    def test_pickle_round_trip(self) -> None:
        """A used descriptor pickles; the clone computes the same values."""
        desc = self.descriptor()
        atoms = self.structures()[0]
        ref = desc.compute(atoms)  # a used descriptor (caches, compiled kernels) pickles too
        clone = pickle.loads(pickle.dumps(desc))
        assert clone.config_hash == desc.config_hash
        assert clone.dtype == desc.dtype and clone.device == desc.device
        self.assert_features_equal(clone.compute(atoms), ref, "unpickled", rtol=0)

    def test_thread_safety(self) -> None:
        """Two threads at once give the single-threaded result; thread count restored."""
        desc = self.descriptor()
        images = self.structures()
        ref = [desc.compute(a) for a in images]
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(desc.compute, images + images[::-1]))
        for got, want in zip(results, ref + ref[::-1], strict=True):
            self.assert_features_equal(got, want, "computed from two threads at once")
        threads = torch.get_num_threads()
        workers = desc.compute(images, batch_size=1, n_workers=2)
        assert torch.get_num_threads() == threads, "torch's thread count is restored"
        self.assert_features_equal(workers, torch.cat(ref), "n_workers=2 vs one stream")

    def test_float32_agrees_with_float64(self) -> None:
        """float32 agrees with float64 to ``float32_rtol``, with the same config hash."""
        d64, d32 = self.descriptor(torch.float64), self.descriptor(torch.float32)
        assert d32.dtype == torch.float32 and d32.config_hash == d64.config_hash
        for atoms in self.structures():
            g32 = d32.compute(atoms)
            assert g32.dtype == torch.float32
            self.assert_features_equal(g32, d64.compute(atoms), "float32 vs float64",
                                       rtol=self.float32_rtol)
