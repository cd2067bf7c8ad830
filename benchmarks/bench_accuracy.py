"""Accuracy on the mlearn data sets (Zuo et al. 2020): train on the published training set,
evaluate on the published test set, report MAE and RMSE beside the published GAP/MTP MAEs.

Models: the HDNN on ACSF and on PTSD inputs (the defaults of ``pesdata train``: each
descriptor's documented default grid, r_cut 5 Å, energy+force loss) and the linear baseline
(ridge on per-element summed ACSF, energies only). Every model goes through the same API as
``pesdata train STORE --out DIR`` and ``pesdata evaluate --model DIR X_test.extxyz``.
Usage: ``python benchmarks/bench_accuracy.py [Cu Si ...] [--models hdnn-acsf,...]
[--minutes M]``; for element X it reads ``../shared/data/mlearn/X_train*`` (forces under
``forces`` or ``force``) and ``X_test.extxyz`` — the same command works for any element's
mlearn files. ``--minutes`` caps each HDNN's epoch loop (descriptors come on top).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import ase.io

import pesdata
from pesdata.descriptors import ACSF, PTSD
from pesdata.train import evaluate, train

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mlearn"
PUBLISHED = {  # test-set MAE: energy meV/atom GAP / MTP, force eV/Å GAP / MTP (data README)
    "Cu": (0.46, 0.41, 0.01, 0.01),
    "Si": (2.91, 2.21, 0.07, 0.06),
}
G2 = [[e, 0.0] for e in (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)] + [
    [1.0, r] for r in (2.0, 2.5, 3.0, 3.5, 4.0, 4.5)
]
G4 = [[0.005, z, lam] for z in (1, 2, 4) for lam in (-1, 1)]


def run(element: str, models: list[str], minutes: float, r_cut: float, out: Path) -> list:
    train_file = sorted(DATA.glob(f"{element}_train*"))[0]
    test_file = DATA / f"{element}_test.extxyz"
    first = ase.io.read(train_file, 0)
    forces_key = "force" if "force" in first.arrays else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        st = pesdata.open_store(Path(tmp) / "s", create=True)
        st.curate(train_file, method="PBE", forces_key=forces_key)
        for name in models:
            kind, _, desc_name = name.partition("-")
            if kind == "linear":
                desc = ACSF([element], r_cut, G2, G4)
                params = {"alpha": 1e-8}
            else:
                desc = (PTSD if desc_name == "ptsd" else ACSF)([element], r_cut)
                params = {"max_seconds": 60 * minutes}
            t0 = time.perf_counter()
            card = train(st, out / f"{element}-{name}", model=kind, descriptor=desc,
                         params=params)
            seconds = time.perf_counter() - t0
            metrics = evaluate(out / f"{element}-{name}", str(test_file))
            rows.append({"element": element, "model": name, "train_s": seconds,
                         "n_features": desc.n_features, "n_train": card["n_train"],
                         "epochs": card.get("training", [{}])[0].get("epochs"), **metrics})
            print(f"{element} {name}: {metrics} ({seconds:.0f} s)", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("elements", nargs="*", default=["Cu", "Si"])
    ap.add_argument("--models", default="hdnn-acsf,hdnn-ptsd,linear")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--r-cut", type=float, default=5.0)
    ap.add_argument("--out", default="bench-out")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [r for el in args.elements for r in
            run(el, args.models.split(","), args.minutes, args.r_cut, out / "models")]
    print(f"{'':4}{'model':11}{'E MAE':>8}{'E RMSE':>8}{'F MAE':>8}{'F RMSE':>8}"
          f"{'GAP/MTP E MAE':>15}{'GAP/MTP F MAE':>15}{'fit s':>7}")
    for r in rows:
        pub = PUBLISHED.get(r["element"])
        ref = (f"{pub[0]}/{pub[1]}", f"{pub[2]}/{pub[3]}") if pub else ("—", "—")
        print(f"{r['element']:4}{r['model']:11}{r['energy_mae']:8.2f}{r['energy_rmse']:8.2f}"
              f"{r['force_mae']:8.3f}{r['force_rmse']:8.3f}{ref[0]:>15}{ref[1]:>15}"
              f"{r['train_s']:7.0f}")
    print("energies meV/atom, forces eV/Å; test sets as published")
    (out / "bench_accuracy.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
