"""SSWExplorer (the loop's `explore: {kind: ssw}`): frames and info keys on EMT Cu (a cluster and
a periodic cell with a variable cell), labels-free frames whose walking energy is EMT's own,
evaluations counted as an independent counting calculator counts them, determinism by seed,
parameter errors before any work, a failing calculator stopping only its walk, and one tiny
loop iteration exploring with SSW and selecting its frames."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.cluster import Icosahedron, Octahedron

import pesdata
from pesdata.errors import ParameterError
from pesdata.explore import get_explorer
from pesdata.explore.counting import CountingCalculator
from pesdata.explore.ssw_explorer import SSWExplorer
from pesdata.loop import run_loop

from .conftest import emt_cells
from .ssw_helpers import one_blas_thread  # noqa: F401 - autouse fixture

#: small walks: few Gaussians, short relaxations
FAST = {"n_gaussians": 3, "climb_steps": 10, "quench_steps": 150}
KEYS = {"explorer", "group", "config_type", "step", "ssw_step", "phase", "accepted", "walker",
        "seed_index", "walk_energy"}




def _cell() -> ase.Atoms:
    return bulk("Cu", "fcc", a=3.7, cubic=True)  # 4 atoms, strained: the cell relaxes


def _walk(atoms_list, seed=1, calc=None, **params):
    params = {"steps": 2, "max_evaluations": 400, **FAST, **params}
    ex = SSWExplorer(**params)
    counter = CountingCalculator(calc or EMT())
    frames = list(ex.explore(counter, atoms_list, seed=seed))
    return ex, frames, counter


def test_registry_finds_the_ssw_explorer():
    assert get_explorer("ssw") is SSWExplorer
    assert "steps=3" in repr(SSWExplorer(steps=3, temperature=900))


def test_cluster_frames_carry_the_info_keys_and_emt_walk_energies():
    cluster = Icosahedron("Cu", 2)
    ex, frames, counter = _walk([cluster])
    assert frames and ex.stopped_ == []
    assert ex.n_calls_ == counter.n_calls > 0  # SSW counts what the calculator computes
    assert ex.walks_[0]["evaluations"] == ex.n_calls_ and ex.walks_[0]["steps"] == 2
    first = frames[0]
    assert first.info["phase"] == "minimum" and first.info["ssw_step"] == 0
    for f in frames:
        assert KEYS <= set(f.info)
        assert f.calc is None and not f.constraints
        assert f.info["explorer"] == "ssw" and f.info["group"] == "ssw-0"
        assert f.info["walker"] == f.info["seed_index"] == 0
        assert f.info["config_type"] == f"ssw-{f.info['phase']}"
        assert f.info["phase"] in ("climb", "quench", "minimum")
        assert f.info["step"] == f.info["ssw_step"] in (0, 1, 2)
        assert "energy" not in f.info
        ref = f.copy()
        ref.calc = EMT()  # the walking energy is EMT's at that very geometry
        assert f.info["walk_energy"] == pytest.approx(ref.get_potential_energy(), abs=1e-9)
        if f.info["phase"] == "minimum":  # a true minimum: quenched to fmax = 0.05 eV/Å
            assert np.linalg.norm(ref.get_forces(), axis=1).max() < 0.05 + 1e-9
    assert {f.info["phase"] for f in frames} >= {"climb", "minimum"}
    steps = [f.info["ssw_step"] for f in frames]
    assert steps == sorted(steps) and steps[-1] >= 1
    # the seed is not touched
    assert cluster.calc is None and np.allclose(cluster.positions, Icosahedron("Cu", 2).positions)


def test_periodic_cell_walks_its_cell_with_emt():
    ex, frames, counter = _walk([_cell()], record_quench=5)
    assert ex.n_calls_ == counter.n_calls and ex.stopped_ == []
    assert all(f.pbc.all() for f in frames)
    volumes = [f.get_volume() for f in frames]
    assert max(abs(v - _cell().get_volume()) for v in volumes) > 0.1  # the cell moved
    start = frames[0]
    assert start.info["phase"] == "minimum"
    ref = start.copy()
    ref.calc = EMT()  # the quenched start: EMT's fcc Cu, a ≈ 3.59 Å, stress ≈ 0
    assert abs(np.cbrt(ref.get_volume()) - 3.59) < 0.02
    assert np.abs(ref.get_stress()).max() * ref.get_volume() < 0.06
    assert "quench" in {f.info["phase"] for f in frames}


def test_same_seed_same_frames_other_seed_other_frames():
    seeds = [Octahedron("Cu", 2), _cell()]
    _, a, _ = _walk(seeds, seed=3, steps=1)
    _, b, _ = _walk(seeds, seed=3, steps=1)
    _, c, _ = _walk(seeds, seed=4, steps=1)
    assert [f.info for f in a] == [f.info for f in b]
    assert all(np.array_equal(x.positions, y.positions) and np.array_equal(x.cell, y.cell)
               for x, y in zip(a, b, strict=True))
    assert {f.info["group"] for f in a} == {"ssw-0", "ssw-1"}
    later = [f for f in a if f.info["ssw_step"] > 0]
    assert later and not all(
        len(x) == len(y) and np.allclose(x.positions, y.positions)
        for x, y in zip(later, [f for f in c if f.info["ssw_step"] > 0], strict=False))


class _NoStress(Calculator):
    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        raise AssertionError("no evaluation may happen")


@pytest.mark.parametrize(("params", "seed", "seeds", "match"), [
    ({"bogus": 1}, 0, None, "bogus"),
    ({"steps": 0}, 0, None, "steps"),
    ({"steps": 2.5}, 0, None, "steps"),
    ({"max_evaluations": 0}, 0, None, "max_evaluations"),
    ({"temperature": -5}, 0, None, "temperature"),
    ({"trajectory": "x.extxyz"}, 0, None, "trajectory"),
    ({"walker": 2}, 0, None, "walker"),
    ({}, -1, None, "seed"),
    ({}, "one", None, "seed"),
    ({}, 0, [], "empty"),
    ({}, 0, ["Cu"], "seeds"),
    ({"cell": True}, 0, [Octahedron("Cu", 2)], "pbc"),
])
def test_bad_parameters_raise_before_any_evaluation(params, seed, seeds, match):
    counter = CountingCalculator(EMT())
    ex = SSWExplorer(**params)
    with pytest.raises(ParameterError, match=match):
        ex.explore(counter, [_cell()] if seeds is None else seeds, seed=seed)
    assert counter.n_calls == 0


def test_a_calculator_without_stress_cannot_walk_a_cell():
    with pytest.raises(ParameterError, match="stress"):
        SSWExplorer().explore(_NoStress(), [_cell()])
    # a cluster, or cell=False, does not need it: parameters pass (nothing is evaluated yet)
    SSWExplorer(cell=False).explore(_NoStress(), [_cell()])


class _FailsOn(Calculator):
    """EMT, except that structures of ``n_atoms`` atoms fail after ``after`` evaluations."""

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, n_atoms: int, after: int, nan: bool = False) -> None:
        super().__init__()
        self.n_atoms, self.after, self.nan, self.seen = n_atoms, after, nan, 0
        self.emt = EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        Calculator.calculate(self, atoms, properties, system_changes)
        if len(self.atoms) == self.n_atoms:
            self.seen += 1
            if self.seen > self.after:
                if not self.nan:
                    raise RuntimeError("SCF did not converge")
                self.results = {"energy": float("nan"), "forces": np.zeros((len(atoms), 3))}
                return
        self.emt.calculate(self.atoms, properties, system_changes)
        self.results = dict(self.emt.results)


@pytest.mark.parametrize(("after", "nan", "reason"), [
    (0, False, "quench of the start failed"),  # cannot even quench its start
    (60, False, "RuntimeError"),  # fails in a later step
    (60, True, "NaN"),
])
def test_a_failing_calculator_stops_only_its_walk(after, nan, reason):
    seeds = [Octahedron("Cu", 2), Icosahedron("Cu", 2)]  # walk 0 fails, walk 1 must not
    ex, frames, _ = _walk(seeds, calc=_FailsOn(6, after, nan), steps=2)
    assert [s["group"] for s in ex.stopped_] == ["ssw-0"]
    assert reason in ex.stopped_[0]["reason"]
    ok = [f for f in frames if f.info["group"] == "ssw-1"]
    assert ok and max(f.info["ssw_step"] for f in ok) == 2  # the other walk walked on
    assert ex.walks_[1]["steps"] == 2 and ex.walks_[1]["failed"] == 0
    failed = [f for f in frames if f.info["group"] == "ssw-0"]
    assert (failed == []) == (after == 0)
    assert frames.index(ok[0]) == len(failed)  # walks run one after the other


def test_the_evaluation_cap_stops_a_walk():
    ex, frames, counter = _walk([Icosahedron("Cu", 2), Octahedron("Cu", 2)], steps=50,
                                max_evaluations=120)
    assert [s["group"] for s in ex.stopped_] == ["ssw-0", "ssw-1"]
    assert all("budget" in s["reason"] for s in ex.stopped_)
    assert [w["evaluations"] for w in ex.walks_] == [120, 120]
    assert ex.n_calls_ == counter.n_calls == 240
    assert frames and {f.info["group"] for f in frames} == {"ssw-0", "ssw-1"}


CONFIG = """\
name: sswloop
store: store
workdir: work
initial: {files: [initial.extxyz], method: EMT}
model:
  n_members: 2
  epochs: 4
  descriptor: {descriptor: acsf, species: [Cu], r_cut: 4.0, g4_params: [],
               g2_params: [[0.5, 2.5], [1.0, 3.0], [0.05, 0.0]]}
  params: {hidden: [8], force_weight: 0.1}
