"""Make the small, real data set that ``make demo`` curates (``python -m pesdata.demo DIR``).

Everything is computed here with ASE's EMT calculator for copper, so the demo needs no
downloaded data:

* ``cu_md.extxyz`` — 24 snapshots of a 108-atom Cu cell from Langevin MD at 300 K (labelled
  with EMT energy, forces and stress) plus 2 rattled cells without labels (awaiting a
  calculation);
* ``cu_more.extxyz`` — 12 new cells (strained, with a vacancy, a (111) slab), 5 exact
  duplicates of MD snapshots, 1 MD snapshot with an energy 0.5 eV (4.6 meV/atom) higher (a
  label conflict)
  and the 2 formerly unlabelled cells, now labelled (relabelled);
* ``cu_broken.extxyz`` — 4 good cells, 1 with NaN forces and 1 with two overlapping atoms;
* ``cu_candidates.extxyz`` — 14 unlabelled 32-atom candidates for ``pesdata select``: 6 cells
  rattled as at 300 K (familiar) and 8 snapshots of Langevin MD at 1200 K (novel);
* ``cu_seeds.extxyz`` — 2 unlabelled 32-atom fcc cells the loop's MD exploration starts from;
* ``cu_test.extxyz`` — the loop's test set, 4 labelled 32-atom frames of each kind: 300 K and
  1200 K MD, vacancies, (111) slabs, strained cells.

:func:`run_demo` is ``pesdata demo``: a short curate walk-through, then the active-learning
loop on these data with EMT as the stand-in for DFT, then the report.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

__all__ = ["make_demo_data"]


def _label(atoms: Atoms, shift: float = 0.0) -> Atoms:
    """A copy of ``atoms`` with EMT labels frozen into a SinglePointCalculator."""
    atoms = atoms.copy()
    atoms.calc = EMT()
    results = {
        "energy": atoms.get_potential_energy() + shift,
        "forces": atoms.get_forces(),
    }
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def make_demo_data(directory: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write the three demo files into ``directory``; return their paths by short name."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    cell = bulk("Cu", "fcc", a=3.61, cubic=True) * (3, 3, 3)
    cell.calc = EMT()
    with warnings.catch_warnings():  # renamed thermalize_momenta in ASE 3.29; keep both working
        warnings.simplefilter("ignore", DeprecationWarning)
        MaxwellBoltzmannDistribution(cell, temperature_K=300, rng=rng)
    dyn = Langevin(cell, 2 * units.fs, temperature_K=300, friction=0.02, rng=rng, fixcm=False)
    md = []
    for _ in range(24):
        dyn.run(10)
        snap = _label(cell)
        del snap.arrays["momenta"]
        md.append(snap)
    pending = []
    for _ in range(2):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        a.rattle(0.08, seed=int(rng.integers(1 << 30)))
        pending.append(a)
    ase.io.write(out / "cu_md.extxyz", md + pending, format="extxyz")

    new = []
    for strain in (-0.03, -0.015, 0.015, 0.03):
        a = bulk("Cu", "fcc", a=3.61 * (1 + strain), cubic=True) * (2, 2, 2)
        a.rattle(0.03, seed=int(rng.integers(1 << 30)))
        new.append(_label(a))
    for _ in range(4):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (3, 3, 3)
        del a[int(rng.integers(len(a)))]
        a.rattle(0.05, seed=int(rng.integers(1 << 30)))
        new.append(_label(a))
    for _ in range(4):
        slab = fcc111("Cu", size=(3, 3, 4), vacuum=6.0, periodic=True)
        slab.rattle(0.04, seed=int(rng.integers(1 << 30)))
        slab.info.pop("adsorbate_info", None)
        new.append(_label(slab))
    duplicates = [md[i] for i in (1, 5, 9, 13, 17)]
    conflict = _label(md[20], shift=0.5)
    relabelled = [_label(a) for a in pending]
    ase.io.write(
        out / "cu_more.extxyz", new + duplicates + [conflict] + relabelled, format="extxyz"
    )

    good = []
    for _ in range(4):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        a.rattle(0.06, seed=int(rng.integers(1 << 30)))
        good.append(_label(a))
    nan_forces = good[0].copy()
    forces = good[0].get_forces().copy()
    forces[3, 1] = np.nan
    nan_forces.calc = SinglePointCalculator(
        nan_forces, energy=good[0].get_potential_energy(), forces=forces
    )
    overlap = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    overlap.positions[1] = overlap.positions[0] + [0.3, 0.0, 0.0]
    overlap = _label(overlap)
    ase.io.write(out / "cu_broken.extxyz", good + [nan_forces, overlap], format="extxyz")

    familiar = []
    for _ in range(6):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        a.rattle(0.06, seed=int(rng.integers(1 << 30)))
        a.info["config_type"] = "rattled-300K"
        familiar.append(a)
    hot = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    hot.calc = EMT()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        MaxwellBoltzmannDistribution(hot, temperature_K=1200, rng=rng)
    dyn = Langevin(hot, 2 * units.fs, temperature_K=1200, friction=0.05, rng=rng, fixcm=False)
    hot_frames = []
    for _ in range(8):
        dyn.run(25)
        a = Atoms(hot.numbers, hot.positions, cell=hot.cell, pbc=True)
        a.info["config_type"] = "md-1200K"
        hot_frames.append(a)
    ase.io.write(out / "cu_candidates.extxyz", familiar + hot_frames, format="extxyz")
    seeds = [bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2) for _ in range(2)]
    seeds[1].rattle(0.05, seed=int(rng.integers(1 << 30)))
    ase.io.write(out / "cu_seeds.extxyz", seeds, format="extxyz")
    ase.io.write(out / "cu_test.extxyz", _test_set(rng), format="extxyz")
    names = ("cu_md", "cu_more", "cu_broken", "cu_candidates", "cu_seeds", "cu_test")
    return {name: out / f"{name}.extxyz" for name in names}


def _md(temperature: float, n: int, rng, every: int = 25) -> list[Atoms]:
    cell = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    cell.calc = EMT()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        MaxwellBoltzmannDistribution(cell, temperature_K=temperature, rng=rng)
    dyn = Langevin(cell, 2 * units.fs, temperature_K=temperature, friction=0.05, rng=rng,
                   fixcm=False)
    out = []
    for _ in range(n):
        dyn.run(every)
        out.append(_label(Atoms(cell.numbers, cell.positions, cell=cell.cell, pbc=True)))
    return out


def _test_set(rng) -> list[Atoms]:
    """4 labelled 32-atom frames of each kind (300 K, 1200 K, vacancy, slab, strained)."""
    kinds = {"md-300K": _md(300, 4, rng), "md-1200K": _md(1200, 4, rng)}
    vac = []
    for k, a in enumerate(_md(300, 4, rng)):
        del a[k]
        vac.append(_label(a))
    kinds["vacancy"] = vac
    slabs = []
    for _ in range(4):
        slab = fcc111("Cu", (2, 2, 4), a=3.61, vacuum=6.0, periodic=True)
        slab.info.pop("adsorbate_info", None)  # a dict extxyz cannot hold (ASE warns)
        slab.rattle(0.05, seed=int(rng.integers(1 << 30)))
        slabs.append(_label(slab))
    kinds["slab"] = slabs
    strained = []
    for _ in range(4):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        eps = rng.uniform(-0.04, 0.04, (3, 3))
        a.set_cell(a.cell @ (np.eye(3) + (eps + eps.T) / 2), scale_atoms=True)
        a.rattle(0.05, seed=int(rng.integers(1 << 30)))
        strained.append(_label(a))
    kinds["strained"] = strained
    out = []
    for kind, frames in kinds.items():
        for a in frames:
            a.info["config_type"] = kind
            out.append(a)
    return out


#: The demo loop: a committee of 3 small HDNNs, MD at 300, 900 and 1500 K from two 32-atom
#: cells, 8 picks per iteration.
LOOP_CONFIG = """\
name: demo
store: store
test: cu_test.extxyz
model:
  n_members: 3
  epochs: 100
  descriptor:
    descriptor: acsf
    species: [Cu]
    r_cut: 4.5
    g2_params: [[0.5, 2.5], [1.0, 3.0], [0.3, 4.0], [0.05, 0.0], [2.0, 2.5]]
    g4_params: [[0.01, 1, 1], [0.01, 1, -1]]
  params: {hidden: [16, 16], force_weight: 0.1, patience: 30, max_seconds: 15}
