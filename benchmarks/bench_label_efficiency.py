"""Does the selection save labels? Test RMSE against the number of labels, per strategy.

One fixed candidate pool labelled by ASE's EMT (Cu, 2x2x2 = 32-atom cells, the stand-in for
DFT), composed as exploration output is: 80 % near-equilibrium fcc frames (Langevin MD at
300 K, frames 50 fs apart, four trajectories) and 20 % rarer kinds in equal parts — hot,
liquid-like MD (1200 and 1500 K), vacancies (31 atoms, 300/600 K MD), surfaces (fcc(100) and
fcc(111) 2x2x8 slabs, 6 Å vacuum, 300 K MD) and strained cells (random symmetric strain up to
6 % normal / 4 % shear, rattled 0.05 Å). A held-out test set has the SAME number of frames of
each of the five kinds, from independent trajectories. Every run starts from the same seed set
(``--seed-frames`` 300 K frames drawn from the pool with the run's seed) and adds ``--batch``
labels per round for ``--rounds`` rounds with one of four strategies:

* ``pesdata``: :func:`pesdata.select.select` with the default novelty criterion and
  ``committee=`` a committee of ``--members`` HDNNs trained on the current training set
  (default trust window), ``budget`` = the batch, FPS diversity (the defaults);
* ``random``: uniform draws from the pool frames not yet labelled;
* ``fps``: ``select(..., novelty=False, diversity="fps")`` — diversity alone;
* ``direct``: ``select(..., novelty=False, diversity="direct")`` — DIRECT sampling alone.

Each strategy's training set lives in its own store (the labelled pool frames are curated into
it, so ``select`` compares the candidates with what is already labelled and never picks a frame
twice); after each round the same HDNN (fixed hyperparameters below, ACSF default grid at 5 Å,
early stopping on 10 % of the training set) is retrained from scratch and measured on the test
set: energy RMSE (meV/atom) and force-component RMSE (eV/Å), overall and per kind. The
committee's first member is that same HDNN (same seed, same data), so for ``pesdata`` the
committee's member 0 is the model that is measured; round 0 is shared by all strategies.

Output: ``<out>/bench_label_efficiency.json`` ({"curves": [{strategy, seed, n_labels,
energy_rmse, force_rmse, force_rmse_by_kind, picks}], "summary": {...}}), the figure
``<out>/bench_label_efficiency.png`` (mean ± std over seeds) and a table: each strategy's
final RMSEs, and the labels ``pesdata`` needs to reach random selection's final (mean) force
RMSE, as a share of random's labels (the issue's bar: ≤ 50 %). Labels count every labelled
frame, the seed set included; the share of *selected* labels is printed beside it.

Sizes: 400 pool frames, 60 test frames, 8 seed frames, 6 rounds × 8 labels, 3 seeds, a
committee of 3, at most 200 epochs (patience 40), one torch thread — chosen so the whole run
stays under 30 min on 2 CPU cores: measured 15.5 min wall (932 s) on the 2-core development
machine while other jobs shared it (EMT pool 30 s; a ``pesdata`` round 25–37 s, committee
training and scoring 400 candidates included; a random/FPS/DIRECT round 2–11 s); 1.35 GB
peak memory. ``--quick`` (smoke run, under a minute): 100 pool frames, 20 test frames, 2 rounds,
one seed, at most 60 epochs. ``pesdata`` labels fewer than the batch when fewer frames qualify
(novel or committee spread ≥ the trust window's lower bound) — its curve then ends at fewer
labels; with no new label the model is not retrained. Usage:
``python benchmarks/bench_label_efficiency.py [--quick] [--out DIR] [--seeds N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

KINDS = ("md300", "hot", "vacancy", "surface", "strained")
STRATEGIES = ("pesdata", "random", "fps", "direct")
LABELS = {"pesdata": "pesdata: novelty + committee", "random": "random",
          "fps": "FPS (diversity only)", "direct": "DIRECT (diversity only)"}
A0 = 3.61  # Å, the conventional fcc Cu lattice constant (EMT's minimum is close to it)
HDNN = {"hidden": (64, 64), "epochs": 200, "patience": 40, "lr_patience": 15,
        "batch_size": 8, "force_weight": 0.1}
FULL = {"n_common": 320, "n_rare": 20, "n_test": 12, "seeds": 3, "rounds": 6, "batch": 8,
        "seed_frames": 8, "members": 3, "epochs": 200}
QUICK = {"n_common": 80, "n_rare": 5, "n_test": 4, "seeds": 1, "rounds": 2, "batch": 8,
         "seed_frames": 8, "members": 3, "epochs": 60}


# -- the EMT data ----------------------------------------------------------------------------
def _label(atoms, kind: str):
    """A copy of ``atoms`` with its EMT energy and forces as a SinglePointCalculator."""
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    a = atoms.copy()
    a.calc = EMT()
    e, f = a.get_potential_energy(), a.get_forces()
    a.calc = SinglePointCalculator(a, energy=e, forces=f)
    a.info["config_type"] = kind
    return a


def _md(atoms, temperature: float, n: int, every: int, seed: int, kind: str) -> list:
    """``n`` EMT-labelled frames, ``every`` 5-fs Langevin steps apart, after 100 steps."""
    from ase import units
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    atoms = atoms.copy()
    atoms.calc = EMT()
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dyn = Langevin(atoms, 5 * units.fs, temperature_K=temperature, friction=0.02, rng=rng)
    dyn.run(100)
    out = []
    for _ in range(n):
        dyn.run(every)
        out.append(_label(atoms, kind))
    return out


def _bulk(a: float = A0):
    from ase.build import bulk

    return bulk("Cu", "fcc", a=a, cubic=True) * (2, 2, 2)


def kind_frames(kind: str, n: int, seed: int) -> list:
    """``n`` EMT-labelled frames of ``kind`` (one of ``KINDS``), reproducible from ``seed``.

    Two trajectories (or, for ``md300``, four) share the frames; ``hot``, ``vacancy`` and
    ``surface`` alternate between their two temperatures or facets.
    """
    from ase.build import fcc100, fcc111

    if kind == "strained":
        rng = np.random.default_rng(seed)
        out = []
        for k in range(n):
            a = _bulk()
            eps = np.diag(rng.uniform(-0.06, 0.06, 3))
            shear = rng.uniform(-0.04, 0.04, 3)
            eps[[0, 0, 1], [1, 2, 2]] = shear
            eps[[1, 2, 2], [0, 0, 1]] = shear
            a.set_cell(a.cell.array @ (np.eye(3) + eps), scale_atoms=True)
            a.rattle(0.05, seed=seed * 1000 + k)
            out.append(_label(a, kind))
        return out
    n_traj = 4 if kind == "md300" else 2
    sizes = [n // n_traj + (t < n % n_traj) for t in range(n_traj)]
    out = []
    for t, m in enumerate(sizes):
        s = seed * 10 + t
        if kind == "md300":
            out += _md(_bulk(), 300, m, 10, s, kind)
        elif kind == "hot":
            out += _md(_bulk(A0 * 1.02), (1200, 1500)[t % 2], m, 20, s, kind)
        elif kind == "vacancy":
            a = _bulk()
            del a[int(np.random.default_rng(s).integers(len(a)))]
            out += _md(a, (300, 600)[t % 2], m, 20, s, kind)
        elif kind == "surface":
            slab = (fcc100 if t % 2 == 0 else fcc111)("Cu", (2, 2, 8), a=A0, vacuum=6.0)
            out += _md(slab, 300, m, 20, s, kind)
        else:  # pragma: no cover - guarded by KINDS
            raise ValueError(kind)
    return out


def make_pool(n_common: int, n_rare: int, seed: int = 1) -> list:
    """The candidate pool: ``n_common`` 300 K frames and ``n_rare`` of each rarer kind."""
    frames = kind_frames("md300", n_common, seed)
    for k, kind in enumerate(KINDS[1:]):
        frames += kind_frames(kind, n_rare, seed * 100 + k + 1)
    return frames


def make_test(n_per_kind: int, seed: int = 7) -> list:
    """The test set: ``n_per_kind`` frames of every kind, from trajectories of their own."""
    return [a for k, kind in enumerate(KINDS)
            for a in kind_frames(kind, n_per_kind, seed * 100 + k + 50)]


# -- training, measuring, picking ------------------------------------------------------------
def fit(desc, data, idx, seed: int, epochs: int, members: int | None = None):
    """``(hdnn, committee)`` trained on ``data[idx]``; the HDNN is the committee's member 0
    when ``members`` is given (same seed, same data: the same model), else trained alone."""
    from pesdata.train import Committee, HDNNPotential

    params = {**HDNN, "epochs": epochs, "seed": seed}
    if members:
        committee = Committee(desc, n_members=members, **params).fit_subset(data, idx)
        return committee.members[0], committee
    return HDNNPotential(desc, **params).fit_subset(data, idx), None


def evaluate(model, test: list, test_kinds: np.ndarray) -> dict:
    """Test energy RMSE (meV/atom), force RMSE (eV/Å) overall and force RMSE per kind.

    The overall numbers are :func:`pesdata.train.predict_metrics`'s; the per-kind ones are
    recomputed here with numpy from its raw predictions (and the overall one checked).
    """
    from pesdata.train import predict_metrics

    metrics, raw = predict_metrics(model, test)
    df = [np.asarray(p) - np.asarray(a.calc.results["forces"])
          for p, a in zip(raw["forces"], raw["images"], strict=True)]
    check = float(np.sqrt(np.mean(np.concatenate(df) ** 2)))
    if not np.isclose(check, metrics["force_rmse"], rtol=1e-9):
        raise RuntimeError(f"force RMSE {metrics['force_rmse']} != numpy's {check}")
    by_kind = {k: float(np.sqrt(np.mean(np.concatenate(
        [d for d, t in zip(df, test_kinds, strict=True) if t == k]) ** 2)))
        for k in KINDS if np.any(test_kinds == k)}
    return {"energy_rmse": metrics["energy_rmse"], "force_rmse": metrics["force_rmse"],
            "force_rmse_by_kind": by_kind}


def pick(strategy: str, store, cands, position: dict, labelled: list[int], committee,
         budget: int, seed: int, rng: np.random.Generator, name: str) -> list[int]:
    """Pool indices of the next ``budget`` frames to label with ``strategy``."""
    if strategy == "random":
        free = np.setdiff1d(np.arange(len(position)), labelled)
        return sorted(int(k) for k in rng.choice(free, min(budget, len(free)), replace=False))
    from pesdata.select import select

    kw = ({"committee": committee} if strategy == "pesdata"
          else {"novelty": False, "diversity": strategy})
    import torch

    threads = torch.get_num_threads()
    sel = select(store, cands, budget=budget, seed=seed, name=name, **kw)
    # select's faiss search sets OpenMP's thread count to every CPU, and torch shares that
    # libgomp: set ours again (two spinning threads on a busy 2-core machine ran 6x slower)
    torch.set_num_threads(threads)
    new = [position[i] for i in sel.selected["id"]]
    if set(new) & set(labelled):  # select() must never pick a stored frame
        raise RuntimeError(f"{strategy} picked labelled frames {sorted(set(new) & set(labelled))}")
    return new


def run_seed(seed: int, cfg: dict, pool_spec: str, pool: list, kinds: np.ndarray,
             position: dict, data, desc, test: list, test_kinds: np.ndarray,
             work: Path) -> list[dict]:
    """The curves of every strategy for one seed (seed set, HDNN seed, picks)."""
    import pesdata
    from pesdata.select import read_candidates

    cands = read_candidates(pool_spec)
    rng = np.random.default_rng(seed)
    start = sorted(int(k) for k in rng.choice(np.flatnonzero(kinds == "md300"),
                                              cfg["seed_frames"], replace=False))
    t0 = time.perf_counter()
    model0, committee0 = fit(desc, data, start, seed, cfg["epochs"], cfg["members"])
    ev0 = evaluate(model0, test, test_kinds)
    print(f"seed {seed} round 0: {len(start)} labels, E {ev0['energy_rmse']:.2f} meV/atom, "
          f"F {ev0['force_rmse']:.4f} eV/Å ({time.perf_counter() - t0:.0f} s)", flush=True)
    curves = []
    for strategy in cfg["strategies"]:
        store = pesdata.open_store(work / f"{strategy}-seed{seed}", create=True)
        store.curate([pool[k] for k in start], method="EMT")
        labelled, committee, ev = list(start), committee0, ev0
        curve = {"strategy": strategy, "seed": seed, "n_labels": [len(labelled)],
                 "energy_rmse": [ev0["energy_rmse"]], "force_rmse": [ev0["force_rmse"]],
                 "force_rmse_by_kind": [ev0["force_rmse_by_kind"]], "picks": []}
        draws = np.random.default_rng([seed, 99])
        for r in range(1, cfg["rounds"] + 1):
            t0 = time.perf_counter()
            new = pick(strategy, store, cands, position, labelled, committee, cfg["batch"],
                       seed, draws, f"round-{r}")
            if len(new) < cfg["batch"]:
                print(f"  {strategy} seed {seed} round {r}: only {len(new)} frames qualified",
                      flush=True)
            if new:
                store.curate([pool[k] for k in new], method="EMT")
            labelled += new
            members = cfg["members"] if strategy == "pesdata" and r < cfg["rounds"] else None
            if new:  # nothing new (nothing qualified): the same data, the same model
                model, committee = fit(desc, data, labelled, seed, cfg["epochs"], members)
                ev = evaluate(model, test, test_kinds)
            counts = {k: int(np.sum(kinds[new] == k)) for k in KINDS}
            curve["n_labels"].append(len(labelled))
            for key in ("energy_rmse", "force_rmse", "force_rmse_by_kind"):
                curve[key].append(ev[key])
            curve["picks"].append(counts)
            print(f"  {strategy:8} seed {seed} round {r}: {len(labelled):3d} labels, "
                  f"E {ev['energy_rmse']:6.2f} meV/atom, F {ev['force_rmse']:.4f} eV/Å, "
                  f"picks {' '.join(f'{k}:{v}' for k, v in counts.items() if v)} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        curves.append(curve)
    return curves


# -- summary, table, figure ------------------------------------------------------------------
def _stack(curves: list[dict], strategy: str, key: str) -> np.ndarray:
    return np.array([c[key] for c in curves if c["strategy"] == strategy], dtype=float)


def labels_to_reach(n_labels: np.ndarray, rmse: np.ndarray, target: float) -> float | None:
    """Labels at which the curve first reaches ``target`` (linear between rounds), or None."""
    if rmse[0] <= target:
        return float(n_labels[0])
    for k in range(1, len(rmse)):
        if rmse[k] <= target:
            f0, f1 = rmse[k - 1], rmse[k]
            return float(n_labels[k - 1] + (n_labels[k] - n_labels[k - 1]) * (f0 - target)
                         / (f0 - f1))
    return None


def summarize(curves: list[dict], seed_frames: int) -> dict:
    """Per strategy: final and mean-over-rounds RMSEs (mean ± std over seeds); the labels
    ``pesdata`` needs to reach random's final force RMSE (on the mean curves and per seed)."""
    out: dict = {"strategies": {}}
    strategies = list(dict.fromkeys(c["strategy"] for c in curves))
    for s in strategies:
        n = _stack(curves, s, "n_labels").mean(0)
        e, f = _stack(curves, s, "energy_rmse"), _stack(curves, s, "force_rmse")
        kinds = [c["force_rmse_by_kind"][-1] for c in curves if c["strategy"] == s]
        picks = {k: int(sum(p[k] for c in curves if c["strategy"] == s for p in c["picks"]))
                 for k in KINDS}
        out["strategies"][s] = {
            "n_labels": n.tolist(),
            "energy_rmse_mean": e.mean(0).tolist(), "energy_rmse_std": e.std(0).tolist(),
            "force_rmse_mean": f.mean(0).tolist(), "force_rmse_std": f.std(0).tolist(),
            "final_energy_rmse": [float(e[:, -1].mean()), float(e[:, -1].std())],
            "final_force_rmse": [float(f[:, -1].mean()), float(f[:, -1].std())],
            "mean_force_rmse_over_rounds": float(f[:, 1:].mean()) if f.shape[1] > 1 else None,
            "final_force_rmse_by_kind": {k: float(np.mean([d[k] for d in kinds]))
                                         for k in kinds[0]},
            "picked_kinds": picks,
        }
    if {"pesdata", "random"} <= set(strategies):
        a, r = out["strategies"]["pesdata"], out["strategies"]["random"]
        target, n_random = r["final_force_rmse"][0], r["n_labels"][-1]
        reach = labels_to_reach(np.array(a["n_labels"]), np.array(a["force_rmse_mean"]), target)
        per_seed = []
        fa, fr = _stack(curves, "pesdata", "force_rmse"), _stack(curves, "random", "force_rmse")
        na = _stack(curves, "pesdata", "n_labels")
        for k in range(len(fa)):
            got = labels_to_reach(na[k], fa[k], fr[k, -1])
            per_seed.append(None if got is None else got / n_random)
        out["reach_random_final_force"] = {
            "target_force_rmse": target, "random_labels": n_random, "pesdata_labels": reach,
            "ratio": None if reach is None else reach / n_random,
            "ratio_selected_labels": None if reach is None else
            (reach - seed_frames) / (n_random - seed_frames),
            "ratio_per_seed": per_seed,
            "bar": "pesdata reaches random's final force RMSE with <= 50 % of its labels",
            "bar_met": reach is not None and reach / n_random <= 0.5,
        }
        out["pesdata_not_worse_than"] = {  # final vs final, and at pesdata's final labels
            s: {"final": a["final_force_rmse"][0] <= v["final_force_rmse"][0],
                "at_equal_labels": a["final_force_rmse"][0] <= float(np.interp(
                    a["n_labels"][-1], v["n_labels"], v["force_rmse_mean"]))}
            for s, v in out["strategies"].items() if s in ("fps", "direct")}
        for v in out["strategies"].values():
            got = labels_to_reach(np.array(v["n_labels"]), np.array(v["force_rmse_mean"]),
                                  target)
            v["labels_to_reach_random_final_force"] = got
    return out


