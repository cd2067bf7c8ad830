"""The outlier validators over a spilled curate run (issue 19, flat memory): the streamed median
equals NumPy's, and binned or streamed populations flag exactly what the in-memory validators
flag, on real energies and forces with unit errors injected."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest

from pesdata.curate import _population, _stats
from pesdata.curate._population import flag_outliers, kth_smallest, streamed_median
from pesdata.curate._stats import RunStats
from pesdata.curate._validators import EnergyOutlierValidator, ForceOutlierValidator

from .conftest import DATA

TIO2 = DATA / "tio2/TiO2_aenet_subset.extxyz"
SI = DATA / "mlearn/Si_training.extxyz"


@pytest.fixture(scope="module")
def frames():
    return ase.io.read(TIO2, ":400") + ase.io.read(SI, ":")


def _stats_of(frames):
    """(population key, fmax, energy per atom) of real frames, unit errors injected."""
    rows = []
    for a in frames:
        f = a.get_forces()
        rows.append([a.get_chemical_formula(mode="reduce"),
                     float(np.sqrt((f ** 2).sum(axis=1)).max()),
                     a.get_potential_energy() / len(a)])
    rows[5][1] *= 27.2114  # Hartree-scaled forces
    rows[17][2] *= 96.485  # kJ/mol
    rows[-3][2] = np.nan  # no energy
    rows[-9][1] *= 51.4  # Hartree/bohr forces
    return rows


def _chunked(values, size):
    return lambda: (values[i:i + size] for i in range(0, len(values), size))


@pytest.mark.parametrize("size", [1, 7, 10_000])
def test_streamed_median_equals_numpy(frames, size):
    rows = _stats_of(frames)
    rng = np.random.default_rng(3)
    cases = [
        np.array([r[2] for r in rows if np.isfinite(r[2])]),  # close energies: equal high bits
        np.array([r[1] for r in rows]),
        rng.normal(0, 1e-9, 101), np.array([2.5]), np.array([-1.0, 3.0]),
        np.array([0.0, -0.0, 0.0, 1e-300, -1e300]), np.round(rng.normal(size=50), 1),
    ]
    for v in cases:
        assert streamed_median(_chunked(v, size), len(v)) == np.median(v)
        ks = [0, len(v) // 3, len(v) - 1]
        assert kth_smallest(_chunked(v, size), ks) == np.sort(v)[ks].tolist()


def _flags(stats, **kw):
    checks = [ForceOutlierValidator(), EnergyOutlierValidator(threshold=5.0, mad_floor=0.01)]
    out = flag_outliers(stats, checks, kw.pop("spill", None), **kw)
    return {k: [i.to_dict() for i in v] for k, v in out.items()}


@pytest.mark.parametrize("mem_rows", [1, 30, 150, 10_000])
def test_spilled_populations_flag_what_memory_flags(frames, tmp_path, monkeypatch, mem_rows):
    rows = _stats_of(frames)
    whole = RunStats()
    monkeypatch.setattr(_stats, "STAT_MEM_ROWS", 64)
    spilled = RunStats(tmp_path / "stats.bin")
    for k, (key, fmax, e) in enumerate(rows):
        for s in (whole, spilled):
            s.record((k // 100, k % 100), "added", key, {"composition": key}, fmax, e)
    assert spilled.spilled and not whole.spilled and len(spilled) == len(rows)
    assert [spilled.row(k) for k in (0, 63, 64, len(rows) - 1)] == [
        whole.row(k) for k in (0, 63, 64, len(rows) - 1)]
    expected = _flags(whole)
    assert {5, 17, len(rows) - 9} <= set(expected)  # the injected errors are found
    got = _flags(spilled, spill=tmp_path / "population", mem_rows=mem_rows)
    assert got == expected


def test_large_population_read_in_chunks(frames, tmp_path, monkeypatch):
    """One population larger than the bin, read a few rows at a time."""
    rows = [("Si", r[1], r[2]) for r in _stats_of(frames)]
    monkeypatch.setattr(_stats, "STAT_MEM_ROWS", 50)
    monkeypatch.setattr(_population, "MEM_ROWS", 13)
    whole, spilled = RunStats(), RunStats(tmp_path / "stats.bin")
    for k, (key, fmax, e) in enumerate(rows):
        for s in (whole, spilled):
            s.record((0, k), "added", key, {"composition": key}, fmax, e)
    expected = _flags(whole)
    assert expected
    assert _flags(spilled, spill=tmp_path / "population") == expected


def test_curate_rejects_the_same_outliers_when_spilled(tmp_path, monkeypatch):
    from ase.calculators.singlepoint import SinglePointCalculator

    import pesdata

    images = ase.io.read(TIO2, ":300")
    bad = images[40]
    bad.calc = SinglePointCalculator(bad, energy=bad.get_potential_energy() * 96.485,
                                     forces=bad.get_forces())
    ase.io.write(tmp_path / "in.extxyz", images)
    reports = []
    for spill in (False, True):
        if spill:
            monkeypatch.setattr(_stats, "STAT_MEM_ROWS", 16)
            monkeypatch.setattr(_population, "MEM_ROWS", 20)
        st = pesdata.open_store(tmp_path / f"s{spill}", create=True)
        rep = st.curate(tmp_path / "in.extxyz", method="PBE", quarantine=True, batch_size=25)
        reports.append((rep.added, rep.rejected, sorted(st.read().ids)))
    assert reports[0] == reports[1]
    assert [r["source"] for r in reports[0][1]] == [f"{tmp_path / 'in.extxyz'}#40"]


class _RunMax:
    """A custom population check that compares across populations: the run's largest fmax."""

    def check_population(self, stats):
        from pesdata.curate._validators import Issue

        k = int(np.nanargmax(stats["fmax"]))
        return {k: Issue("run_max", "forces", "largest fmax of the run")}


