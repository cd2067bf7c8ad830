"""End-to-end ``pesdata select`` at scale; its nearest-neighbour step beside faiss exact search.

Workload (issue 15): a reference store of 20,000 diamond-Si cells of 64 atoms (1.28 M atomic
environments, one element: rattled 0.02–0.12 Å, strained ±3 %) and a candidate store of 10,000
cells of 64 atoms (9,000 from the same distribution, 500 hot — rattled 0.18 Å — and 500 strained
by 8 %), both described once with the default novelty descriptor and cached (the untimed set-up,
kept under ``<out>/select`` for the next run). Timed: the command a user types,
``pesdata select REF --candidates CAND --budget 200 --out QUEUE --json``, in a fresh process
(wall time and peak RSS). Then, on the same cached descriptors: pesdata's novelty ``fit`` and
``score`` times, faiss ``IndexFlatL2`` (exact) queries/s on a subsample of queries, and the
recall of pesdata's per-atom nearest distances against that exact search (the share of
queries whose distance is the exact neighbour's, recomputed in float64). No timing ever fails
the script. Results go to ``<out>/bench_select.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from ase.build import bulk


def cells(n: int, seed: int, rattle=(0.02, 0.12), strain=0.03) -> list:
    rng = np.random.default_rng(seed)
    base = bulk("Si", "diamond", a=5.43, cubic=True) * (2, 2, 2)
    out = []
    for _ in range(n):
        a = base.copy()
        eps = rng.uniform(-strain, strain, (3, 3))
        a.set_cell(a.cell @ (np.eye(3) + (eps + eps.T) / 2), scale_atoms=True)
        a.positions += rng.normal(0, rng.uniform(*rattle), a.positions.shape)
        out.append(a)
    return out


def build(root: Path, n_ref: int, n_cand: int):
    import pesdata
    from pesdata.descriptors import describe
    from pesdata.select.novelty import default_descriptor

    desc = default_descriptor([14])
    stores = {}
    for name, make in (
        ("ref", lambda: cells(n_ref, 1)),
        ("cand", lambda: cells(n_cand - n_cand // 10, 2) + cells(n_cand // 20, 3, (0.18, 0.18))
         + cells(n_cand // 20, 4, strain=0.08)),
    ):
        path = root / name
        if not (path / "_pesdata").exists():
            t0 = time.perf_counter()
            store = pesdata.open_store(path, create=True)
            store.curate(make(), method="bench")
            print(f"  set-up: curated {name} ({len(store.read())} frames) in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        store = pesdata.open_store(path)
        t0 = time.perf_counter()
        info = describe(store, desc, batch_size=256)
        if info["computed"]:
            print(f"  set-up: described {info['computed']} {name} frames in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        stores[name] = store
    return stores, desc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-ref", type=int, default=20000)
    ap.add_argument("--n-cand", type=int, default=10000)
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--exact-queries", type=int, default=20000,
                    help="queries for the faiss IndexFlatL2 rate and the recall")
    ap.add_argument("--out", default="bench-out")
    args = ap.parse_args(argv)
    root = Path(args.out) / "select"
    root.mkdir(parents=True, exist_ok=True)
    print(f"bench_select: {args.n_ref} reference and {args.n_cand} candidate 64-atom Si cells "
          f"({os.cpu_count()} cores)", flush=True)
    stores, desc = build(root, args.n_ref, args.n_cand)

    # 1. the command, end to end, in a fresh process
    queue = root / f"queue-{int(time.time())}"
    cmd = [sys.executable, "-m", "pesdata", "select", str(root / "ref"), "--candidates",
           str(root / "cand"), "--budget", str(args.budget), "--out", str(queue),
           "--name", queue.name, "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # MiB (Linux: KiB)
    if proc.returncode != 0:
        print(proc.stderr)
        return 1
    doc = json.loads(proc.stdout)
    print(f"  pesdata select end to end: {wall:.1f} s, peak RSS {peak:.0f} MiB, counts "
          f"{doc['counts']}", flush=True)

    # 2. the nearest-neighbour step beside faiss's exact index, same data
    import faiss

    from pesdata.descriptors import load_descriptors
    from pesdata.select import Environments
    from pesdata.select.novelty import NoveltyCriterion

    ref = Environments.from_cache(load_descriptors(stores["ref"], desc))
    cand = Environments.from_cache(load_descriptors(stores["cand"], desc))
    t0 = time.perf_counter()
    crit = NoveltyCriterion().fit(ref)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = crit.score(cand)
    t_score = time.perf_counter() - t0
    n_q = len(cand.features)
    ours = np.concatenate([np.asarray(d, dtype=float) for d in scores["atom_distances"]])
    # exact search in the same scaled space the criterion uses
    scaled_ref = crit.rows_["Si"]  # the reference rows as the criterion scaled and indexed them
    scaled_q = ((cand.features - crit.centre_["Si"]) / crit.scale_["Si"]).astype(np.float32)
    rng = np.random.default_rng(0)
    sub = np.sort(rng.choice(n_q, min(args.exact_queries, n_q), replace=False))
    index = faiss.IndexFlatL2(scaled_ref.shape[1])
    index.add(scaled_ref)
    t0 = time.perf_counter()
    _, nearest = index.search(scaled_q[sub], 1)
    t_flat = time.perf_counter() - t0
    # faiss's batched (BLAS) distances lose digits: the exact neighbour's distance in float64
    q64 = ((cand.features[sub] - crit.centre_["Si"]) / crit.scale_["Si"])
    exact = np.linalg.norm(q64 - scaled_ref[nearest[:, 0]].astype(np.float64), axis=1)
    # found: pesdata's distance is the exact nearest one (to float32 rounding of the rows)
    recall = float(np.mean(ours[sub] <= exact * (1 + 1e-5) + 1e-6))
    result = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "workload": {"n_ref_frames": args.n_ref, "n_ref_env": int(len(ref.features)),
                     "n_cand_frames": args.n_cand, "n_queries": int(n_q),
                     "n_features": int(ref.features.shape[1]), "budget": args.budget,
                     "descriptor": desc.config()},
        "select_wall_s": wall, "select_peak_rss_mib": peak, "counts": doc["counts"],
        "novelty_fit_s": t_fit, "novelty_score_s": t_score,
        "pesdata_queries_per_s": n_q / t_score,
        "faiss_flat_queries_per_s": len(sub) / t_flat,
        "ratio_vs_faiss_flat": (n_q / t_score) / (len(sub) / t_flat),
        "recall_vs_exact": recall,
        "index": type(crit.indexes_["Si"]).__name__,
    }
    print(f"  novelty fit {t_fit:.1f} s, score {t_score:.1f} s for {n_q} queries "
          f"({n_q / t_score:,.0f} q/s); faiss IndexFlatL2 {len(sub) / t_flat:,.0f} q/s "
          f"(exact, {len(sub)} queries): {result['ratio_vs_faiss_flat']:.1f}x; recall vs exact "
          f"{recall:.4f}", flush=True)
    (Path(args.out) / "bench_select.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
