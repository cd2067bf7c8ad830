"""A torch ``Dataset`` of labelled structures with their descriptors, and its ``collate``.

Descriptors (and, for force training, their sparse Jacobian with respect to the neighbour
pair vectors, see :meth:`pesdata.descriptors.Descriptor.pair_jacobian`) are computed
once when the dataset is built — or read from the store's Zarr cache when it holds them and
no Jacobian is needed — so an epoch costs only the network. :func:`collate` batches
structures into flat per-atom tensors with a ``structure`` index per atom.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import ase
import numpy as np
import torch

from .._where import structure_name
from ..descriptors import Descriptor, batch_atoms
from ..errors import ArtefactNotFound, ParameterError

__all__ = ["StructureDataset", "collate", "take_structures"]


def _labels(atoms: ase.Atoms, k: int) -> tuple[float, np.ndarray | None]:
    results = atoms.calc.results if atoms.calc is not None else {}
    if "energy" not in results:
        raise ParameterError(f"{structure_name(atoms, k)} has no energy label")
    forces = results.get("forces")
    if forces is not None and np.shape(forces) != (len(atoms), 3):
        raise ParameterError(
            f"{structure_name(atoms, k)}: forces of shape {np.shape(forces)}, "
            f"not ({len(atoms)}, 3)"
        )
    return float(results["energy"]), None if forces is None else np.asarray(forces, float)


def take_structures(snap, rows: Sequence[int]) -> list[ase.Atoms]:
    """Rows ``rows`` of a version as ase.Atoms, each with ``info["source"]`` (its file#frame).

    Messages about a structure (:func:`pesdata._where.structure_name`) then say where it came
    from, not only its position in a training list.

    Parameters
    ----------
    snap : Snapshot
        A store version.
    rows : sequence of int
        Row indices in the version.

    Returns
    -------
    list of ase.Atoms
        As :meth:`Snapshot.take` gives them, with ``info["source"]`` set.
    """
    images = snap.take(rows)
    sources = snap.table(columns=["source"]).column("source").take(rows).to_pylist()
    for atoms, source in zip(images, sources, strict=True):
        if source and "source" not in atoms.info:
            atoms.info["source"] = source
    return images


class StructureDataset(torch.utils.data.Dataset):
    """Labelled structures with precomputed descriptors, one item per structure.

    Parameters
    ----------
    images : sequence of ase.Atoms
        Structures with an energy label (forces optional; structures without are masked
        out of the force loss).
    descriptor : Descriptor
        ACSF or PTSD; its species must cover the structures' elements.
    jacobian : bool
        Also compute the pair Jacobian of the descriptors (needed to train on forces).
    dtype : torch.dtype
        Dtype of the stored features and Jacobian (descriptors are computed in the
        descriptor's own dtype, float64 by default, then cast).
    features : array (n_atoms_total, F), optional
        Precomputed descriptors in the images' atom order (e.g. from the Zarr cache); only
        used when ``jacobian`` is false.
    batch_size, n_workers : int
        Structures per descriptor batch and worker threads (default: torch's thread count).
    progress : callable, optional
        Called with the number of structures finished after each batch.
    """

    def __init__(
        self,
        images: Sequence[ase.Atoms],
        descriptor: Descriptor,
        *,
        jacobian: bool = False,
        dtype: torch.dtype = torch.float32,
        features: np.ndarray | None = None,
        batch_size: int = 8,
        n_workers: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        images = list(images)
        if not images:
            raise ParameterError("no structures to build a dataset from")
        self.descriptor, self.dtype, self.has_jacobian = descriptor, dtype, jacobian
        labels = [_labels(a, k) for k, a in enumerate(images)]
        n = np.array([len(a) for a in images], dtype=np.int64)
        self.atom_offsets = np.concatenate([[0], np.cumsum(n)])
        self.n_atoms = torch.as_tensor(n)
        self.energy = torch.tensor([e for e, _ in labels], dtype=torch.float64)
        descriptor.check_species(images)  # names the structure, not only the element
        numbers = np.concatenate([a.numbers for a in images])
        self.types = descriptor.species_index(torch.as_tensor(numbers))
        forces = [f if f is not None else np.full((len(a), 3), np.nan) for a, (_, f) in
                  zip(images, labels, strict=True)]
        self.forces = torch.as_tensor(np.concatenate(forces), dtype=dtype)
        self.force_mask = torch.as_tensor(np.repeat([f is not None for _, f in labels], n))
        if features is not None and not jacobian:
            if features.shape != (int(n.sum()), descriptor.n_features):
                raise ParameterError(
                    f"features of shape {features.shape} do not match the structures "
                    f"({int(n.sum())} atoms × {descriptor.n_features} features)"
                )
            self.g = torch.as_tensor(features, dtype=dtype)
            self.pair_offsets = np.zeros(len(images) + 1, dtype=np.int64)
            return
        self._compute(images, batch_size, n_workers, progress)

    def _compute(self, images, batch_size, n_workers, progress) -> None:
        d = self.descriptor
        batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]

        def work(batch):
            b = batch_atoms(batch, d.dtype, d.device)
            if not self.has_jacobian:
                with torch.no_grad():
                    g = d.forward(b.positions, b.numbers, b.cells, b.pbc, b.structure)
                return g.to("cpu", self.dtype), None
            g, pairs, jac = d.pair_jacobian(b.positions, b.numbers, b.cells, b.pbc, b.structure)
            # pairs come per structure in order; make i, j local to their structure
            start = torch.as_tensor(np.concatenate([[0], np.cumsum([len(a) for a in batch])]))
            s = b.structure.cpu()[pairs.i.cpu()]
            counts = torch.bincount(s, minlength=len(batch))
            local = torch.stack([pairs.i.cpu() - start[s], pairs.j.cpu() - start[s]])
            return g.to("cpu", self.dtype), (local, counts, jac.to("cpu", self.dtype))

        workers = torch.get_num_threads() if n_workers is None else n_workers
        threads = torch.get_num_threads()
        parts = []
        if workers > 1 and len(batches) > 1 and d.device.type == "cpu":
            torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                for k, part in enumerate(pool.map(work, batches)):
                    parts.append(part)
                    if progress is not None:
                        progress(min((k + 1) * batch_size, len(images)))
        finally:
            torch.set_num_threads(threads)
        self.g = torch.cat([g for g, _ in parts])
        if self.has_jacobian:
            self.pair_local = torch.cat([p[0] for _, p in parts], dim=1)
            counts = torch.cat([p[1] for _, p in parts]).numpy()
            self.pair_offsets = np.concatenate([[0], np.cumsum(counts)])
            self.jac = torch.cat([p[2] for _, p in parts])
        else:
            self.pair_offsets = np.zeros(len(images) + 1, dtype=np.int64)

    @classmethod
    def from_store(
        cls,
        store,
        descriptor: Descriptor,
        version: int | str | None = None,
        ids: Sequence[str] | None = None,
        **kwargs,
    ) -> StructureDataset:
        """Labelled structures of a version (optionally only ``ids``, e.g. a split part).

        Without ``jacobian=True`` the descriptors are read from the store's Zarr cache when
        ``pesdata describe`` has filled it for this descriptor, else computed. A cache that
        is there but damaged raises :class:`~pesdata.errors.StoreCorruptError` (it is never
        recomputed silently: run ``pesdata describe`` again, or remove it).
        """
        from ..descriptors import load_descriptors

        snap = store.read(version)
        position = {i: k for k, i in enumerate(snap.ids)}
        try:
            rows = [position[i] for i in (snap.ids if ids is None else ids)]
        except KeyError as exc:
            raise ParameterError(
                f"id {exc.args[0]!r:.200} is not in version {snap.version}") from exc
        images = take_structures(snap, rows)
        keep = [k for k, a in enumerate(images)
                if a.calc is not None and "energy" in a.calc.results]
        if not keep:
            raise ParameterError(
                f"version {snap.version} has no labelled structures to train on")
        images = [images[k] for k in keep]
        if not kwargs.get("jacobian") and kwargs.get("features") is None:
            try:
                cached = load_descriptors(store, descriptor, snap.version)
            except ArtefactNotFound:  # not (all) described yet: compute them below
                cached = None  # a damaged cache (StoreCorruptError) is an error, not a miss
            if cached is not None:
                counts = np.bincount(cached["structure"], minlength=len(snap))
                offsets = np.concatenate([[0], np.cumsum(counts)])
                chosen = [rows[k] for k in keep]
                kwargs["features"] = np.concatenate(
                    [cached["features"][offsets[r] : offsets[r + 1]] for r in chosen]
                )
        return cls(images, descriptor, **kwargs)

    def __len__(self) -> int:
        return len(self.energy)

    def __getitem__(self, k: int) -> dict:
        a, b = int(self.atom_offsets[k]), int(self.atom_offsets[k + 1])
        item = {
            "g": self.g[a:b],
            "types": self.types[a:b],
            "energy": self.energy[k],
            "n_atoms": self.n_atoms[k],
            "forces": self.forces[a:b],
            "force_mask": self.force_mask[a:b],
        }
        if self.has_jacobian:
            p, q = int(self.pair_offsets[k]), int(self.pair_offsets[k + 1])
            item["pairs"] = self.pair_local[:, p:q]
            item["jac"] = self.jac[p:q]
        return item

    def stats(self, idx=None) -> dict:
        """Per-element feature mean and std, and least-squares per-element energies, over the
        structures ``idx`` (default: all) — the training part only, so nothing leaks."""
        n_el, f = len(self.descriptor.species), self.descriptor.n_features
        idx = np.arange(len(self)) if idx is None else np.asarray(idx, dtype=np.int64)
        off = self.atom_offsets
        rows_of = [np.arange(off[k], off[k + 1]) for k in idx]
        atoms = torch.as_tensor(np.concatenate(rows_of) if rows_of else np.zeros(0, np.int64))
        g, types = self.g[atoms].to(torch.float64), self.types[atoms]
        energy, n_atoms = self.energy[idx], self.n_atoms[idx]
        mean = torch.zeros(n_el, f, dtype=torch.float64)
        std = torch.ones(n_el, f, dtype=torch.float64)
        for e in range(n_el):
            rows = g[types == e]
            if len(rows):
                mean[e] = rows.mean(0)
                sd = rows.std(0, unbiased=False) if len(rows) > 1 else torch.zeros(f)
                std[e] = torch.where(sd > 1e-8, sd, torch.ones_like(sd))
        structure = torch.repeat_interleave(torch.arange(len(idx)), n_atoms)
        counts = torch.zeros(len(idx), n_el, dtype=torch.float64)
        counts.index_put_((structure, types), torch.ones(len(structure), dtype=torch.float64),
                          accumulate=True)
        ref = torch.linalg.lstsq(counts, energy[:, None], driver="gelsd").solution[:, 0]
        residual = (energy - counts @ ref) / n_atoms
        return {"mean": mean, "std": std, "ref": ref,
                "scale": float(residual.std()) if len(idx) > 1 else 1.0}


def collate(items: list[dict]) -> dict:
    """Batch dataset items into flat per-atom tensors (``structure`` indexes each atom)."""
    n = torch.stack([it["n_atoms"] for it in items])
    out = {
        "g": torch.cat([it["g"] for it in items]),
        "types": torch.cat([it["types"] for it in items]),
        "energy": torch.stack([it["energy"] for it in items]),
        "n_atoms": n,
        "forces": torch.cat([it["forces"] for it in items]),
        "force_mask": torch.cat([it["force_mask"] for it in items]),
        "structure": torch.repeat_interleave(torch.arange(len(items)), n),
    }
    if "jac" in items[0]:
        starts = torch.cumsum(n, 0) - n
        out["pairs"] = torch.cat([it["pairs"] + s for it, s in zip(items, starts, strict=True)], 1)
        out["jac"] = torch.cat([it["jac"] for it in items])
    return out
