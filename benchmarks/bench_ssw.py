"""SSW against ASE's BasinHopping and MinimaHopping at equal evaluation budgets; a Cu crystal walk.

1. **Lennard-Jones global minima** (Wales & Doye, J. Phys. Chem. A 101, 5111 (1997)): LJ13
   −44.326801 ε and LJ38 −173.928427 ε with the exact, untruncated
   :class:`pesdata.explore.lj.LennardJonesCluster` (ε = 1 eV, σ = 1 Å, Ar masses). Every run
   starts from a seeded random cluster — the same start per seed for every method: uniform in a
   sphere of density 0.8 σ⁻³, no pair closer than 0.8 σ — and gets the same budget of
   energy+force evaluations, counted by one :class:`~pesdata.explore.counting.CountingCalculator`
   around the calculator (dimer rotations, MD steps, line searches and the initial quench all
   count). Success is the first evaluation with E ≤ E_gm + 0.01 ε; its index is the run's
   evaluations to the global minimum, and the run stops there. Methods:

   * SSW — ``pesdata.explore.SSW(start, calc, seed=s, **SSW_PARAMS[cluster])``;
   * ASE ``BasinHopping`` — kT = 0.8 ε (Wales & Doye's temperature), ``dr`` = 0.4 σ,
     ``fmax`` = 0.01, local optimiser :data:`BH_OPTIMIZER` (the cheapest of FIRE, BFGS and
     LBFGS per quench of these clusters — see :func:`quench_costs`, ``--quench-costs``);
   * ASE ``MinimaHopping`` — ``fmax`` = 0.01, its other defaults (T0 = 1000 K, Ediff0 = 0.5 eV,
     1 fs steps, BFGSLineSearch), in a temporary directory (it writes files).

   Reported per method and cluster: successes/seeds, the median evaluations to the global
   minimum over the successful runs, the censored median over all runs (a failure counts as the
   budget; ``>`` marks a median that is such a censored value) and wall time.
2. **Cu crystal with EMT**: 8 atoms from random positions in a cubic cell and from a strongly
   strained fcc cell, SSW with ``cell=True`` (kind bulk) for a fixed budget. Each distinct minimum
   is classified — close-packed (12 neighbours within 2.9 Å for every atom), fcc (no neighbour
   between 4.0 and 4.3 Å), hcp (every atom has two there: the atoms above and below at c) or
   faulted (another stacking: faults, polytypes) —
   and its volume per atom compared with EMT's relaxed fcc; the best energy per atom is compared
   with EMT's relaxed fcc and hcp, and the minima are curated into a temporary store
   (``method="EMT"``).

Tasks (method, cluster, seed, and the crystal walks) run in a ``spawn`` pool of ``--jobs``
processes, longest first. ``--quick``: 2 seeds and small budgets, a smoke run.

Notes on the set-up. About a quarter of the random LJ13 starts quench straight into the
icosahedron (5 of 20 with BFGS), so a few LJ13 runs end at the first quench for every method.
ASE's ``BasinHopping`` displaces the last accepted *unrelaxed* coordinates (not the minimum);
that is its implementation and it is run as it is. ASE's EMT puts hcp Cu 0.94 meV/atom *below*
fcc (−7.977 vs −7.036 meV/atom relaxed, equal volumes within 0.04 %), so the lowest minimum of
a Cu walk under EMT is hcp; the crystal check asks whether fcc is among the minima found.

Time estimate (the default budgets were set from it). Measured with ``--time-lj38 3000`` and
``--quick`` on 2 shared cores, as evaluations per CPU second (CPU time is what a quiet machine
gives as wall time): LJ38 — BasinHopping ≈ 880, SSW ≈ 670, MinimaHopping ≈ 430 (it writes a
trajectory frame per MD step); LJ13 — SSW ≈ 1,700, BasinHopping ≈ 1,450, MinimaHopping ≈ 660;
Cu8 EMT with a variable cell ≈ 110. If every run spent its whole budget: LJ38 5 seeds ×
80,000 ≈ 2,000 CPU s, LJ13 10 seeds × 25,000 ≈ 670 CPU s, the two Cu8 walks of 10,000 ≈ 180
CPU s — about 2,850 CPU s, i.e. ≈ 24 min wall at ``--jobs 2`` on 2 quiet cores; runs that find
the global minimum stop there, so a real run is shorter. ``--quick`` takes ≈ 1.5 min of CPU.
Results go to ``<out>/bench_ssw.json``; a markdown table is printed at the end. Each finished
run is also kept in ``<out>/runs/``; ``--resume`` reads those instead of running them again, so an
interrupted invocation (MinimaHopping's LJ38 runs take ~30 min each here) is completed with the
same settings.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread per worker process: --jobs sets the cores

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402

from pesdata.explore.counting import CountingCalculator  # noqa: E402
from pesdata.explore.surface import BudgetExhausted  # noqa: E402

E_GM = {"LJ13": -44.326801, "LJ38": -173.928427}
TOLERANCE = 0.01  # ε above E_gm that counts as found
SSW_PARAMS = {
    "LJ13": {"temperature": 5000.0, "height": 0.5, "width": 0.6, "fmax": 0.01,
             "record_climb": 0},
    "LJ38": {"temperature": 5000.0, "height": 0.5, "width": 0.6, "fmax": 0.01,
             "record_climb": 0},
}
BH_OPTIMIZER = "LBFGS"
BH_PARAMS = {"temperature": 0.8, "dr": 0.4, "fmax": 0.01}
MH_PARAMS = {"fmax": 0.01}
SEEDS = {"LJ13": 10, "LJ38": 5}
BUDGETS = {"LJ13": 25_000, "LJ38": 80_000}
QUICK = {"seeds": {"LJ13": 2, "LJ38": 2}, "budgets": {"LJ13": 5_000, "LJ38": 5_000},
         "crystal": 1_500}
CRYSTAL_BUDGET = 10_000
CRYSTAL_PARAMS = {"fmax": 0.01, "record_climb": 0}
METHODS = ("SSW", "BasinHopping", "MinimaHopping")


class Found(BudgetExhausted):
    """The target energy was reached: every method stops as it stops at its budget."""


class TargetCounter(CountingCalculator):
    """A :class:`CountingCalculator` that notes the first evaluation at or below ``target``
    and then stops the run (raises :class:`Found`)."""

    def __init__(self, calc, budget: int, target: float) -> None:
        super().__init__(calc, budget)
        self.target = target
        self.hit: int | None = None
        self.lowest = math.inf

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        from ase.calculators.calculator import all_changes

        super().calculate(atoms, properties, system_changes or all_changes)
        energy = float(self.results["energy"])
        self.lowest = min(self.lowest, energy)
        if energy <= self.target and self.hit is None:
            self.hit = self.n_calls
            raise Found(f"E = {energy:.6f} ≤ {self.target:.6f} after {self.n_calls} evaluations")


# -- starts ---------------------------------------------------------------------------------------


def random_cluster(n: int, seed: int, density: float = 0.8, min_distance: float = 0.8) -> Atoms:
    """``n`` Ar atoms uniform in a sphere of number density ``density`` (σ⁻³), no pair closer
    than ``min_distance`` σ (sequential rejection), from ``default_rng([n, seed])``."""
    rng = np.random.default_rng([n, seed])
    radius = (3 * n / (4 * math.pi * density)) ** (1 / 3)
    points: list[np.ndarray] = []
    while len(points) < n:
        p = rng.uniform(-radius, radius, 3)
        if np.linalg.norm(p) > radius:
            continue
        if points and np.min(np.linalg.norm(np.array(points) - p, axis=1)) < min_distance:
            continue
        points.append(p)
    return Atoms(f"Ar{n}", positions=np.array(points))


def cluster_size(name: str) -> int:
    return int(name[2:])


# -- one run ------------------------------------------------------------------------------------


def run_lj(method: str, cluster: str, seed: int, budget: int) -> dict:
    """One seeded run of ``method`` on ``cluster`` with ``budget`` evaluations."""
    from pesdata.explore.lj import LennardJonesCluster

    atoms = random_cluster(cluster_size(cluster), seed)
    calc = TargetCounter(LennardJonesCluster(), budget, E_GM[cluster] + TOLERANCE)
    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix=f"bench-ssw-{method}-") as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # BasinHopping and MinimaHopping write files in the working directory
        try:
            extra = _run_method(method, cluster, atoms, calc, seed)
        except BudgetExhausted:
            extra = {}
        finally:
            os.chdir(cwd)
    return {"method": method, "cluster": cluster, "seed": seed, "budget": budget,
            "found": calc.hit is not None, "evaluations_to_gm": calc.hit,
            "evaluations": calc.n_calls, "lowest": calc.lowest,
            "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, **extra}


def _run_method(method: str, cluster: str, atoms: Atoms, calc, seed: int) -> dict:
    import ase.optimize

    if method == "SSW":
        from pesdata.explore.ssw import SSW

        walk = SSW(atoms, calc, seed=seed, **SSW_PARAMS[cluster])
        walk.run(10**9)  # until the budget or the target stops it
        return {"steps": walk.n_steps_, "accepted": walk.n_accepted_,
                "fragmented": walk.n_fragmented_, "minima": len(walk.archive_)}
    atoms.calc = calc
    if method == "BasinHopping":
        from ase.optimize.basin import BasinHopping

        np.random.seed(seed)  # noqa: NPY002 - BasinHopping draws its moves from numpy's global one
        bh = BasinHopping(atoms, optimizer=getattr(ase.optimize, BH_OPTIMIZER), logfile=None,
                          trajectory=None, optimizer_logfile=None,
                          local_minima_trajectory=None, **BH_PARAMS)
        bh.run(10**9)
        return {}
    if method == "MinimaHopping":
        from ase.optimize.minimahopping import MinimaHopping

        MinimaHopping(atoms, rng=np.random.default_rng(seed), **MH_PARAMS)()
        return {}
    raise ValueError(f"unknown method {method!r}")


# -- the crystal --------------------------------------------------------------------------------


def emt_references() -> dict:
    """EMT Cu fcc and hcp relaxed with their cells: energy and volume per atom, a, c/a."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    out = {}
    for name, atoms in (("fcc", bulk("Cu", "fcc", a=3.6)),
                        ("hcp", bulk("Cu", "hcp", a=3.6 / math.sqrt(2),
                                     c=3.6 / math.sqrt(2) * math.sqrt(8 / 3)))):
        atoms.calc = EMT()
        BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-5, steps=500)
        out[name] = {"energy_per_atom": atoms.get_potential_energy() / len(atoms),
                     "volume_per_atom": atoms.get_volume() / len(atoms)}
    out["fcc"]["a"] = (4 * out["fcc"]["volume_per_atom"]) ** (1 / 3)
    return out