class _Lenient(ForceOutlierValidator):
    """A subclass that overrides the rule: never flags the first row."""

    def check_population(self, stats):
        return {k: v for k, v in super().check_population(stats).items() if k != 0}


def test_custom_checks_see_the_whole_run_when_spilled(frames, tmp_path, monkeypatch):
    rows = [("Si", r[1], r[2]) for r in _stats_of(frames)]
    rows[0] = ("Si", 1e4, rows[0][2])  # flagged by the built-in rule, not by _Lenient
    monkeypatch.setattr(_stats, "STAT_MEM_ROWS", 50)
    whole, spilled = RunStats(), RunStats(tmp_path / "stats.bin")
    for k, (key, fmax, e) in enumerate(rows):
        for s in (whole, spilled):
            s.record((0, k), "added", key, {"composition": key}, fmax, e)
    for checks in ([_RunMax(), ForceOutlierValidator(3.0, mad_floor=0.0)],
                   [ForceOutlierValidator(3.0, mad_floor=0.0), _RunMax(), _Lenient()]):
        expected = flag_outliers(whole, checks, None)
        got = flag_outliers(spilled, checks, tmp_path / f"p{len(checks)}", mem_rows=13)
        assert {k: [i.to_dict() for i in v] for k, v in got.items()} == {
            k: [i.to_dict() for i in v] for k, v in expected.items()}
        assert sum(i.validator == "run_max" for v in got.values() for i in v) == 1
        assert len(expected) > 3


def test_check_population_equals_a_group_by_group_reference():
    """Many populations (the grouped implementation) against the rule written out per group."""
    rng = np.random.default_rng(11)
    n = 3000
    keys = np.array([f"g{k}" for k in rng.integers(0, 400, n)], dtype=object)
    values = rng.normal(0, 1, n)
    values[rng.integers(0, n, 40)] *= 50
    values[rng.integers(0, n, 30)] = np.nan
    check = EnergyOutlierValidator(threshold=3.0, min_group=4, mad_floor=0.0)
    got = check.check_population({"group": keys, "energy_per_atom": values})
    expected = {}
    for key in sorted(set(keys.tolist())):
        rows = [i for i in range(n) if keys[i] == key and np.isfinite(values[i])]
        if len(rows) < 4:
            continue
        v = values[rows]
        med = np.median(v)
        mad = np.median(np.abs(v - med))
        for i, x in zip(rows, v, strict=True):
            if mad > 0 and abs(0.6745 * (x - med) / mad) > 3.0:
                expected[i] = key
    assert {i: issue.message.rsplit(" of ", 1)[1] for i, issue in got.items()} == expected
    assert len(expected) > 20


def test_check_population_takes_any_hashable_sortable_keys():
    values = np.array([0.0, 1.0, 0.0, 1.0, 0.5, 100.0])
    check = EnergyOutlierValidator(3.0, min_group=3, mad_floor=0.0)
    for keys in (np.array([None] * 6, dtype=object), np.array(["a"] * 6, dtype=object)):
        assert list(check.check_population({"group": keys, "energy_per_atom": values})) == [5]
    assert check.check_population({"group": np.zeros(0, object),
                                   "energy_per_atom": np.zeros(0)}) == {}
