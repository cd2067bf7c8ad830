"""The :class:`Descriptor` base class and shared pieces: batching ase.Atoms, species, hashing."""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import ase
import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols

from .._params import check_int
from .._where import structure_name
from ..errors import ParameterError, SchemaError
from ._neighbors import Pairs, neighbor_pairs
from .jacobian import autograd_jacobian

__all__ = [
    "Batch", "Descriptor", "batch_atoms", "config_hash", "check_device", "species_numbers",
]


def species_numbers(species: Sequence[str | int]) -> list[int]:
    """Sorted, unique atomic numbers of ``species`` (symbols or numbers).

    Raises
    ------
    ParameterError
        An unknown symbol or atomic number, or no element at all.
    """
    out = set()
    for s in species:
        if isinstance(s, str):
            if s not in atomic_numbers:
                raise ParameterError(f"unknown chemical symbol {s!r} in species")
            out.add(atomic_numbers[s])
        else:
            try:
                z = int(s)
            except (TypeError, ValueError) as exc:
                raise ParameterError(
                    f"species entries are symbols or atomic numbers, got {s!r:.200}") from exc
            if not 1 <= z < len(chemical_symbols):
                raise ParameterError(f"unknown atomic number {s!r} in species")
            out.add(z)
    if not out:
        raise ParameterError(f"species must name at least one element, got {species!r:.200}")
    return sorted(out)