def crystal_start(kind: str, seed: int) -> Atoms:
    """8 Cu atoms: random in a cubic cell (``random``) or a strongly strained, rattled fcc
    2×2×2 primitive cell (``strained``)."""
    from ase.build import bulk

    rng = np.random.default_rng([8, seed, 1 if kind == "random" else 2])
    if kind == "random":
        side = (8 * 12.0 * 1.1) ** (1 / 3)  # ~10 % above EMT's fcc volume
        points: list[np.ndarray] = []
        while len(points) < 8:
            p = rng.uniform(0, side, 3)
            cell = Atoms("Cu", cell=[side] * 3, pbc=True)
            if points:
                probe = Atoms(f"Cu{len(points) + 1}", positions=[*points, p],
                              cell=cell.cell, pbc=True)
                if probe.get_distances(len(points), range(len(points)), mic=True).min() < 2.0:
                    continue
            points.append(p)
        return Atoms("Cu8", positions=points, cell=[side] * 3, pbc=True)
    atoms = bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    strain = np.array([[0.15, 0.10, 0.0], [0.10, -0.10, 0.05], [0.0, 0.05, 0.08]])
    atoms.set_cell(atoms.cell @ (np.eye(3) + strain), scale_atoms=True)
    atoms.positions += rng.normal(0, 0.1, atoms.positions.shape)
    return atoms