def print_table(summary: dict) -> None:
    print(f"\n{'strategy':10}{'labels':>7}{'E RMSE':>16}{'F RMSE':>18}{'F mean/rounds':>15}"
          "   final F RMSE per kind (" + " ".join(KINDS) + ")   picks per kind")
    for s, v in summary["strategies"].items():
        e, f = v["final_energy_rmse"], v["final_force_rmse"]
        by = " ".join(f"{v['final_force_rmse_by_kind'].get(k, np.nan):.3f}" for k in KINDS)
        picks = " ".join(str(v["picked_kinds"][k]) for k in KINDS)
        mean_f = v["mean_force_rmse_over_rounds"]
        print(f"{s:10}{v['n_labels'][-1]:7.0f}{e[0]:9.2f} ± {e[1]:4.2f}{f[0]:10.4f} ± {f[1]:.4f}"
              f"{(mean_f if mean_f is not None else np.nan):15.4f}   {by}   {picks}")
    print("energies meV/atom, forces eV/Å (mean ± std over seeds; test set: equal numbers of "
          "each kind)")
    reach = summary.get("reach_random_final_force")
    if reach:
        if reach["pesdata_labels"] is None:
            print(f"pesdata does NOT reach random's final force RMSE "
                  f"({reach['target_force_rmse']:.4f} eV/Å at {reach['random_labels']:.0f} "
                  "labels) within its labels")
        else:
            print(f"pesdata reaches random's final force RMSE ({reach['target_force_rmse']:.4f} "
                  f"eV/Å at {reach['random_labels']:.0f} labels) with "
                  f"{reach['pesdata_labels']:.1f} labels: {100 * reach['ratio']:.0f} % of "
                  f"random's ({100 * reach['ratio_selected_labels']:.0f} % of the selected "
                  f"ones); bar ≤ 50 %: {'met' if reach['bar_met'] else 'NOT met'}")
        seeds = ", ".join("not reached" if x is None else f"{100 * x:.0f} %"
                          for x in reach["ratio_per_seed"])
        print(f"per seed (each against its own random run): {seeds}")
        worse = summary["pesdata_not_worse_than"]
        print("pesdata's final force RMSE ≤ " + "; ".join(
            f"{s}'s final: {'yes' if ok['final'] else 'NO'}, {s}'s at "
            f"{summary['strategies']['pesdata']['n_labels'][-1]:.0f} labels: "
            f"{'yes' if ok['at_equal_labels'] else 'NO'}" for s, ok in worse.items()))
        reached = {s: v["labels_to_reach_random_final_force"]
                   for s, v in summary["strategies"].items()}
        print("labels to reach random's final force RMSE (mean curves): " + ", ".join(
            f"{s} {'never' if n is None else format(n, '.1f')}" for s, n in reached.items()))