explore:
  kind: md
  seeds: [cu_seeds.extxyz]
  params: {temperatures: [300, 900, 1500], steps: 60, interval: 10, max_force: 20}
select:
  budget: 8
label:
  calculator: emt
  method: EMT
iterations: {iterations}
stop:
  accurate_share: 0.97
"""


def run_demo(workdir: str | Path = "demo-out", iterations: int = 4, echo=print,
             table=None) -> dict:
    """``pesdata demo``: curate walk-through, the active-learning loop, the report.

    Parameters
    ----------
    workdir : path
        A new or empty directory, or one an earlier demo wrote (its outputs are replaced).
    iterations : int
        Loop iterations.
    echo : callable
        Where the narrative goes.
    table : callable, optional
        ``table(df, title)`` prints the per-iteration table (default: ``echo`` of the frame).

    Returns
    -------
    dict
        ``store``, ``history`` (DataFrame), ``report`` (path of index.html or None).
    """
    import shutil

    from . import open_store
    from .errors import ParameterError, ValidationError
    from .loop import run_loop

    work = Path(workdir)
    marker = work / ".pesdata-demo"
    if work.exists() and any(work.iterdir()) and not marker.exists():
        raise ParameterError(f"{work} is not empty and not an earlier demo's directory; give "
                             "--workdir a new directory")
    for old in ("store", "demo-work", "report", "loop.yaml"):
        target = work / old
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    work.mkdir(parents=True, exist_ok=True)
    marker.write_text("pesdata demo\n")
    paths = make_demo_data(work)
    echo("--- 1. curate: EMT copper MD, then a batch with duplicates and a label conflict, then "
         "a broken file")
    store = open_store(work / "store", create=True)
    r = store.curate([paths["cu_md"]], method="EMT", group="md-300K", message="Cu MD at 300 K")
    echo(f"    {r.added} structures → version {r.version}")
    r = store.curate([paths["cu_more"]], method="EMT")
    s = r.summary()
    echo(f"    {s['added']} added, {s['duplicates']} duplicates, {s['conflicts']} conflict(s), "
         f"{s['relabelled']} relabelled → version {store.version}")
    try:
        store.curate([paths["cu_broken"]], method="EMT")
    except ValidationError as exc:
        echo(f"    broken file rejected whole, nothing written: {str(exc)[:160]}")
    store.tag("curated")
    echo(f"--- 2. the active-learning loop ({iterations} iterations): committee → MD at 300, "
         "900 and 1500 K → select → EMT labels → new version")
    config = work / "loop.yaml"
    config.write_text(LOOP_CONFIG.replace("{iterations}", str(int(iterations)))
                      .replace("name: demo", "name: demo\nworkdir: demo-work"))
    df = run_loop(config, echo=echo)
    (table or (lambda d, t: echo(d.to_string())))(df, "demo loop: one row per iteration")
    report = None
    try:
        from .analysis import write_report
    except ImportError:  # pragma: no cover - the analysis package is part of pesdata
        write_report = None
    if write_report is not None:
        last = df.dropna(subset=["model"]).iloc[-1]["model"] if "model" in df else None
        report = write_report(store, work / "report", model=last)
        echo(f"--- 3. report: {Path(report) / 'index.html' if Path(report).is_dir() else report}")
    return {"store": store, "history": df, "report": report}


if __name__ == "__main__":  # pragma: no cover - used by `make demo`
    paths = make_demo_data(sys.argv[1] if len(sys.argv) > 1 else "demo-out")
    for path in paths.values():
        print(f"wrote {path} ({len(ase.io.read(path, ':'))} frames)")