def classify(atoms: Atoms, fcc_volume: float) -> dict:
    """Coordination within 2.9 Å, 3rd-shell (4.0–4.3 Å) neighbours, and the volume check."""
    from ase.neighborlist import neighbor_list

    n = len(atoms)
    coordination = np.bincount(neighbor_list("i", atoms, 2.9), minlength=n)
    i, d = neighbor_list("id", atoms, 4.3)
    third = np.bincount(i[d > 4.0], minlength=n)
    close_packed = bool(np.all(coordination == 12))
    volume = atoms.get_volume() / n
    if not close_packed:
        structure = "other"
    elif np.all(third == 0):
        structure = "fcc"
    elif np.all(third == 2):  # ideal hcp: the atoms above and below at c
        structure = "hcp"
    else:  # other stackings: faults, polytypes (every atom still close-packed)
        structure = "faulted"
    return {"structure": structure, "hcp_like_atoms": int(np.count_nonzero(third)),
            "volume_per_atom": volume,
            "volume_ok": bool(abs(volume / fcc_volume - 1) <= 0.01),
            "coordination": coordination.tolist()}


def run_crystal(kind: str, seed: int, budget: int) -> dict:
    """A variable-cell SSW walk of Cu8 under EMT, its minima classified and curated."""
    from ase.calculators.emt import EMT

    import pesdata
    from pesdata.explore.ssw import SSW

    refs = emt_references()
    calc = CountingCalculator(EMT(), budget)
    t0, c0 = time.perf_counter(), time.process_time()
    walk = SSW(crystal_start(kind, seed), calc, kind="bulk", cell=True, seed=seed,
               **CRYSTAL_PARAMS)
    try:
        walk.run(10**9)
    except BudgetExhausted:  # SSW stops itself at the budget; this is a safety net
        pass
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    minima = [classify(m.atoms, refs["fcc"]["volume_per_atom"]) | {"energy_per_atom":
              m.energy / len(m.atoms)} for m in walk.archive_.minima]
    frames = [f for f in walk.frames_ if f.info.get("phase") == "minimum"]
    with tempfile.TemporaryDirectory(prefix="bench-ssw-store-") as tmp:
        store = pesdata.open_store(Path(tmp) / "store", create=True)
        try:
            report = store.curate(frames, method="EMT", quarantine=True)
            curated = {"added": report.added, "duplicates": report.duplicates,
                       "rejected": len(report.rejected)}
        except Exception as exc:  # noqa: BLE001 - reported, never fatal to the benchmark
            curated = {"error": f"{type(exc).__name__}: {exc}"}
    best = walk.best_energy_ / len(walk.best_atoms_)
    fcc = sorted((m for m in minima if m["structure"] == "fcc" and m["volume_ok"]),
                 key=lambda m: m["energy_per_atom"])
    return {"method": "SSW", "cluster": f"Cu8-{kind}", "seed": seed, "budget": budget,
            "evaluations": calc.n_calls, "wall_s": wall, "cpu_s": cpu, "steps": walk.n_steps_,
            "accepted": walk.n_accepted_, "distinct_minima": len(minima),
            "best_energy_per_atom": best,
            "best_minus_fcc": best - refs["fcc"]["energy_per_atom"],
            "best_minus_hcp": best - refs["hcp"]["energy_per_atom"],
            "fcc_found": bool(fcc),
            "fcc_a": (4 * fcc[0]["volume_per_atom"]) ** (1 / 3) if fcc else None,
            "fcc_minus_reference": (fcc[0]["energy_per_atom"] - refs["fcc"]["energy_per_atom"]
                                    if fcc else None),
            "hcp_found": any(m["structure"] == "hcp" for m in minima),
            "faulted_found": any(m["structure"] == "faulted" for m in minima),
            "close_packed": sum(m["structure"] != "other" for m in minima),
            "references": refs, "curated": curated, "minima": minima}


