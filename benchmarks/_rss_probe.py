"""Peak RSS of curate, describe and select at growing store sizes (one child process each).

    python benchmarks/_rss_probe.py 2000 20000 200000 [--scheduler threads] [--cache DIR]

Frames are small EMT-labelled Cu/Au cells (ase.build.bulk Cu 2x1x1 with random Au
substitutions, rattled, strained), generated once per size into ``--cache`` (default
``~/.cache/pesdata-rss``, outside the repository) as extxyz files of 2000 frames. Each step runs
in a fresh ``python -c`` child; its peak RSS is ``ru_maxrss`` of that child. select scores a
fixed 500 candidates against the whole store (the reference grows).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

FILE_FRAMES = 2000
DESC = {"descriptor": "acsf", "species": ["Cu", "Au"], "r_cut": 4.0,
        "g2_params": [[0.5, 2.5], [1.0, 3.0], [0.05, 0.0]], "g4_params": [[0.01, 1, 1]]}


def generate(n: int, out: Path, seed: int) -> list[str]:
    import ase.io
    import numpy as np
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    out.mkdir(parents=True, exist_ok=True)
    files = []
    rng = np.random.default_rng(seed)
    for f0 in range(0, n, FILE_FRAMES):
        path = out / f"emt-{seed}-{f0:09d}.extxyz"
        files.append(str(path))
        if path.exists():
            continue
        frames = []
        for _ in range(min(FILE_FRAMES, n - f0)):
            a = bulk("Cu", "fcc", a=3.61 * (1 + rng.uniform(-0.03, 0.03)), cubic=True)
            a.numbers[rng.random(len(a)) < 0.3] = 79
            a.rattle(0.05, seed=int(rng.integers(2**31)))
            a.calc = EMT()
            e, fo = a.get_potential_energy(), a.get_forces()
            a.calc = SinglePointCalculator(a, energy=e, forces=fo)
            frames.append(a)
        tmp = path.with_suffix(".tmp")
        ase.io.write(tmp, frames, format="extxyz")
        os.replace(tmp, path)
    return files


CHILD = {
    "curate": "from pesdata.curate import curate_new as c; c(S, F, method='EMT', {kw})",
    "describe": "import pesdata; from pesdata.descriptors import describe, from_config as fc; "
                "describe(pesdata.open_store(S), fc(D), batch_size=256, {kw})",
    "select": "import pesdata; from pesdata.select import select; "
              "select(pesdata.open_store(S), C, descriptor=D, budget=20, method='EMT', {kw})",
}


def run_child(step: str, store: Path, files, cands, scheduler) -> tuple[float, float]:
    kw = f"scheduler={scheduler!r}" if scheduler else ""
    code = ("import resource, json, time\n"
            f"S, F, C, D = {str(store)!r}, {files!r}, {cands!r}, {DESC!r}\n"
            "t = time.perf_counter()\n"
            + CHILD[step].format(kw=kw) + "\n"
            "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
            " time.perf_counter() - t)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{step} failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RSS")][-1].split()
    return float(line[1]), float(line[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sizes", type=int, nargs="+")
    ap.add_argument("--scheduler")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "pesdata-rss")
    args = ap.parse_args()
    cands = generate(500, args.cache / "candidates", seed=99)
    rows = []
    for n in args.sizes:
        files = generate(n, args.cache / f"n{n}", seed=1)
        store = args.cache / f"store-{n}-{args.scheduler or 'serial'}".replace("/", "_")
        subprocess.run(["rm", "-rf", str(store)], check=True)
        row = {"n": n, "scheduler": args.scheduler}
        for step in ("curate", "describe", "select"):
            t = time.perf_counter()
            rss, secs = run_child(step, store, files, cands, args.scheduler)
            row[step] = {"peak_rss_mib": round(rss, 1), "seconds": round(secs, 1),
                         "wall": round(time.perf_counter() - t, 1)}
        print(json.dumps(row), flush=True)
        rows.append(row)


if __name__ == "__main__":
    main()