def plot(summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), constrained_layout=True)
    for ax, key, unit in ((axes[0], "energy_rmse", "meV/atom"), (axes[1], "force_rmse", "eV/Å")):
        for s, v in summary["strategies"].items():
            n = np.array(v["n_labels"])
            m, sd = np.array(v[f"{key}_mean"]), np.array(v[f"{key}_std"])
            (line,) = ax.plot(n, m, "o-", ms=4, label=LABELS.get(s, s))
            ax.fill_between(n, m - sd, m + sd, color=line.get_color(), alpha=0.18, lw=0)
        ax.set_xlabel("labelled structures (seed set included)")
        ax.set_ylabel(f"test {key.split('_')[0]} RMSE ({unit})")
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(LogLocator(subs=(2, 3, 5)))
        for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis(FormatStrFormatter("%g"))
        ax.tick_params(axis="y", which="both", labelsize=8)
        ax.grid(alpha=0.3, which="both")
    reach = summary.get("reach_random_final_force")
    if reach:
        axes[1].axhline(reach["target_force_rmse"], color="grey", ls="--", lw=1,
                        label="random's final force RMSE")
    axes[1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (2–3 min)")
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--seeds", type=int, help="number of seeds (default 3; quick 1)")
    ap.add_argument("--rounds", type=int, help="rounds (default 6; quick 2)")
    ap.add_argument("--batch", type=int, help="labels per round (default 8)")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared 2-core machine two threads "
                         "ran one training 6x slower than one)")
    args = ap.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    for key in ("seeds", "rounds", "batch"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    cfg["strategies"] = [s for s in args.strategies.split(",") if s]
    unknown = sorted(set(cfg["strategies"]) - set(STRATEGIES))
    if unknown:
        ap.error(f"unknown strategies {unknown}; known: {', '.join(STRATEGIES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    # idle OpenMP threads sleep instead of spinning (read when torch loads libgomp): select's
    # faiss search sets OpenMP to every CPU, and spinning threads on a shared machine stall
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import torch

    import pesdata
    from pesdata.descriptors import ACSF
    from pesdata.train import HDNNPotential

    torch.set_num_threads(args.threads)
    pool_frames = make_pool(cfg["n_common"], cfg["n_rare"])
    test = make_test(cfg["n_test"])
    test_kinds = np.array([a.info["config_type"] for a in test])
    print(f"pool {len(pool_frames)} frames, test {len(test)} frames "
          f"({time.perf_counter() - t_start:.0f} s)", flush=True)
    curves = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pool_store = pesdata.open_store(work / "pool", create=True)
        pool_store.curate(pool_frames, method="EMT")
        snap = pool_store.read()
        pool = snap.to_atoms()  # store order: the candidates' order
        kinds = np.array(snap.table(columns=["config_type"]).column(0).to_pylist())
        position = {i: k for k, i in enumerate(snap.ids)}
        desc = ACSF(["Cu"], 5.0)
        data = HDNNPotential(desc, **HDNN).make_dataset(pool)
        print(f"pool stored and described ({time.perf_counter() - t_start:.0f} s)", flush=True)
        for seed in range(cfg["seeds"]):
            curves += run_seed(seed, cfg, f"{work / 'pool'}@{snap.version}", pool, kinds,
                               position, data, desc, test, test_kinds, work)
    summary = summarize(curves, cfg["seed_frames"])
    wall = time.perf_counter() - t_start
    composition = {k: int(np.sum(kinds == k)) for k in KINDS}
    summary.update({"wall_s": wall, "config": {**cfg, "hdnn": {**HDNN, "epochs": cfg["epochs"]},
                                                "pool": composition,
                                                "test_per_kind": cfg["n_test"]}})
    (out / "bench_label_efficiency.json").write_text(
        json.dumps({"curves": curves, "summary": summary}, indent=1))
    print_table(summary)
    title = (f"EMT Cu, pool {len(pool)} frames ({composition['md300']} at 300 K + "
             f"{cfg['n_rare']} each hot/vacancy/surface/strained), test {len(test)} "
             f"({cfg['n_test']} per kind); {cfg['seeds']} seed(s), mean ± std")
    plot(summary, out / "bench_label_efficiency.png", title)
    print(f"wrote {out / 'bench_label_efficiency.json'} and {out / 'bench_label_efficiency.png'}"
          f" ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
