"""Hypothesis: Atoms → store → Atoms is the identity for generated structures."""

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import pesdata

finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=64)
text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


@st.composite
def structures(draw):
    n = draw(st.integers(1, 6))
    atoms = Atoms(
        numbers=draw(arrays(np.int64, n, elements=st.integers(1, 118))),
        positions=draw(arrays(np.float64, (n, 3), elements=finite)),
        cell=draw(arrays(np.float64, (3, 3), elements=finite)),
        pbc=draw(arrays(np.bool_, 3)),
    )
    results = {}
    if draw(st.booleans()):
        results["energy"] = draw(finite)
    if draw(st.booleans()):
        results["forces"] = draw(arrays(np.float64, (n, 3), elements=finite))
    if draw(st.booleans()):
        results["stress"] = draw(arrays(np.float64, 6, elements=finite))
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    keys = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8).filter(
        lambda k: k not in ("method", "config_type", "group", "energy", "stress", "forces")
        and k not in __import__("ase.calculators.calculator").calculators.calculator.all_properties
    )
    info = draw(st.dictionaries(keys, st.one_of(finite, st.integers(-1000, 1000), text,
                                                st.booleans()), max_size=3))
    if draw(st.booleans()):
        info["vec"] = draw(arrays(np.float64, 3, elements=finite))
    atoms.info.update(info)
    if draw(st.booleans()):
        atoms.arrays["charge_like"] = draw(arrays(np.float64, n, elements=finite))
    if draw(st.booleans()):
        atoms.arrays["site_ids"] = draw(arrays(np.int64, (n, 2), elements=st.integers(-9, 9)))
    return atoms, results


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(structures(), min_size=1, max_size=4))
def test_atoms_store_atoms_identity(tmp_path_factory, items):
    store = pesdata.open_store(tmp_path_factory.mktemp("rt") / "s", create=True)
    # geometries are random: skip the physical validators, keep every frame
    store.curate([a for a, _ in items], method="gen", validators=([], []))
    back = store.read().to_atoms()
    df = store.read().to_pandas()
    by_source = {int(s.split("#")[1]): back[i] for i, s in enumerate(df["source"])}
    seen = set()
    for k, (atoms, results) in enumerate(items):
        key = pesdata.Frame.from_atoms(atoms, method="gen").id
        if key in seen:  # a generated duplicate: stored once
            continue
        seen.add(key)
        got = by_source[k]
        np.testing.assert_array_equal(got.numbers, atoms.numbers)
        np.testing.assert_array_equal(got.positions, atoms.positions)
        np.testing.assert_array_equal(got.cell.array, atoms.cell.array)
        np.testing.assert_array_equal(got.pbc, atoms.pbc)
        got_results = got.calc.results if got.calc is not None else {}
        assert set(got_results) == set(results)
        for name, value in results.items():
            np.testing.assert_array_equal(got_results[name], value)
        info = {k: v for k, v in got.info.items() if k != "method"}
        assert set(info) == set(atoms.info)
        for name, value in atoms.info.items():
            np.testing.assert_array_equal(info[name], value)
            assert type(info[name]) is type(value)
        for name in ("charge_like", "site_ids"):
            assert (name in got.arrays) == (name in atoms.arrays)
            if name in atoms.arrays:
                np.testing.assert_array_equal(got.arrays[name], atoms.arrays[name])
