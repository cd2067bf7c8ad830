"""Synthetic EMT-labelled Cu/Au cells for ``bench_scale.py``, generated once and cached.

Each *base* structure is a 4-atom cubic fcc cell with a random Cu/Au occupation, a lattice
constant from Vegard's law between Cu (3.61 Å) and Au (4.08 Å) strained by ±3 % per axis, atoms
rattled by 0.1 Å (normal), labelled by ASE's EMT (energy, forces, stress). Bases are distinct
(seeded by their index). Beyond ``--bases`` frames, frame ``g`` is base ``g mod B`` rigidly
translated by a seeded random vector: a distinct geometry (its content hash differs) whose EMT
labels are the base's exactly (EMT is translation invariant), so a million labelled frames cost
``B`` EMT calls — the EMT labelling (~2–4 ms per cell here) would otherwise take about an hour
per million. Frames are written in files of :data:`PER_FILE` frames (extended XYZ, every float
in ``repr`` form), frames ``[0, B)`` first, so the first ``B`` frames are all distinct bases.

Cache: ``$PESDATA_BENCH_CACHE`` or ``~/.cache/pesdata/bench_scale`` (outside the repository),
one directory per number of bases with a ``done.json`` (how many frames its files hold) written
last; an interrupted or shorter generation is completed on the next call, file by file (each
file is written to a temporary name and renamed).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np

PER_FILE = 2_000
A_CU, A_AU = 3.61, 4.08
_FRAC = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])


def cache_dir(bases: int) -> Path:
    root = Path(os.environ.get("PESDATA_BENCH_CACHE", Path.home() / ".cache/pesdata/bench_scale"))
    return root / f"cuau-b{bases}"


def base_structure(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Numbers, positions, cell of base ``i`` (seeded by ``i``)."""
    rng = np.random.default_rng([20261130, i])
    numbers = rng.choice(np.array([29, 79]), 4)
    x_au = float(np.mean(numbers == 79))
    a = (A_CU + (A_AU - A_CU) * x_au) * (1 + rng.uniform(-0.03, 0.03, 3))
    cell = np.diag(a)
    positions = _FRAC @ cell + rng.normal(0, 0.1, (4, 3))
    return numbers, positions, cell


def label_bases(start: int, stop: int) -> dict:
    """EMT energy, forces and 3×3 stress of bases ``[start, stop)``."""
    from ase import Atoms
    from ase.calculators.emt import EMT

    calc = EMT()
    energy = np.empty(stop - start)
    forces = np.empty((stop - start, 4, 3))
    stress = np.empty((stop - start, 3, 3))
    for k, i in enumerate(range(start, stop)):
        numbers, positions, cell = base_structure(i)
        atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=True)
        atoms.calc = calc
        energy[k] = atoms.get_potential_energy()
        forces[k] = atoms.get_forces()
        stress[k] = atoms.get_stress(voigt=False)
    return {"energy": energy, "forces": forces, "stress": stress}


def _fmt(x: np.ndarray) -> str:
    return " ".join(repr(float(v)) for v in np.ravel(x))


def _write_file(path: Path, first: int, count: int, bases: int, labels_path: Path) -> None:
    with np.load(labels_path) as z:
        labels = {k: z[k] for k in z.files}
    symbols = {29: "Cu", 79: "Au"}
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        for g in range(first, first + count):
            i = g % bases
            numbers, positions, cell = base_structure(i)
            if g >= bases:  # a rigid translation of base i: same EMT labels
                positions = positions + np.random.default_rng([7, g]).uniform(-5, 5, 3)
            f = labels["forces"][i]
            fh.write(
                f"4\nLattice=\"{_fmt(cell)}\" Properties=species:S:1:pos:R:3:forces:R:3 "
                f"energy={float(labels['energy'][i])!r} stress=\"{_fmt(labels['stress'][i])}\" "
                f"config_type=cuau-{'base' if g < bases else 'shifted'} "
                f"pbc=\"T T T\"\n")
            for z, p, fa in zip(numbers, positions, f, strict=True):
                fh.write(f"{symbols[int(z)]} {_fmt(p)} {_fmt(fa)}\n")
    os.replace(tmp, path)


def generate(frames: int, bases: int, jobs: int = 2, log=print) -> list[Path]:
    """The cached files holding (at least) the first ``frames`` frames built on ``bases`` bases,
    whole files of :data:`PER_FILE` frames; missing files are generated."""
    root = cache_dir(bases)
    files = [root / f"frames-{k:05d}.extxyz" for k in range(-(-frames // PER_FILE))]
    done = root / "done.json"
    if done.exists() and json.loads(done.read_text())["frames"] >= len(files) * PER_FILE:
        return files
    root.mkdir(parents=True, exist_ok=True)
    labels_path = root / "labels.npz"
    if not labels_path.exists():
        log(f"labelling {bases:,} bases with EMT on {jobs} processes ...")
        chunks = [(s, min(s + 5_000, bases)) for s in range(0, bases, 5_000)]
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            parts = pool.starmap(label_bases, chunks)
        labels = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        tmp = root / "labels.tmp.npz"
        np.savez(tmp, **labels)
        os.replace(tmp, labels_path)
    todo = [(f, k * PER_FILE) for k, f in enumerate(files) if not f.exists()]
    log(f"writing {len(todo)} of {len(files)} files under {root} ...")
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        pool.starmap(_write_file, [(p, first, PER_FILE, bases, labels_path) for p, first in todo])
    done.write_text(json.dumps({"frames": len(files) * PER_FILE, "bases": bases,
                                "per_file": PER_FILE}))
    return files
