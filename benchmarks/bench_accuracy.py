"""Accuracy on the mlearn data sets (Zuo et al. 2020): train on the published training set,
evaluate on the published test set, report MAE and RMSE beside the published GAP/MTP MAEs.

So far the linear baseline (ridge on per-element summed ACSF; issue 4's HDNN comes next).
Usage: ``python benchmarks/bench_accuracy.py [Cu Si ...] [--force-weight W]``; for element X
it reads ``../shared/data/mlearn/X_train*`` (forces under ``forces`` or ``force``) and
``X_test.extxyz`` — the same command works for any element's mlearn files.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import ase.io

import pesdata
from pesdata.descriptors import ACSF
from pesdata.train import LinearPotential, predict_metrics

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mlearn"
PUBLISHED = {  # test-set MAE: energy meV/atom GAP / MTP, force eV/Å GAP / MTP (data README)
    "Cu": (0.46, 0.41, 0.01, 0.01),
    "Si": (2.91, 2.21, 0.07, 0.06),
}
G2 = [[e, 0.0] for e in (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)] + [
    [1.0, r] for r in (2.0, 2.5, 3.0, 3.5, 4.0, 4.5)
]
G4 = [[0.005, z, lam] for z in (1, 2, 4) for lam in (-1, 1)]


def run(element: str, force_weight: float, r_cut: float) -> dict:
    train_file = sorted(DATA.glob(f"{element}_train*"))[0]
    first = ase.io.read(train_file, 0)
    forces_key = "force" if "force" in first.arrays else None
    with tempfile.TemporaryDirectory() as tmp:
        st = pesdata.open_store(Path(tmp) / "s", create=True)
        st.curate(train_file, method="PBE", forces_key=forces_key)
        train = st.read().to_atoms()
    test = ase.io.read(DATA / f"{element}_test.extxyz", ":")
    desc = ACSF([element], r_cut, G2, G4)
    t0 = time.perf_counter()
    model = LinearPotential(desc, alpha=1e-8, force_weight=force_weight).fit(train)
    seconds = time.perf_counter() - t0
    metrics, _ = predict_metrics(model, test)
    return {"element": element, "model": "linear", "train_s": seconds, "n_train": len(train),
            **metrics}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("elements", nargs="*", default=["Cu", "Si"])
    ap.add_argument("--force-weight", type=float, default=0.0)
    ap.add_argument("--r-cut", type=float, default=5.0)
    ap.add_argument("--out", default="bench-out")
    args = ap.parse_args(argv)
    rows = [run(el, args.force_weight, args.r_cut) for el in args.elements]
    print(f"{'':4}{'model':8}{'E MAE':>8}{'E RMSE':>8}{'F MAE':>8}{'F RMSE':>8}"
          f"{'GAP/MTP E MAE':>15}{'GAP/MTP F MAE':>15}{'fit s':>7}")
    for r in rows:
        pub = PUBLISHED.get(r["element"])
        ref = (f"{pub[0]}/{pub[1]}", f"{pub[2]}/{pub[3]}") if pub else ("—", "—")
        print(f"{r['element']:4}{r['model']:8}{r['energy_mae']:8.2f}{r['energy_rmse']:8.2f}"
              f"{r['force_mae']:8.3f}{r['force_rmse']:8.3f}{ref[0]:>15}{ref[1]:>15}"
              f"{r['train_s']:7.0f}")
    print("energies meV/atom, forces eV/Å; test sets as published")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench_accuracy.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
