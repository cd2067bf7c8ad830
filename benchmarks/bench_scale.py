"""Scale: curate, describe and select throughput and peak memory at 1×, 10×, 100× sizes, with 1
and 2 Dask workers, and an estimate for OMat24-size data on a 100-worker cluster.

Data (:mod:`_scale_data`, generated once, cached outside the repository): EMT-labelled 4-atom
Cu/Au fcc cells (energy, forces, stress) in extended-XYZ files of 2,000 frames; the first 100k
frames are distinct EMT calculations, the rest rigid translations of them (exact EMT labels,
distinct content hashes). Sizes default to 10k, 100k and 1M frames.

For each size N and each worker count w (Dask's ``processes`` scheduler with w spawned workers,
``scheduler="processes", workers=w``):

* **curate** — the first N frames (N / 2,000 files) into a fresh store, ``method="EMT"``:
  parsing, validation and hashing are Dask tasks per file; the driver deduplicates and commits
  (one writer). Throughput in frames/s.
* **describe** — ACSF (Cu, Au; r_cut 5 Å; 4 G2 + 2 G4 per element pair → 24 features) of every
  structure of the store, into the Zarr cache (emptied before each run): tasks over row batches
  of 512 structures. Throughput in atoms/s.
* **select** — 2,000 candidate frames (one file from beyond the largest size's frames, or
  rattled copies) against the store as reference: novelty (default thresholds) + FPS diversity,
  budget 100, scores as Dask tasks. Throughput in candidates/s, with the reference's size N.

Every step runs in a fresh child process (``python bench_scale.py _child ...``); its wall time
is measured there (the step alone, not the interpreter start-up) and the parent polls the peak
resident set size (RSS) of the child's whole process tree (driver + Dask workers) every 50 ms
with psutil; the driver's own peak (``ru_maxrss``) is reported as well. Scaling efficiency =
rate(2 workers) / (2 × rate(1 worker)). The 100-worker estimate is computed from the measured
per-worker rates and the driver's serial part (Amdahl), with its assumptions printed. Results go
to ``<out>/bench_scale.json`` and a markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

ACSF = {"descriptor": "acsf", "species": ["Cu", "Au"], "r_cut": 5.0,
        "g2_params": [[0.5, 2.5], [1.0, 3.0], [0.3, 4.0], [0.05, 0.0]],
        "g4_params": [[0.01, 1, 1], [0.01, 1, -1]]}
BASES = 100_000
N_CANDIDATES = 2_000
#: OMat24 (Barroso-Luque et al., 2024): ~110 M frames; mean atoms per frame assumed below.
OMAT24_FRAMES = 110_000_000
OMAT24_ATOMS_PER_FRAME = 20


# -- the child: one step, timed in-process ----------------------------------------------------


def child(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=("curate", "describe", "select"))
    ap.add_argument("--store", required=True)
    ap.add_argument("--files", nargs="*", default=[])
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--scheduler", default="processes")
    ap.add_argument("--index-mb", type=float, default=None)
    args = ap.parse_args(argv)
    import pesdata
    from pesdata.descriptors import from_config

    sched = None if args.scheduler == "serial" else args.scheduler
    t0 = time.perf_counter()
    start = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = start.ru_utime + start.ru_stime  # the imports are not the step's
    if args.step == "curate":
        from pesdata.curate import curate_new

        report = curate_new(args.store, args.files, method="EMT", scheduler=sched,
                            workers=args.workers)
        out = {"frames": report.read, "added": report.added, "rejected": len(report.rejected)}
    elif args.step == "describe":
        from pesdata.descriptors import describe

        store = pesdata.open_store(args.store)
        res = describe(store, from_config(ACSF), batch_size=512, scheduler=sched,
                       workers=args.workers)
        out = {"structures": res["computed"], "atoms": res["n_atoms"]}
    else:
        from pesdata.select import select

        store = pesdata.open_store(args.store)
        seen: dict[str, list[float]] = {}

        def stage(name: str, done: int, total: int) -> None:  # wall time of each stage
            now = time.perf_counter() - t0
            seen.setdefault(name, [now, now])[1] = now

        sel = select(store, args.files, descriptor=from_config(ACSF), budget=100,
                     method="EMT", scheduler=sched, workers=args.workers, progress=stage,
                     **({} if args.index_mb is None else {"novelty_index_mb": args.index_mb}))
        out = {"candidates": int(len(sel.ledger)) if hasattr(sel, "ledger") else N_CANDIDATES,
               "selected": int(len(sel.selected)), "reference": store.read().__len__(),
               "candidate_atoms": int(sum(len(s) for s in sel.ledger["atom_numbers"]
                                          if hasattr(s, "__len__"))),
               # first and last progress call per stage: "novelty" spans the candidates'
               # scoring alone (the reference's fit ends before it starts)
               "stages_s": {k: [round(a, 2), round(b, 2)] for k, (a, b) in seen.items()},
               "search": sorted(set(sel.summary["criteria"]["novelty"]["search"].values()))}
    out["wall_s"] = time.perf_counter() - t0
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's workers, joined by now
    out["driver_maxrss_mb"] = me.ru_maxrss / 1024
    out["driver_cpu_s"] = me.ru_utime + me.ru_stime - cpu0
    out["workers_cpu_s"] = kids.ru_utime + kids.ru_stime
    print("RESULT " + json.dumps(out), flush=True)
    return 0


# -- the parent ----------------------------------------------------------------------------------


def run_child(step: str, store: Path, files: list[Path], workers: int, scheduler: str,
              index_mb: float | None = None) -> dict:
    """Run one step in a child process; poll the peak RSS of its process tree."""
    import psutil

    cmd = [sys.executable, str(Path(__file__).resolve()), "_child", step, "--store", str(store),
           "--workers", str(workers), "--scheduler", scheduler,
           *([] if index_mb is None else ["--index-mb", str(index_mb)]),
           "--files", *map(str, files)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [ps, *ps.children(recursive=True)]
            rss = 0
            for p in tree:
                try:
                    rss += p.memory_info().rss
                except psutil.Error:
                    pass
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{step} (workers={workers}) failed, rc {proc.returncode}:\n"
                           f"{stderr[-3000:]}")
    out = json.loads(lines[-1][7:])
    out["tree_peak_rss_mb"] = peak / 2**20
    return out


def rate(step: str, r: dict) -> float:
    unit = {"curate": "frames", "describe": "atoms", "select": "candidates"}[step]
    return r[unit] / r["wall_s"]


def _select_estimate(r: dict) -> dict:
    """select from the stage times of a 1-worker run: the wall before the candidates' scoring
    (describing them, fitting the reference) is a fixed cost per selection; describing the
    candidates costs per candidate (parallel); scoring costs per candidate atom — parallel over
    the reference's chunks when every element is streamed, in the driver when the reference
    is indexed in memory."""
    stages = r["stages_s"]
    a, b = stages["novelty"]
    d0, d1 = stages.get("describe candidates", [0.0, 0.0])
    per_atom = (b - a) / r["candidate_atoms"]
    per_candidate = (d1 - d0) / r["candidates"]
    fixed = a - (d1 - d0)
    atoms = OMAT24_FRAMES * OMAT24_ATOMS_PER_FRAME
    kinds = r.get("search") or []
    streamed = bool(kinds) and all(k.startswith("streamed") for k in kinds)
    score, describe = atoms * per_atom, OMAT24_FRAMES * per_candidate
    hundred = (score + describe) / 100 if streamed else max(score, describe / 100)
    return {"driver_cpu_per_unit_ms": 0.0 if streamed else 1e3 * per_atom * OMAT24_ATOMS_PER_FRAME,
            "worker_cpu_per_unit_ms": 1e3 * (per_candidate
                                             + (per_atom * OMAT24_ATOMS_PER_FRAME if streamed
                                                else 0.0)),
            "fixed_s": fixed, "score_ms_per_atom": 1e3 * per_atom,
            "search": ", ".join(kinds) if streamed else "in memory",
            "one_worker_h": (fixed + score + describe) / 3600,
            "hundred_workers_h": (fixed + hundred) / 3600,
            "workers_until_driver_bound": float("inf") if streamed
            else describe / max(score, 1e-9)}


def estimate(results: list[dict]) -> dict:
    """Hours to curate + describe + select OMat24-size data on 1 and on 100 workers.

    From the 1-worker run at the largest size: the driver's CPU seconds per unit (frame, atom
    or candidate) ``d`` — the serial part: parsing results, deduplication, the one writer's
    commit, the decisions — and the workers' CPU seconds per unit ``c`` (their start-up
    included). Driver and workers overlap (the driver consumes results while the next tasks
    run), so W workers take ``units × max(d, c / W)``: beyond ``W = c / d`` workers the single
    driver is the bottleneck. Assumes the per-unit costs of these 4-atom Cu/Au cells carry over
    (per frame for curate, per atom for describe; select: see :func:`_select_estimate`, its
    diversity pick over the candidates not extrapolated), workers on
    separate cores with the data on a shared file system at the same speed, and no cost for
    moving tasks between machines.
    """
    big = max(r["size"] for r in results)
    units_of = {"curate": OMAT24_FRAMES, "describe": OMAT24_FRAMES * OMAT24_ATOMS_PER_FRAME,
                "select": OMAT24_FRAMES}
    unit = {"curate": "frames", "describe": "atoms", "select": "candidates"}
    est = {}
    for step in ("curate", "describe", "select"):
        r1 = next((r for r in results if r["size"] == big and r["step"] == step
                   and r["workers"] == 1 and "workers_cpu_s" in r), None)
        if r1 is None:
            continue
        n = r1[unit[step]]
        d, c = r1["driver_cpu_s"] / n, r1["workers_cpu_s"] / n
        units = units_of[step]
        if step == "select":
            if "stages_s" in r1 and "novelty" in r1["stages_s"]:  # runs before the stage times
                est[step] = _select_estimate(r1)                   # are not estimated
            continue
        est[step] = {"driver_cpu_per_unit_ms": 1e3 * d, "worker_cpu_per_unit_ms": 1e3 * c,
                     "one_worker_h": units * max(d, c) / 3600,
                     "hundred_workers_h": units * max(d, c / 100) / 3600,
                     "workers_until_driver_bound": c / d if d > 0 else float("inf")}
    if est:
        est["total"] = {k: sum(e[k] for e in est.values())
                        for k in ("one_worker_h", "hundred_workers_h")}
    return est


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        return child(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", nargs="+", default=["curate", "describe", "select"])
    ap.add_argument("--scheduler", default="processes",
                    help="processes (default), threads, serial, or tcp://HOST:PORT")
    ap.add_argument("--work", default=None, help="scratch directory for the stores "
                    "(default: a directory beside the data cache)")
    ap.add_argument("--bases", type=int, default=BASES,
                    help="distinct EMT calculations (the rest are rigid translations)")
    ap.add_argument("--index-mb", type=float, default=None,
                    help="select's novelty_index_mb (default: the library's, 256)")
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--estimate-from", metavar="JSON", nargs="+",
                    help="only print the table and the estimate of earlier bench_scale.json "
                    "files (a later file's runs replace an earlier one's of the same step, size "
                    "and workers)")
    args = ap.parse_args(argv)
    if args.estimate_from:
        merged: dict = {}
        for f in args.estimate_from:
            for r in json.loads(Path(f).read_text())["results"]:
                merged[(r["step"], r["size"], r["workers"])] = r
        results = sorted(merged.values(), key=lambda r: (r["size"], r["workers"],
                                                         ("curate", "describe", "select").index(
                                                             r["step"])))
        print(table(results, estimate(results)))
        return 0
    from _scale_data import PER_FILE, cache_dir, generate

    largest = max(args.sizes)
    total = largest + N_CANDIDATES
    files = generate(total, args.bases)
    cand_files = files[largest // PER_FILE:]
    work = Path(args.work or cache_dir(args.bases).parent / "work")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version()}
    print(f"bench_scale: sizes {args.sizes}, workers {args.workers}, scheduler "
          f"{args.scheduler}, {os.cpu_count()} cores", flush=True)
    results = []
    for size in sorted(args.sizes):
        inputs = files[: -(-size // PER_FILE)]
        for w in args.workers:
            store = work / f"n{size}-w{w}"
            if "curate" in args.steps:
                if store.is_symlink():
                    store.unlink()
                shutil.rmtree(store, ignore_errors=True)
                r = run_child("curate", store, inputs, w, args.scheduler)
                if r.get("added") != size:  # a store left behind would make this a dedup run
                    raise SystemExit(f"curate into {store} added {r.get('added')} of {size} "
                                     "frames (a store left behind, or rejected frames): the "
                                     "figures would not be a fresh curate's")
                results.append({"step": "curate", "size": size, "workers": w, **r})
                _show(results[-1])
            elif not store.is_dir():  # describe / select alone: the store an earlier run kept
                kept = sorted(p for p in work.glob(f"n{size}-w*") if p.is_dir())
                if not kept:
                    raise SystemExit(f"no store of {size} structures under {work}: run the "
                                     "curate step first")
                store = kept[-1]
            if "describe" in args.steps:
                shutil.rmtree(store / "arrays", ignore_errors=True)
                r = run_child("describe", store, [], w, args.scheduler)
                results.append({"step": "describe", "size": size, "workers": w, **r})
                _show(results[-1])
            if "select" in args.steps:
                shutil.rmtree(store / "artefacts" / "selection", ignore_errors=True)
                r = run_child("select", store, cand_files, w, args.scheduler, args.index_mb)
                results.append({"step": "select", "size": size, "workers": w, **r})
                _show(results[-1])
        if "curate" in args.steps:  # keep one store per size
            for w in args.workers[:-1]:
                shutil.rmtree(work / f"n{size}-w{w}", ignore_errors=True)
    est = estimate(results)
    doc = {"machine": machine, "scheduler": args.scheduler, "results": results,
           "estimate_100_workers": est,
           "assumptions": {"omat24_frames": OMAT24_FRAMES,
                           "omat24_atoms_per_frame": OMAT24_ATOMS_PER_FRAME}}
    (out / "bench_scale.json").write_text(json.dumps(doc, indent=1))
    print(table(results, est))
    return 0


def _show(r: dict) -> None:
    print(f"  {r['step']:8s} N={r['size']:>9,} workers={r['workers']}: {r['wall_s']:8.1f} s, "
          f"{rate(r['step'], r):>10,.0f}/s, tree peak RSS {r['tree_peak_rss_mb']:,.0f} MB, "
          f"driver {r['driver_maxrss_mb']:,.0f} MB", flush=True)


def table(results: list[dict], est: dict) -> str:
    unit = {"curate": "frames/s", "describe": "atoms/s", "select": "candidates/s"}
    lines = ["| step | structures | workers | wall s | rate | efficiency | peak RSS (tree / "
             "driver), MB |", "|---|---|---|---|---|---|---|"]
    for r in results:
        one = next((x for x in results if x["step"] == r["step"] and x["size"] == r["size"]
                    and x["workers"] == 1), None)
        eff = (f"{rate(r['step'], r) / (r['workers'] * rate(r['step'], one)):.2f}"
               if one is not None and r["workers"] > 1 else "—")
        lines.append(f"| {r['step']} | {r['size']:,} | {r['workers']} | {r['wall_s']:.1f} | "
                     f"{rate(r['step'], r):,.0f} {unit[r['step']]} | {eff} | "
                     f"{r['tree_peak_rss_mb']:,.0f} / {r['driver_maxrss_mb']:,.0f} |")
    if est:
        lines += ["", f"OMat24-size estimate ({OMAT24_FRAMES:,} frames, "
                  f"{OMAT24_ATOMS_PER_FRAME} atoms per frame assumed):", "",
                  "| step | driver CPU per unit, ms | worker CPU per unit, ms | 1 worker, h | "
                  "100 workers, h | driver-bound beyond |", "|---|---|---|---|---|---|"]
        for step, e in est.items():
            if step == "total":
                continue
            driver = f"{e['driver_cpu_per_unit_ms']:.4f}"
            if "fixed_s" in e:
                driver = f"{e['fixed_s']:.0f} s once + {driver}"
                step = f"select ({e['search']})"
            bound = e["workers_until_driver_bound"]
            bound = "—" if bound == float("inf") else f"{bound:,.0f} workers"
            lines.append(f"| {step} | {driver} | "
                         f"{e['worker_cpu_per_unit_ms']:.4f} | {e['one_worker_h']:,.1f} | "
                         f"{e['hundred_workers_h']:,.1f} | {bound} |")
        if "total" in est:
            lines.append(f"| **total** | | | {est['total']['one_worker_h']:,.1f} | "
                         f"{est['total']['hundred_workers_h']:,.1f} | |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
