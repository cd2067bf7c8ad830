"""Streamed novelty search at scale: exact brute force against streamed IVF, on the stores
``bench_scale.py`` leaves behind.

For the reference store of N structures (default 10⁶: 4·10⁶ environments, 2·10⁶ per element)
and the 2,000 candidate frames ``bench_scale.py`` selects from — rattled here (Gaussian, σ =
0.05 Å by default, seeded): unrattled, they are rigid translations of reference cells, each
with a twin at distance 0, which any search finds — the novelty criterion is fit
on the streamed reference (``index_mb=0``: every element streamed) and scores the candidates'
atoms twice: with exact search (``exact_max`` above the reference's size: brute force per chunk)
and with the default (streamed IVF above 100,000 rows per element). Reported: the wall time of
fit (statistics, IVF training, leave-one-out calibration) and of scoring, the scoring cost per
candidate atom, the recall (share of atoms whose IVF distance equals the exact one to 1e-6,
relative, float32 as the ledger keeps them), how far the missed distances lie above the
exact ones (median and largest relative excess), and the
per-element thresholds of both. Each search runs on Dask's ``processes`` scheduler with the
given workers.

Run ``python benchmarks/bench_scale.py`` first (it builds and describes the stores), then
``python benchmarks/bench_select_recall.py [--size N] [--workers W]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_scale import ACSF, BASES, N_CANDIDATES  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", default=None, help="bench_scale's scratch directory")
    ap.add_argument("--rattle", type=float, default=0.05, help="Å, Gaussian σ of the "
                    "candidates' displacements")
    ap.add_argument("--out", default="bench-out")
    args = ap.parse_args(argv)

    import ase.io
    import torch
    from _scale_data import PER_FILE, cache_dir, generate

    import pesdata
    from pesdata.descriptors import from_config
    from pesdata.descriptors._stream import DescriptorStream
    from pesdata.select import Environments
    from pesdata.select._reference import StreamedReference
    from pesdata.select.novelty import NoveltyCriterion

    files = generate(args.size + N_CANDIDATES, BASES)
    work = Path(args.work or cache_dir(BASES).parent / "work")
    store = pesdata.open_store(work / f"n{args.size}-w2")
    desc = from_config(ACSF)
    frames = ase.io.read(files[args.size // PER_FILE], ":")
    for k, atoms in enumerate(frames):
        atoms.rattle(stdev=args.rattle, seed=k)
    with torch.no_grad():
        x = desc.compute(frames).numpy()
    env = Environments(x, np.concatenate([a.numbers for a in frames]),
                       np.repeat(np.arange(len(frames)), [len(a) for a in frames]), len(frames))
    out: dict = {"size": args.size, "workers": args.workers, "candidate_atoms": int(len(x)),
                 "rattle_angstrom": args.rattle}
    dist = {}
    for label, exact_max in (("exact", 2**62), ("ivf", None)):
        ref = StreamedReference(DescriptorStream(store, desc), "processes", args.workers)
        t0 = time.perf_counter()
        crit = NoveltyCriterion(index_mb=0, exact_max=exact_max).fit(ref)
        t1 = time.perf_counter()
        scores = crit.score(env)
        t2 = time.perf_counter()
        dist[label] = np.concatenate(scores["atom_distances"].tolist())
        out[label] = {"fit_s": round(t1 - t0, 1), "score_s": round(t2 - t1, 1),
                      "score_ms_per_atom": round(1e3 * (t2 - t1) / len(x), 3),
                      "search": crit.thresholds_["search"],
                      "cells": {s: len(c) for s, c in getattr(crit, "quantisers_", {}).items()},
                      "thresholds": crit.thresholds_["per_element"]}
        print(label, json.dumps(out[label]), flush=True)
    exact, ivf = dist["exact"], dist["ivf"]
    tol = 1e-5  # both are float64 distances stored as float32; the exact path re-ranks only
    hit = np.isclose(ivf, exact, rtol=tol)  # faiss's float32 top 1
    excess = ivf[~hit] / exact[~hit] - 1
    out["recall"] = float(hit.mean())
    out["never_below_exact"] = bool(np.all(ivf >= exact * (1 - tol)))
    out["median_exact_distance"] = float(np.median(exact))
    out["missed_excess_median"] = float(np.median(excess)) if len(excess) else 0.0
    out["missed_excess_max"] = float(np.max(excess)) if len(excess) else 0.0
    out["speedup_score"] = round(out["exact"]["score_s"] / out["ivf"]["score_s"], 1)
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "bench_select_recall.json").write_text(json.dumps(out, indent=1))
    print(f"recall {out['recall']:.4f} over {len(exact):,} atoms; never below exact: "
          f"{out['never_below_exact']}; missed: median excess {out['missed_excess_median']:.3g}"
          f", largest {out['missed_excess_max']:.3g}; scoring "
          f"{out['exact']['score_s']} s exact vs {out['ivf']['score_s']} s IVF; fit "
          f"{out['exact']['fit_s']} s vs {out['ivf']['fit_s']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