explore:
  kind: ssw
  seeds: [seeds.extxyz]
  params: {steps: 2, max_evaluations: 100, n_gaussians: 2, climb_steps: 8, quench_steps: 40}
select: {budget: 2}
label: {calculator: emt, method: EMT}
iterations: 1
"""


def test_loop_explores_with_ssw_and_selects_its_frames(tmp_path):
    ase.io.write(tmp_path / "initial.extxyz", emt_cells(6, seed=1))
    ase.io.write(tmp_path / "seeds.extxyz", [_cell()])
    config = tmp_path / "ssw.yaml"
    config.write_text(CONFIG)
    lines: list[str] = []
    df = run_loop(config, echo=lines.append)
    assert list(df["iteration"]) == [0, 1]
    row = df.iloc[1]
    candidates = ase.io.read(tmp_path / "work" / "iter-1" / "candidates.extxyz", ":")
    assert row["explored"] == len(candidates) > 0
    assert any("(ssw," in line and "evaluations" in line for line in lines)
    for f in candidates:  # the committee calculator walked the cell (kind auto → bulk)
        assert f.info["explorer"] == "ssw" and f.info["group"] == "ssw-0"
        assert f.info["config_type"].startswith("ssw-") and "walk_energy" in f.info
    assert max(abs(f.get_volume() - _cell().get_volume()) for f in candidates) > 0.01
    store = pesdata.open_store(tmp_path / "store")
    from pesdata.select import load_ledger

    ledger, _ = load_ledger(store, "sswloop-iter-1")
    assert len(ledger) == row["explored"]
    assert ledger["config_type"].str.startswith("ssw-").all()
    selected = ledger[ledger["decision"] == "selected"]
    assert 1 <= len(selected) == row["selected"] <= 2
    assert row["added"] == row["selected"]
    table = store.read().to_pandas()
    new = table[table["version_added"] == row["version"]]
    assert len(new) == row["added"]
    assert new["config_type"].str.startswith("ssw-").all() and (new["group"] == "ssw-0").all()
    version = store.version  # a rerun of the finished loop changes nothing
    again = run_loop(config, echo=lambda s: None)
    assert store.version == version and again.equals(df)


def test_a_geometry_recorded_twice_in_a_step_is_yielded_once(monkeypatch):
    """A climb that ends below the start needs no quench: its last climbing frame and the new
    minimum are one geometry (seen with an early committee); it is yielded once, as the
    minimum. Injected here: every step's last frame recorded twice, first as a climb."""
    from pesdata.explore.ssw import SSW

    run = SSW.run

    def run_twice_recorded(self, steps, callback=None):
        run(self, steps, callback)
        if self.frames_:
            twin = self.frames_[-1].copy()
            twin.calc = self.frames_[-1].calc
            twin.info["phase"] = "climb"
            self.frames_.insert(len(self.frames_) - 1, twin)
        return self

    _, plain, _ = _walk([Octahedron("Cu", 2)], steps=2)
    monkeypatch.setattr(SSW, "run", run_twice_recorded)
    _, frames, _ = _walk([Octahedron("Cu", 2)], steps=2)
    assert [f.info for f in frames] == [f.info for f in plain]
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(frames, plain,
                                                                         strict=True))