def config_hash(config: dict) -> str:
    """Stable hash of a JSON-serialisable descriptor config (sorted keys, 16 hex digits)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class Batch:
    """Flat tensors of a batch of structures (positions, numbers, cells, pbc, structure)."""

    def __init__(self, positions, numbers, cells, pbc, structure):
        self.positions = positions
        self.numbers = numbers
        self.cells = cells
        self.pbc = pbc
        self.structure = structure


def batch_atoms(
    atoms: ase.Atoms | Sequence[ase.Atoms], dtype: torch.dtype, device: str | torch.device
) -> Batch:
    """Flatten one or many ``ase.Atoms`` into a :class:`Batch`."""
    images = [atoms] if isinstance(atoms, ase.Atoms) else list(atoms)
    n = np.array([len(a) for a in images], dtype=np.int64)
    return Batch(
        positions=torch.as_tensor(
            np.concatenate([a.positions for a in images]) if images else np.zeros((0, 3)),
            dtype=dtype, device=device,
        ),
        numbers=torch.as_tensor(
            np.concatenate([a.numbers for a in images]) if images else np.zeros(0, np.int64),
            dtype=torch.long, device=device,
        ),
        cells=torch.as_tensor(
            np.array([a.cell.array for a in images]).reshape(-1, 3, 3), dtype=dtype,
            device=device,
        ),
        pbc=torch.as_tensor(np.array([a.pbc for a in images]).reshape(-1, 3), device=device),
        structure=torch.as_tensor(np.repeat(np.arange(len(images)), n), device=device),
    )


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device: "cpu", or "cuda[:k]" where torch has CUDA.

    Anything else is a :class:`~pesdata.errors.ParameterError` quoting the argument.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ParameterError(
            f"unknown device {str(device)[:200]!r}; use 'cpu' or 'cuda[:k]'") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ParameterError(f"device {str(device)!r} is not supported; use 'cpu' or 'cuda[:k]'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"device {str(device)!r} requested, but torch has no CUDA here")
    return dev


class Descriptor:
    """Base class of per-atom descriptors: subclass it to write your own.

    The base class does everything around the physics: it checks and stores ``species``,
    ``r_cut``, ``dtype`` and ``device``; builds the neighbour lists (vesin) and the pair vectors
    ``vec_p = r_j − r_i + shift`` (differentiable in positions and cells, so forces and stress
    come by autograd); batches ``ase.Atoms`` (:meth:`compute`, threaded on CPU); hashes the
    config; maps elements to species indices (:meth:`species_index`); and gives the sparse pair
    Jacobian (:meth:`pair_jacobian`) used by force training.

    A subclass provides
    -------------------
    name : str (class attribute)
        Short lower-case name, e.g. ``"acsf"``; it is the ``"descriptor"`` field of the config.
    __init__(species, r_cut, ..., dtype=torch.float64, device="cpu", compile=None)
        Calls ``super().__init__(species, r_cut, dtype, device, compile)``, stores its own
        parameters (validated: bad values raise :class:`~pesdata.errors.ParameterError`
        quoting them) and sets ``self.n_features`` (int).
    config() -> dict
        JSON-serialisable configuration with ``"descriptor": name``, ``species``, ``r_cut``
        and every parameter that changes the values — exactly what the config hash (and so
        the descriptor cache) covers; ``type(d)(**{k: v for k, v in d.config().items() if
        k != "descriptor"})`` must rebuild an equal descriptor.
    feature_names : property -> list[str]
        One name per feature column, in output order (length ``n_features``).
    from_pairs(vec, center, tj, n_atoms) -> tensor (n_atoms, n_features)
        The features from the pair vectors of a full neighbour list (every ordered pair
        within ``r_cut``, periodic images included): ``vec`` (P, 3), ``center`` (P,) the
        index i of each pair's central atom, ``tj`` (P,) the species index (position in
        ``self.species``) of its neighbour j. Use torch operations only, in ``vec``'s
        dtype and device, so autograd differentiates it. Atom i's features must depend on
        its own pairs only (``center == i``), and be invariant to rotations of ``vec`` and to
        the order of the pairs.

    and optionally
    --------------
    _jacobian(vec, center, tj, n_atoms) -> (g, jac)
        The features and their pair Jacobian (P, n_features, 3). The default differentiates
        :meth:`from_pairs` once per feature (:func:`pesdata.descriptors.jacobian.
        autograd_jacobian`); a faster per-term version uses the helpers of
        :mod:`pesdata.descriptors.jacobian`.

    Check a new descriptor with the contract tests of :class:`pesdata.testing.DescriptorTests`
    (invariances, batching, finite differences, pickling, threads, precision).
    """

    name = ""
    n_features: int

    def __init__(
        self,
        species: Sequence[str | int],
        r_cut: float,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
        compile: bool | None = None,
    ) -> None:
        try:
            ok = bool(r_cut > 0) and math.isfinite(r_cut)
        except TypeError as exc:
            raise ParameterError(f"r_cut must be a positive number, got {r_cut!r:.200}") from exc
        if not ok:
            raise ParameterError(f"r_cut must be positive and finite, got {r_cut!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ParameterError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        self.species = species_numbers(species)
        self.r_cut = float(r_cut)
        self.dtype = dtype
        self.device = check_device(device)
        self.compile = os.environ.get("PESDATA_COMPILE") == "1" if compile is None else compile
        self._kernels: dict = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_kernels"] = {}  # compiled functions do not pickle; rebuilt on first use
        return state

    def _kernel(self, fn: Callable, needs_grad: bool) -> Callable:
        """``fn``, or ``fn`` fused by ``torch.compile`` when :attr:`compile` is on and no
        gradient is needed (compiled once per descriptor and method).

        When the compiled kernel raises, ``fn`` runs eagerly on the same arguments. If that
        succeeds, the compilation was at fault (no compiler, unsupported backend, ...): a
        warning says so and :attr:`compile` is switched off. If eager raises too, the error is
        the input's, not the compiler's: eager's error propagates, with no warning, and
        :attr:`compile` stays on.
        """
        if not self.compile or needs_grad:
            return fn
        name = fn.__name__
        if name not in self._kernels:
            compiled = torch.compile(fn, dynamic=True)

            def kernel(*args):
                if not self.compile:
                    return fn(*args)
                try:
                    return compiled(*args)
                except Exception as exc:  # compiler or input? the eager retry below tells
                    failure = exc
                out = fn(*args)  # a real error raises here, as it would without compile
                warnings.warn(f"{type(self).__name__}: torch.compile failed "
                              f"({type(failure).__name__}: {str(failure)[:200]}); using the "
                              "eager kernel", RuntimeWarning, stacklevel=2)
                self.compile = False
                return out

            self._kernels[name] = kernel
        return self._kernels[name]

    def config(self) -> dict:  # pragma: no cover - overridden
        raise NotImplementedError(f"{type(self).__name__} must define config()")

    @property
    def feature_names(self) -> list[str]:  # pragma: no cover - overridden
        """One name per feature column, in output order (subclasses define it)."""
        raise NotImplementedError(f"{type(self).__name__} must define feature_names")

    @property
    def config_hash(self) -> str:
        """Stable hash of :meth:`config` (dtype and device excluded)."""
        return config_hash(self.config())

    def species_index(self, numbers: torch.Tensor) -> torch.Tensor:
        """Position in :attr:`species` of every atom's element (the ``tj`` of :meth:`from_pairs`).

        Raises
        ------
        SchemaError
            An atomic number that is not among the descriptor's species (the message lists
            them).
        """
        if numbers.numel():
            bad = set(numbers.unique().tolist()) - set(self.species)
            if bad:
                raise SchemaError(
                    f"atomic number(s) {sorted(bad)} not in the descriptor's species "
                    f"{self.species}"
                )
        lookup = torch.full((max(self.species) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(self.species)] = torch.arange(len(self.species))
        return lookup.to(numbers.device)[numbers]

    def check_species(self, images: ase.Atoms | Sequence[ase.Atoms], start: int = 0) -> None:
        """Refuse structures with an element outside :attr:`species`, naming the first one.

        Parameters
        ----------
        images : ase.Atoms or sequence of ase.Atoms
            The structures.
        start : int
            Index of ``images[0]`` in the caller's list (so a batch names the structure by
            its position in the whole input).

        Raises
        ------
        SchemaError
            A structure holds an atomic number that is not among the species; the message
            names it (``structure k (source)``, the source being ``atoms.info["source"]``
            when present, e.g. ``file#frame``) and lists its unknown atomic numbers.
        """
        images = [images] if isinstance(images, ase.Atoms) else list(images)
        known = np.asarray(self.species)
        if not images or np.isin(np.concatenate([a.numbers for a in images]), known).all():
            return
        for k, atoms in enumerate(images):
            bad = np.setdiff1d(atoms.numbers, known)
            if bad.size:
                raise SchemaError(
                    f"{structure_name(atoms, start + k)}: atomic number(s) {bad.tolist()} "
                    f"not in the descriptor's species {self.species}")

    def compute(
        self,
        atoms: ase.Atoms | Sequence[ase.Atoms],
        batch_size: int = 32,
        n_workers: int | None = None,
    ) -> torch.Tensor:
        """Descriptors of one or many structures: (total atoms, n_features), input atom order.

        Lists longer than ``batch_size`` are cut into batches computed by ``n_workers``
        threads (default: torch's thread count), each with one intra-op thread — on CPU this
        beats one batch stream over all cores by ~30% (measured on 2 cores), because
        gathers, scatters and Python overhead run in parallel too. torch's global thread
        count is restored afterwards. Differentiation works either way.

        Parameters
        ----------
        atoms : ase.Atoms or sequence of ase.Atoms
            The structures.
        batch_size : int
            Structures per batch (a positive integer).
        n_workers : int, optional
            Threads computing batches on CPU (default: torch's thread count).

        Returns
        -------
        torch.Tensor
            (total atoms, :attr:`n_features`) in the descriptor's dtype and device, the
            structures' atoms in input order.

        Raises
        ------
        ParameterError
            ``batch_size`` is not a positive integer.
        SchemaError
            A structure holds an element outside :attr:`species` (the message names it, see
            :meth:`check_species`).
        """
        batch_size = check_int("batch_size", batch_size)
        images = [atoms] if isinstance(atoms, ase.Atoms) else list(atoms)
        starts = list(range(0, len(images), batch_size))
        batches = [images[i : i + batch_size] for i in starts]
        workers = torch.get_num_threads() if n_workers is None else n_workers
        if len(batches) <= 1 or workers <= 1 or self.device.type != "cpu":
            if not batches:
                return self._compute_batch([])
            return torch.cat([self._compute_batch(b, i)
                              for b, i in zip(batches, starts, strict=True)])
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                parts = list(pool.map(self._compute_batch, batches, starts))
        finally:
            torch.set_num_threads(threads)
        return torch.cat(parts)

    def _compute_batch(self, images: list[ase.Atoms], start: int = 0) -> torch.Tensor:
        self.check_species(images, start)
        b = batch_atoms(images, self.dtype, self.device)
        return self.forward(b.positions, b.numbers, b.cells, b.pbc, b.structure)

    def forward(
        self,
        positions: torch.Tensor,
        numbers: torch.Tensor,
        cells: torch.Tensor,
        pbc: torch.Tensor,
        structure: torch.Tensor,
    ) -> torch.Tensor:
        """Batched entry point on flat tensors; differentiable in ``positions`` and ``cells``.

        Parameters
        ----------
        positions : (N, 3), numbers : (N,), cells : (S, 3, 3), pbc : (S, 3),
        structure : (N,) structure index of each atom (contiguous per structure).
        """
        types = self.species_index(numbers.to(torch.long))
        pairs = neighbor_pairs(positions, cells, pbc, structure, self.r_cut)
        vec = pairs.vectors(positions, cells, structure)
        return self.from_pairs(vec, pairs.i, types[pairs.j], positions.shape[0])

    def from_pairs(
        self, vec: torch.Tensor, center: torch.Tensor, tj: torch.Tensor, n_atoms: int
    ) -> torch.Tensor:  # pragma: no cover - overridden
        """Features (n_atoms, n_features) from the pair vectors of a full neighbour list.

        ``vec`` (P, 3) holds r_j − r_i (+ image shift) of every ordered pair within the
        cutoff, ``center`` (P,) the index i and ``tj`` (P,) the species index of j. Atom i's
        features depend on the vectors of its own pairs only — which makes the Jacobian of
        the features sparse: see :meth:`pair_jacobian`.
        """
        raise NotImplementedError(f"{type(self).__name__} must define from_pairs()")

    def pair_jacobian(
        self,
        positions: torch.Tensor,
        numbers: torch.Tensor,
        cells: torch.Tensor,
        pbc: torch.Tensor,
        structure: torch.Tensor,
    ) -> tuple[torch.Tensor, Pairs, torch.Tensor]:
        """Features and their sparse Jacobian with respect to the pair vectors.

        With ``jac[p, f] = ∂g[i_p, f] / ∂vec_p`` and ``vec_p = r_j − r_i + shift``,
        ``∂E/∂r_j = Σ_{p: j_p=j} c_p − Σ_{p: i_p=j} c_p`` with
        ``c_p = Σ_f (∂E/∂g[i_p, f]) jac[p, f]``: force training without differentiating the
        descriptor again every step (as n2p2 and aenet store symmetry-function derivatives).
        ACSF and PTSD differentiate each sum's terms on their own (see
        :mod:`pesdata.descriptors.jacobian` for the layout and the method): about the cost
        of a few forward passes, whatever the number of features.

        Parameters
        ----------
        positions, numbers, cells, pbc, structure : torch.Tensor
            A flat batch, as for :meth:`forward` (see :func:`batch_atoms`).

        Returns
        -------
        g : torch.Tensor
            (N, F) features, as :meth:`forward` gives them.
        pairs : Pairs
            The neighbour list: ``i``, ``j`` (P,) and the image ``shift``.
        jac : torch.Tensor
            (P, F, 3) Jacobian of each pair's central-atom features in its pair vector.

        Raises
        ------
        SchemaError
            An atomic number outside :attr:`species`.
        """
        types = self.species_index(numbers.to(torch.long))
        with torch.no_grad():
            pairs = neighbor_pairs(positions, cells, pbc, structure, self.r_cut)
            vec = pairs.vectors(positions, cells, structure)
        n = positions.shape[0]
        with torch.enable_grad():
            g, jac = self._jacobian(vec, pairs.i, types[pairs.j], n)
        return g, pairs, jac

    def _jacobian(
        self, vec: torch.Tensor, center: torch.Tensor, tj: torch.Tensor, n_atoms: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(g, jac)`` for :meth:`pair_jacobian`; generic version: one backward per feature.

        Subclasses may override this with a per-term version (see
        :mod:`pesdata.descriptors.jacobian`), which avoids the F passes over the whole graph.
        """
        return autograd_jacobian(self.from_pairs, vec, center, tj, n_atoms, self.n_features)