def run_task(task: tuple) -> dict:
    kind, *args = task
    return run_crystal(*args) if kind == "crystal" else run_lj(*args)


def _keyed_task(task: tuple) -> tuple[tuple, dict]:
    return task, run_task(task)


# -- measurements of the settings -----------------------------------------------------------------


def quench_costs(cluster: str, seeds: int = 5) -> dict:
    """Mean evaluations of one quench to ``fmax`` = 0.01 per ASE optimiser, from random starts
    and from minima displaced as a basin-hopping move displaces them (the evidence behind
    :data:`BH_OPTIMIZER`)."""
    import ase.optimize

    from pesdata.explore.lj import LennardJonesCluster

    out = {}
    for start in ("random", "hop"):
        for name in ("FIRE", "BFGS", "LBFGS"):
            calls = []
            for seed in range(seeds):
                atoms = random_cluster(cluster_size(cluster), 1000 + seed)
                atoms.calc = calc = CountingCalculator(LennardJonesCluster())
                if start == "hop":  # a basin-hopping move from a minimum: uniform ±dr
                    ase.optimize.BFGS(atoms, logfile=None).run(fmax=0.01, steps=10_000)
                    rng = np.random.default_rng(seed)
                    atoms.positions += BH_PARAMS["dr"] * rng.uniform(-1, 1, (len(atoms), 3))
                    calc.n_calls = 0
                getattr(ase.optimize, name)(atoms, logfile=None).run(fmax=0.01, steps=10_000)
                calls.append(calc.n_calls)
            out[f"{name} from {start}"] = float(np.mean(calls))
    return out


