"""Descriptor throughput: pesdata's torch ACSF against dscribe's C++ ACSF, side by side.

Workload (issue 3): 500 rattled 64-atom diamond-Si cells (a = 5.43 Å, rattle 0.05 Å, seed k),
rc = 6 Å, 8 G2 rows (η from 0.01 to 2 Å⁻², Rs = 0) and 8 G4 rows (η ∈ {0.005, 0.05},
ζ ∈ {1, 4}, λ ∈ {±1}), float64, neighbour lists included on both sides. dscribe runs with
``n_jobs=2`` (both cores); pesdata with ``compute(systems, batch_size=--batch)``: batches on 2
worker threads, one torch intra-op thread each. Values
are checked equal (1e-8) before timing. PTSD throughput (default parameter sets, no S6) is
reported on the same cells, without a bar; so are ACSF and PTSD with ``compile=True`` (the angular
kernel fused by ``torch.compile``; its compilation falls in the untimed warm-up and the
checked run). Median of ``--repeats`` runs after a warm-up; no
timing ever fails the script. Results also go to ``<out>/bench_descriptors.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk
from dscribe.descriptors import ACSF as DscribeACSF

from pesdata.descriptors import ACSF, PTSD

G2 = [[float(e), 0.0] for e in np.linspace(0.01, 2.0, 8)]
G4 = [[e, z, lam] for e in (0.005, 0.05) for z in (1.0, 4.0) for lam in (-1.0, 1.0)]


def cells(n: int) -> list:
    out = []
    for k in range(n):
        a = bulk("Si", "diamond", a=5.43, cubic=True) * (2, 2, 2)
        a.rattle(0.05, seed=k)
        out.append(a)
    return out


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="number of 64-atom cells")
    ap.add_argument("--batch", type=int, default=25, help="structures per torch batch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench-out")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    systems = cells(args.n)
    n_atoms = sum(len(a) for a in systems)
    ours = ACSF(["Si"], 6.0, G2, G4)
    ref = DscribeACSF(species=["Si"], r_cut=6.0, g2_params=G2, g4_params=G4, periodic=True)
    check = np.concatenate(ref.create(systems[:3]))
    np.testing.assert_allclose(ours.compute(systems[:3]).numpy(), check, atol=1e-8)

    def run_ours():
        ours.compute(systems, batch_size=args.batch)  # 2 worker threads, 1 intra-op each

    fused = ACSF(["Si"], 6.0, G2, G4, compile=True)
    np.testing.assert_allclose(fused.compute(systems[:3]).numpy(), check, atol=1e-8)

    def run_fused():
        fused.compute(systems, batch_size=args.batch)

    ptsd = PTSD(["Si"], 6.0)  # the documented default sets (S1, S2, S3, S4, S5; no S6)

    def run_ptsd():
        ptsd.compute(systems, batch_size=args.batch)

    ptsd_fused = PTSD(["Si"], 6.0, compile=True)
    ptsd_fused.compute(systems[:3])  # compiles here, untimed

    def run_ptsd_fused():
        ptsd_fused.compute(systems, batch_size=args.batch)

    t_ref = median_time(lambda: ref.create(systems, n_jobs=2), args.repeats)
    t_ours = median_time(run_ours, args.repeats)
    t_ptsd = median_time(run_ptsd, args.repeats)
    t_fused = median_time(run_fused, args.repeats)
    r_ptsd_fused = n_atoms / median_time(run_ptsd_fused, args.repeats)
    r_ref, r_ours, r_fused = n_atoms / t_ref, n_atoms / t_ours, n_atoms / t_fused
    print(f"nproc={os.cpu_count()} python={platform.python_version()} torch={torch.__version__}")
    print(f"ACSF 8 G2 + 8 G4, rc 6 Å, {args.n} Si64 cells ({n_atoms} atoms), float64, CPU")
    print(f"{'what':<34}{'atoms/s':>12}")
    print(f"{'dscribe ACSF (n_jobs=2)':<34}{r_ref:>12,.0f}")
    print(f"{'pesdata ACSF (torch, 2 workers)':<34}{r_ours:>12,.0f}")
    ratio = r_ours / r_ref
    print(f"ratio pesdata/dscribe: {ratio:.2f}× (bar ≥ 1.0×: {'PASS' if ratio >= 1 else 'FAIL'})")
    print(f"{'pesdata ACSF, compile=True':<34}{r_fused:>12,.0f}  ({r_fused / r_ref:.2f}× dscribe)")
    r_ptsd = n_atoms / t_ptsd
    print(f"{'pesdata PTSD defaults (' + str(ptsd.n_features) + ' features)':<34}{r_ptsd:>12,.0f}")
    print(f"{'pesdata PTSD, compile=True':<34}{r_ptsd_fused:>12,.0f}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    result = {"n_atoms": n_atoms, "dscribe_atoms_per_s": r_ref, "pesdata_atoms_per_s": r_ours,
              "ratio": ratio, "compiled_atoms_per_s": r_fused, "ptsd_atoms_per_s": r_ptsd,
              "ptsd_compiled_atoms_per_s": r_ptsd_fused, "ptsd_n_features": ptsd.n_features,
              "batch": args.batch, "repeats": args.repeats}
    (Path(args.out) / "bench_descriptors.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
