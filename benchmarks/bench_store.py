"""Benchmark pesdata against plain ASE on the mlearn Cu training set, replicated.

Fixtures (not timed): the 262 frames of ``Cu_train_acedata.xyz`` (27,416 atoms; per-atom
``force`` and the energy become a SinglePointCalculator) are copied until the total reaches
``--min-atoms``; copy ``k`` is rattled by 0.01 Å (seed ``k``) so every structure is distinct for
the content-hash dedup. The copies go to one extxyz file and to an ASE sqlite database (one
transaction).

Measured, each as the median of ``--repeats`` timed runs after one untimed warm-up
(``time.perf_counter``; page cache warm for every contender):

1. read a whole version into numpy (positions + forces): ``store.read().to_arrays(...)``
   (opening the Snapshot is timed) vs ``ase.db`` ``connect().select()`` of every row vs
   ``ase.io.read(extxyz, ":")``, each concatenated into (N, 3) arrays. Bar: pesdata ≥ 20× ase.db
   in atoms/s.
2. random batch of 256 structures (fresh Snapshot per batch, ``--batches`` batches with
   different seeds per run, the same indices on both sides, one held sqlite connection for
   ase.db — its fastest path): as arrays for training code, ``snap.take_arrays(idx)`` (numbers,
   positions, forces, energy, cell, pbc) vs ``db.get(id=i + 1)`` rows with those attributes
   read — bar ≥ 10×; the same batches from ``snap.cache_arrays()`` (the version read into memory
   once per run, load time reported; read once, gather many, as training does) — same bar; and as
   ``ase.Atoms``, ``snap.take(idx)`` vs ``db.get(...).toatoms()``
   (reported, no bar: building 256 ``ase.Atoms`` with a calculator alone costs ~15 ms here).
3. ingest: ``store.curate([extxyz], method="PBE")`` into a fresh store (parse, validate, dedup,
   commit) vs ``ase.io.read(extxyz, ":")`` alone. Bar: curate ≤ 1.5× the read.

Timings never fail the script; the table prints PASS/FAIL per bar and the results are also
written to ``<out>/bench_store.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import ase
import ase.db
import ase.io
import lance
import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator

import pesdata

DATA = Path(__file__).resolve().parents[1].parent / "shared/data/mlearn/Cu_train_acedata.xyz"
BATCH = 256


def machine_info() -> str:
    return (
        f"nproc={os.cpu_count()} python={platform.python_version()} "
        f"platform={platform.platform()} pesdata={pesdata.__version__} "
        f"lance={lance.__version__} ase={ase.__version__} numpy={np.__version__}"
    )


def build_fixtures(out: Path, min_atoms: int) -> tuple[Path, Path, int, int]:
    """Replicated extxyz file and ASE database; returns their paths, structures and atoms."""
    base = ase.io.read(DATA, ":")
    for atoms in base:
        forces = atoms.arrays.pop("force")
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(),
                                           forces=forces)
    per_copy = sum(len(a) for a in base)
    n_copies = -(-min_atoms // per_copy)
    frames = []
    for k in range(n_copies):
        for atoms in base:
            new = atoms.copy()
            new.rattle(stdev=0.01, seed=k)
            new.calc = SinglePointCalculator(new, **atoms.calc.results)
            frames.append(new)
    xyz, db_path = out / "cu_replicated.extxyz", out / "cu_replicated.db"
    for p in (xyz, db_path):
        p.unlink(missing_ok=True)
    ase.io.write(xyz, frames, format="extxyz")
    db = ase.db.connect(db_path)
    with db:
        for atoms in frames:
            db.write(atoms)
    return xyz, db_path, len(frames), per_copy * n_copies


def timed(fn, repeats: int, setup=None) -> list[float]:
    """Wall times of ``fn(setup())`` after one untimed warm-up; setup is not timed."""
    times = []
    for i in range(repeats + 1):
        arg = setup() if setup else None
        t0 = time.perf_counter()
        fn(arg)
        dt = time.perf_counter() - t0
        if i:
            times.append(dt)
    return times


def concat(atoms_list) -> tuple[np.ndarray, np.ndarray]:
    pos = np.concatenate([a.positions for a in atoms_list])
    frc = np.concatenate([a.calc.results["forces"] for a in atoms_list])
    return pos, frc


def bench_ingest(xyz: Path, out: Path, repeats: int) -> tuple[dict, Path]:
    stores = []

    def fresh():
        path = out / f"store-{len(stores)}"
        shutil.rmtree(path, ignore_errors=True)
        stores.append(path)
        return pesdata.open_store(path, create=True)

    reports = []
    t_cur = timed(lambda s: reports.append(s.curate([xyz], method="PBE")), repeats, fresh)
    t_read = timed(lambda _: ase.io.read(xyz, ":"), repeats)
    for p in stores[:-1]:
        shutil.rmtree(p, ignore_errors=True)
    return {"curate_s": t_cur, "ase_io_read_s": t_read, "added": reports[-1].added}, stores[-1]


def bench_read(store, db_path: Path, xyz: Path, repeats: int, n_atoms: int) -> dict:
    def pes(snap):
        a = snap.to_arrays(columns=("positions", "forces"))
        assert a["positions"].shape == (n_atoms, 3) and a["forces"].shape == (n_atoms, 3)

    def adb(_):
        pos, frc = [], []
        for row in ase.db.connect(db_path).select():
            pos.append(row.positions)
            frc.append(row.forces)
        pos, frc = np.concatenate(pos), np.concatenate(frc)
        assert pos.shape == (n_atoms, 3) and frc.shape == (n_atoms, 3)

    return {
        "pesdata_s": timed(lambda _: pes(store.read()), repeats),
        "ase_db_s": timed(adb, repeats),
        "ase_io_read_s": timed(lambda _: concat(ase.io.read(xyz, ":")), repeats),
    }


def bench_take(store, db_path: Path, repeats: int, n_batches: int) -> dict:
    snap = store.read()
    n = len(snap)
    batches = [np.random.default_rng(s).choice(n, BATCH, replace=False) for s in range(n_batches)]
    # rows of a version need not follow file order: map row -> frame (database id - 1) by source
    sources = snap.table(["source"]).column("source").to_pylist()
    frame = np.array([int(s.rsplit("#", 1)[1]) for s in sources])
    db = ase.db.connect(db_path)
    idx = batches[0][:8]  # untimed check that both sides return the same structures
    for a, i in zip(snap.take(idx), idx, strict=True):
        assert np.allclose(a.positions, db.get(id=int(frame[i]) + 1).positions, atol=1e-6)

    res: dict[str, list] = {
        "pesdata_arrays_ms": [], "ase_db_rows_ms": [], "pesdata_atoms_ms": [],
        "ase_db_atoms_ms": [], "pesdata_cached_ms": [], "cache_load_ms": [],
    }
    for _ in range(repeats + 1):
        run = {k: [] for k in res}
        t0 = time.perf_counter()
        cache = store.read().cache_arrays()  # once per run: the training-loop path
        run["cache_load_ms"].append(1e3 * (time.perf_counter() - t0))
        for idx in batches:
            snap = store.read()
            t0 = time.perf_counter()
            arrays = snap.take_arrays(idx)  # numbers, positions, forces, energy, cell, pbc
            run["pesdata_arrays_ms"].append(1e3 * (time.perf_counter() - t0))
            assert len(arrays["energy"]) == BATCH
            t0 = time.perf_counter()
            cached = cache.take(idx)
            run["pesdata_cached_ms"].append(1e3 * (time.perf_counter() - t0))
            assert np.array_equal(cached["positions"], arrays["positions"])
            with db:
                t0 = time.perf_counter()
                rows = [db.get(id=int(i) + 1) for i in frame[idx]]
                _ = [(r.numbers, r.positions, r.forces, r.energy, r.cell, r.pbc) for r in rows]
                run["ase_db_rows_ms"].append(1e3 * (time.perf_counter() - t0))
            snap = store.read()
            t0 = time.perf_counter()
            atoms = snap.take(idx)
            run["pesdata_atoms_ms"].append(1e3 * (time.perf_counter() - t0))
            assert len(atoms) == BATCH
            with db:
                t0 = time.perf_counter()
                atoms = [db.get(id=int(i) + 1).toatoms() for i in frame[idx]]
                run["ase_db_atoms_ms"].append(1e3 * (time.perf_counter() - t0))
        if _:  # first pass is the warm-up
            for k in res:
                res[k].extend(run[k])
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-atoms", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", type=int, default=5, help="random batches per repeat")
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    print(info)
    t0 = time.perf_counter()
    xyz, db_path, n_struct, n_atoms = build_fixtures(args.out, args.min_atoms)
    print(f"fixtures: {n_struct} structures, {n_atoms} atoms "
          f"({time.perf_counter() - t0:.1f} s, not timed); median of {args.repeats} runs")

    ingest, store_path = bench_ingest(xyz, args.out, args.repeats)
    store = pesdata.open_store(store_path)
    read = bench_read(store, db_path, xyz, args.repeats, n_atoms)
    take = bench_take(store, db_path, args.repeats, args.batches)
    med = statistics.median

    r_pes, r_db, r_io = (n_atoms / med(read[k]) for k in read)
    t_arr, t_dbr, t_take, t_db, t_cached, t_load = (med(take[k]) for k in take)
    c_cur, c_read = med(ingest["curate_s"]), med(ingest["ase_io_read_s"])
    rw, ig = "read → numpy, atoms/s", "ingest (curate), s"
    tk, ta = "take 256 → numpy, ms/batch", "take 256 → Atoms, ms/batch"
    dbg = f"ase.db get+toatoms {t_db:.2f}"
    rows = [  # what, pesdata, anchor, ratio, bar, pass (None: no bar)
        (rw, f"{r_pes:,.0f}", f"ase.db {r_db:,.0f}", r_pes / r_db, "≥ 20×", r_pes / r_db >= 20),
        (rw, f"{r_pes:,.0f}", f"ase.io.read {r_io:,.0f}", r_pes / r_io, "—", None),
        (tk, f"{t_arr:.2f}", f"ase.db get {t_dbr:.2f}", t_dbr / t_arr, "≥ 10×",
         t_dbr / t_arr >= 10),
        (f"{tk}, in-memory cache (loaded once: {t_load:.0f} ms)", f"{t_cached:.3f}",
         f"ase.db get {t_dbr:.2f}", t_dbr / t_cached, "≥ 10×", t_dbr / t_cached >= 10),
        (ta, f"{t_take:.2f}", dbg, t_db / t_take, "—", None),
        (ig, f"{c_cur:.3f}", f"ase.io.read {c_read:.3f}", c_cur / c_read, "≤ 1.5×",
         c_cur / c_read <= 1.5),
    ]
    head = ("what", "pesdata", "anchor", "ratio", "bar", "result")
    table = [head] + [
        (w, p, a, f"{r:.1f}×" if r >= 10 else f"{r:.2f}×", b,
         "—" if ok is None else ("PASS" if ok else "FAIL"))
        for w, p, a, r, b, ok in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for j, r in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
    print("ratios: read and take = pesdata speed-up; ingest = curate time / ase.io.read time")

    result = {
        "machine": info, "argv": sys.argv[1:], "statistic": "median",
        "repeats": args.repeats, "batches": args.batches, "batch_size": BATCH,
        "n_structures": n_struct, "n_atoms": n_atoms, "curate_added": ingest["added"],
        "times": {"ingest": ingest, "read": read, "take": take},
        "table": [
            {"what": w, "pesdata": p, "anchor": a, "ratio": r, "bar": b, "pass": ok}
            for w, p, a, r, b, ok in rows
        ],
    }
    (args.out / "bench_store.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"results: {args.out / 'bench_store.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