# -- summary --------------------------------------------------------------------------------------


def summarise(rows: list[dict]) -> list[dict]:
    """Per (cluster, method): successes, medians (plain and censored) and wall time."""
    out = []
    for cluster in sorted({r["cluster"] for r in rows if r["cluster"] in E_GM}):
        for method in METHODS:
            runs = [r for r in rows if r["cluster"] == cluster and r["method"] == method]
            if not runs:
                continue
            n = len(runs)
            hits = sorted(r["evaluations_to_gm"] for r in runs if r["found"])
            budget = max(r["budget"] for r in runs)
            values = hits + [budget] * (n - len(hits))
            # the median is a censored value when a failure sits at (or averages into) it
            censored = len(hits) <= (n - 1) // 2 if n % 2 else len(hits) <= n // 2
            out.append({"cluster": cluster, "method": method, "seeds": n,
                        "found": len(hits), "budget": budget,
                        "median_found": float(np.median(hits)) if hits else None,
                        "median_censored": float(np.median(values)),
                        "median_is_censored": bool(censored),
                        "wall_s_total": float(sum(r["wall_s"] for r in runs)),
                        "wall_s_median": float(np.median([r["wall_s"] for r in runs])),
                        "lowest": [r["lowest"] for r in runs]})
    return out


def table(summary: list[dict], crystals: list[dict]) -> str:
    lines = ["| cluster | method | found / seeds | budget | median evals to GM (found runs) "
             "| median evals to GM (all runs, censored) | median lowest E (ε) "
             "| wall s (total / median run) |",
             "|---|---|---|---|---|---|---|---|"]
    for s in summary:
        found = "—" if s["median_found"] is None else f"{s['median_found']:,.0f}"
        cens = ("> " if s["median_is_censored"] else "") + f"{s['median_censored']:,.0f}"
        lines.append(f"| {s['cluster']} | {s['method']} | {s['found']} / {s['seeds']} "
                     f"| {s['budget']:,} | {found} | {cens} | {np.median(s['lowest']):.4f} "
                     f"| {s['wall_s_total']:.0f} / {s['wall_s_median']:.1f} |")
    if crystals:
        lines += ["", "| Cu8 start | evaluations | steps | distinct minima | close-packed "
                  "| best E/atom − fcc (eV) | fcc found | hcp found | other stacking "
                  "| curated (added) | wall s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for c in crystals:
            cur = c["curated"].get("added", c["curated"].get("error"))
            lines.append(f"| {c['cluster'][4:]} | {c['evaluations']:,} | {c['steps']} "
                         f"| {c['distinct_minima']} | {c['close_packed']} "
                         f"| {c['best_minus_fcc']:+.4f} | {'yes' if c['fcc_found'] else 'no'} "
                         f"| {'yes' if c['hcp_found'] else 'no'} "
                         f"| {'yes' if c['faulted_found'] else 'no'} | {cur} "
                         f"| {c['wall_s']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, small budgets (smoke run)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--clusters", nargs="+", default=list(E_GM), choices=list(E_GM))
    ap.add_argument("--seeds", type=int, nargs=2, metavar=("LJ13", "LJ38"))
    ap.add_argument("--budgets", type=int, nargs=2, metavar=("LJ13", "LJ38"))
    ap.add_argument("--crystal-budget", type=int)
    ap.add_argument("--no-crystal", action="store_true")
    ap.add_argument("--time-lj38", type=int, metavar="BUDGET",
                    help="only time one LJ38 run per method at this budget (evaluations/s)")
    ap.add_argument("--resume", action="store_true",
                    help="reuse the runs an interrupted invocation finished (<out>/runs/)")
    ap.add_argument("--quench-costs", action="store_true",
                    help="only measure evaluations per quench of FIRE, BFGS and LBFGS")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version(), "jobs": args.jobs}

    if args.quench_costs:
        for cluster in args.clusters:
            print(f"{cluster}: mean evaluations per quench {quench_costs(cluster)}", flush=True)
        return 0
    seeds = dict(QUICK["seeds"] if args.quick else SEEDS)
    budgets = dict(QUICK["budgets"] if args.quick else BUDGETS)
    if args.seeds:
        seeds = dict(zip(E_GM, args.seeds, strict=True))
    if args.budgets:
        budgets = dict(zip(E_GM, args.budgets, strict=True))
    crystal_budget = args.crystal_budget or (QUICK["crystal"] if args.quick else CRYSTAL_BUDGET)
    if args.time_lj38:
        tasks = [("lj", m, "LJ38", 0, args.time_lj38) for m in args.methods]
    else:
        tasks = [("lj", m, c, s, budgets[c]) for c in reversed(args.clusters)
                 for s in range(seeds[c]) for m in args.methods]  # LJ38 (longest) first
        if not args.no_crystal:
            tasks[len([t for t in tasks if t[2] == "LJ38"]):0] = [
                ("crystal", kind, 0, crystal_budget) for kind in ("random", "strained")]
    print(f"bench_ssw: {len(tasks)} runs on {args.jobs} processes ({os.cpu_count()} cores); "
          f"seeds {seeds}, budgets {budgets}, crystal budget {crystal_budget}", flush=True)
    t0 = time.perf_counter()
    runs = out / "runs"  # one file per finished run: --resume skips them
    runs.mkdir(exist_ok=True)

    def saved(task):
        return runs / ("-".join(map(str, task)) + ".json")

    rows = []
    n_total = len(tasks)
    if args.resume:
        rows = [json.loads(saved(t).read_text()) for t in tasks if saved(t).exists()]
        tasks = [t for t in tasks if not saved(t).exists()]
        print(f"  resumed: {len(rows)} runs read from {runs}", flush=True)
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for task, row in pool.imap_unordered(_keyed_task, tasks):
            tmp = saved(task).with_suffix(".tmp")
            tmp.write_text(json.dumps(row))
            os.replace(tmp, saved(task))
            rows.append(row)
            what = (f"found after {row['evaluations_to_gm']:,}" if row.get("found")
                    else f"{row['evaluations']:,} evaluations")
            print(f"  [{len(rows)}/{n_total}] {row['cluster']} {row['method']} seed "
                  f"{row['seed']}: {what}, {row['wall_s']:.1f} s", flush=True)
    wall = time.perf_counter() - t0
    if args.time_lj38:
        for r in rows:
            r["evaluations_per_s"] = r["evaluations"] / r["wall_s"]
            r["evaluations_per_cpu_s"] = r["evaluations"] / r["cpu_s"]
            print(f"  {r['method']}: {r['evaluations_per_s']:,.0f} LJ38 evaluations per wall "
                  f"second, {r['evaluations_per_cpu_s']:,.0f} per CPU second", flush=True)
        result = {"machine": machine, "time_lj38": rows}
        (out / "bench_ssw_timing.json").write_text(json.dumps(result, indent=1))
        return 0
    lj = [r for r in rows if r["cluster"] in E_GM]
    crystals = sorted((r for r in rows if r["cluster"].startswith("Cu8")),
                      key=lambda r: r["cluster"])
    summary = summarise(lj)
    result = {"machine": machine, "quick": args.quick, "wall_s": wall,
              "settings": {"E_gm": E_GM, "tolerance": TOLERANCE, "ssw": SSW_PARAMS,
                           "basin_hopping": {**BH_PARAMS, "optimizer": BH_OPTIMIZER},
                           "minima_hopping": MH_PARAMS, "seeds": seeds, "budgets": budgets,
                           "crystal": {**CRYSTAL_PARAMS, "budget": crystal_budget}},
              "summary": summary, "crystal": crystals, "runs": lj}
    (out / "bench_ssw.json").write_text(json.dumps(result, indent=1))
    print(f"\nbench_ssw: {wall:.0f} s wall on {args.jobs} processes; "
          f"results in {out / 'bench_ssw.json'}\n")
    print(table(summary, crystals))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
