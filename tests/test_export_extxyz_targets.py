"""The extxyz-family targets — ``mace``, ``nequip``, ``gap`` — read back by ASE's own reader and
(for MACE) by MACE's own loader, and compared with the store value by value.

The store holds real data: 25 mlearn Si cells with stress (converted from
``virial_stress_vasp_kB``: kbar, VASP order xx yy zz xy yz xz, VASP sign → eV/Å³, Voigt, ASE
sign, as ASE's VASP reader does), eight TiO2 cells (two elements), a TiO2 cell without forces,
one without energy, and isolated Si, Ti and O atoms (non-periodic, no cell). The reference is
the store itself (its snapshot and the split manifest), not the export's own gathering.
"""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

import pesdata
from pesdata.split import load_split, make_split

from .conftest import DATA
from .export_data import si_with_stress

ISOLATED = {"Si": -0.8123456789012345, "Ti": -2.3456789, "O": -1.5}
STORED_CT = {"Si": "IsolatedAtom", "Ti": "atom", "O": None}  # what the store holds for them




@pytest.fixture(scope="module")
def st(tmp_path_factory):
    si = si_with_stress()
    for a in si:
        a.info["config_type"] = "si-" + a.info["group"].lower()
    tio2 = [ase.io.read(DATA / "tio2" / "TiO2_aenet_subset.extxyz", i)
            for i in (0, 1, 67, 100, 183, 400, 650, 922)]
    for k, a in enumerate(tio2):
        a.info.update(group=f"tio2-{k % 2}", config_type="bulk")
    no_forces = ase.io.read(DATA / "tio2" / "TiO2_aenet_subset.extxyz", 300)
    no_forces.calc = SinglePointCalculator(no_forces, energy=no_forces.get_potential_energy())
    no_forces.info.update(group="tio2-x", config_type="no_forces")
    no_energy = ase.io.read(DATA / "tio2" / "TiO2_aenet_subset.extxyz", 500)
    no_energy.calc = SinglePointCalculator(no_energy, forces=no_energy.get_forces())
    no_energy.info.update(group="tio2-x", config_type="no_energy")
    atoms = []
    for sym, e in ISOLATED.items():
        a = Atoms(sym, positions=[[0.5, 0.25, 0.125]], pbc=False)
        a.calc = SinglePointCalculator(a, energy=e, forces=np.zeros((1, 3)))
        if STORED_CT[sym]:
            a.info["config_type"] = STORED_CT[sym]
        a.info["group"] = "atoms"
        atoms.append(a)
    store = pesdata.open_store(tmp_path_factory.mktemp("targets") / "st", create=True)
    report = store.curate([*si, *tio2, no_forces, no_energy, *atoms], method="PBE")
    assert (report.added, report.rejected) == (38, [])
    make_split(store, "h", "holdout", test_size=0.2, seed=3)
    return store


@pytest.fixture(scope="module")
def ref(st):
    """The store's frames by id, with their labels read straight from the snapshot, and the
    split's parts (id lists in order)."""
    manifest = load_split(st, "h")
    snap = st.read(manifest["version"])
    frames = {}
    for i, a in zip(snap.ids, snap.to_atoms(), strict=True):
        res = {} if a.calc is None else {k: v for k, v in a.calc.results.items()
                                         if v is not None}
        frames[i] = (a, res)
    parts = {p: list(manifest["folds"][0][p]) for p in ("train", "test")}
    kinds = {a.info.get("config_type") for a, _ in frames.values()}
    assert {"no_forces", "no_energy", "si-elastic"} <= kinds
    return frames, parts


def _check_frame(got: Atoms, want: Atoms) -> None:
    """Structure, order and metadata equal the store's."""
    assert got.get_chemical_symbols() == want.get_chemical_symbols()
    np.testing.assert_allclose(got.positions, want.positions, rtol=0, atol=1e-10)
    assert list(got.pbc) == list(want.pbc)
    if any(want.pbc):
        np.testing.assert_allclose(got.cell.array, want.cell.array, rtol=0, atol=1e-10)
    assert got.info.get("group") == want.info.get("group")
    assert got.info.get("method") == "PBE"


def _full(s) -> np.ndarray:
    """A stress as the 3x3 tensor, from 6 Voigt (xx yy zz yz xz xy) or 9 values."""
    s = np.asarray(s, dtype=float).ravel()
    if s.size == 9:
        return s.reshape(3, 3)
    return np.array([[s[0], s[5], s[4]], [s[5], s[1], s[3]], [s[4], s[3], s[2]]])


# -- mace ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mace_out(st, tmp_path_factory):
    out = tmp_path_factory.mktemp("mace") / "out"
    manifest = st.export(out, to="mace", split="h", e0="isolated")
    return out, manifest


def test_mace_round_trip_every_value(mace_out, ref):
    out, manifest = mace_out
    frames, parts = ref
    assert manifest["key_mapping"] == {"energy": "REF_energy", "forces": "REF_forces",
                                       "stress": "REF_stress"}
    assert manifest["e0"] == ISOLATED
    seen = set()
    for part, ids in parts.items():
        assert manifest["parts"][part]["files"] == [f"{part}.xyz"]
        got = ase.io.read(out / f"{part}.xyz", ":")
        assert [a.info["id"] for a in got] == ids  # the split's order, nothing dropped
        for a in got:
            want, res = frames[a.info["id"]]
            _check_frame(a, want)
            assert a.calc is None  # no plain energy/forces/stress for ASE to take
            for label, key in (("energy", "REF_energy"), ("stress", "REF_stress")):
                assert (key in a.info) == (label in res)
                assert a.info[f"config_{label}_weight"] == (1.0 if label in res else 0.0)
            assert ("REF_forces" in a.arrays) == ("forces" in res)
            assert a.info["config_forces_weight"] == (1.0 if "forces" in res else 0.0)
            if "energy" in res:
                assert abs(a.info["REF_energy"] - res["energy"]) <= 1e-8
            if "forces" in res:
                np.testing.assert_allclose(a.arrays["REF_forces"], res["forces"], atol=1e-10)
            if "stress" in res:  # Voigt, ASE sign: the mlearn cells carry real stresses
                np.testing.assert_allclose(_full(a.info["REF_stress"]), _full(res["stress"]),
                                           rtol=0, atol=1e-12)
            stored = want.info.get("config_type")
            if len(a) == 1:  # --e0 isolated: every isolated atom is MACE's IsolatedAtom
                assert a.info["config_type"] == "IsolatedAtom"
                assert a.info.get("pesdata_config_type") == (
                    None if stored in (None, "IsolatedAtom") else stored)
            else:
                assert a.info.get("config_type") == stored
            seen.add(stored)
    assert {"no_forces", "no_energy", "IsolatedAtom", "atom"} <= seen
    assert any("--E0s '{8: -1.5, 14: -0.8123456789012345, 22: -2.3456789}'" in n
               for n in manifest["notes"])


def _atomic_data(cls, conf, z_table):
    """MACE's tensors in float64 (as ``--default_dtype float64``), the default restored."""
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return cls.from_config(conf, z_table=z_table, cutoff=3.0)
    finally:
        torch.set_default_dtype(before)


def test_mace_own_loader_never_trains_on_a_missing_label(mace_out, ref):
    """MACE's ``load_from_xyz`` + ``AtomicData``: a missing label has weight 0 and no value,
    never a zero-weight-1 target; E0s come from the IsolatedAtom frames of the train file."""
    from mace.data import AtomicData
    from mace.data.utils import KeySpecification, load_from_xyz
    from mace.tools import AtomicNumberTable

    out, _ = mace_out
    frames, parts = ref
    keyspec = KeySpecification.from_defaults()  # REF_energy / REF_forces / REF_stress
    z_table = AtomicNumberTable([8, 14, 22])
    checked = set()
    for part, ids in parts.items():
        e0, configs = load_from_xyz(str(out / f"{part}.xyz"), keyspec,
                                    extract_atomic_energies=(part == "train"))
        isolated = [i for i in ids if len(frames[i][0]) == 1]
        if part == "train":
            want_e0 = {frames[i][0].numbers[0]: frames[i][1]["energy"] for i in isolated}
            assert e0 == want_e0
            ids = [i for i in ids if i not in isolated]  # MACE leaves them out of training
        assert len(configs) == len(ids)
        for i, conf in zip(ids, configs, strict=True):
            want, res = frames[i]
            for label in ("energy", "forces", "stress"):
                if label in res:
                    assert conf.property_weights[label] == 1.0
                    got = np.asarray(conf.properties[label])
                    want_value = _full(res[label]) if label == "stress" else res[label]
                    if label == "stress":
                        got = _full(got)
                    np.testing.assert_allclose(got, want_value, rtol=0, atol=1e-10)
                else:
                    assert conf.property_weights[label] == 0.0
                    assert conf.properties[label] is None
                    checked.add(label)
            data = _atomic_data(AtomicData, conf, z_table)
            assert float(data.forces_weight) == (1.0 if "forces" in res else 0.0)
            assert float(data.energy_weight) == (1.0 if "energy" in res else 0.0)
            assert float(data.stress_weight) == (1.0 if "stress" in res else 0.0)
            if "stress" in res:  # MACE's 3x3 from the Voigt 6: the stored tensor, ASE sign
                np.testing.assert_allclose(data.stress.numpy()[0], _full(res["stress"]),
                                           rtol=0, atol=1e-10)
    assert checked == {"energy", "forces", "stress"}


def test_mace_other_e0_modes_hide_stored_isolated_atoms(st, tmp_path, ref):
    """With --e0 average MACE must use --E0s: no frame may be read as IsolatedAtom."""
    frames, _ = ref
    manifest = st.export(tmp_path / "avg", to="mace", split="h", e0="average")
    got = [a for p in ("train", "test") for a in ase.io.read(tmp_path / "avg" / f"{p}.xyz", ":")]
    ones = [a for a in got if len(a) == 1]
    assert len(ones) == 3
    assert all(a.info.get("config_type") != "IsolatedAtom" for a in got)
    si = next(a for a in ones if a.get_chemical_symbols() == ["Si"])
    assert (si.info["config_type"], si.info["pesdata_config_type"]) == ("isolated_atom",
                                                                        "IsolatedAtom")
    assert any("no frame is marked IsolatedAtom" in n for n in manifest["notes"])


# -- nequip -------------------------------------------------------------------------------------

def test_nequip_one_file_per_label_set(st, tmp_path, ref):
    frames, parts = ref
    out = tmp_path / "nq"
    manifest = st.export(out, to="nequip", split="h", e0="isolated")
    snippet = yaml.safe_load((out / "nequip-keys.yaml").read_text())["data"]
    assert snippet["_target_"] == "nequip.data.datamodule.ASEDataModule"
    assert snippet["key_mapping"] == {"REF_energy": "total_energy", "REF_forces": "forces",
                                      "REF_stress": "stress"}
    assert snippet["train_file_path"] == "train.extxyz"
    assert snippet["test_file_path"] == "test.extxyz"
    assert manifest["refused"] == []
    assert any("cannot batch" in n for n in manifest["notes"])
    sets = set()
    for part, ids in parts.items():
        names = manifest["parts"][part]["files"]
        assert names[0] == f"{part}.extxyz"
        written = []
        for name in names:
            got = ase.io.read(out / name, ":")
            file_ids = [a.info["id"] for a in got]
            assert file_ids == [i for i in ids if i in set(file_ids)]  # split order kept
            have = {frozenset(k for k in ("energy", "forces", "stress")
                              if k in frames[a.info["id"]][1]) for a in got}
            assert len(have) == 1  # one label set per file: NequIP can batch it
            have = next(iter(have))
            missing = sorted({"energy", "forces", "stress"} - have,
                             key=["energy", "forces", "stress"].index)
            assert name == f"{part}" + "".join(f"-no-{m}" for m in missing) + ".extxyz"
            sets.add(have)
            for a in got:
                want, res = frames[a.info["id"]]
                _check_frame(a, want)
                assert a.info.get("config_type") == want.info.get("config_type")
                assert a.calc is None
                assert ("REF_energy" in a.info) == ("energy" in res)
                assert ("REF_forces" in a.arrays) == ("forces" in res)
                assert ("REF_stress" in a.info) == ("stress" in res)
                if "energy" in res:
                    assert abs(a.info["REF_energy"] - res["energy"]) <= 1e-8
                if "forces" in res:
                    np.testing.assert_allclose(a.arrays["REF_forces"], res["forces"],
                                               atol=1e-10)
                if "stress" in res:
                    np.testing.assert_allclose(_full(a.info["REF_stress"]), _full(res["stress"]),
                                               atol=1e-12)
            written += file_ids
        assert sorted(written) == sorted(ids)
    assert frozenset({"energy", "forces", "stress"}) in sets
    assert frozenset({"energy", "forces"}) in sets


# -- gap ----------------------------------------------------------------------------------------

def test_gap_energy_forces_virial_and_isolated_atoms(st, tmp_path, ref):
    frames, parts = ref
    out = tmp_path / "gap"
    manifest = st.export(out, to="gap", split="h", e0="isolated")
    assert any("e0={O:-1.5:Si:-0.8123456789012345:Ti:-2.3456789}" in n
               and "force_parameter_name=forces" in n for n in manifest["notes"])
    n_virial = 0
    for part, ids in parts.items():
        text = (out / f"{part}.xyz").read_text()
        assert "stress" not in text  # gap_fit would read a 'stress' key too
        got = ase.io.read(out / f"{part}.xyz", ":")
        assert [a.info["id"] for a in got] == ids
        for a in got:
            want, res = frames[a.info["id"]]
            _check_frame(a, want)
            calc = {} if a.calc is None else a.calc.results
            assert ("energy" in calc) == ("energy" in res)
            assert ("forces" in calc) == ("forces" in res)
            assert ("virial" in a.info) == ("stress" in res)
            if "energy" in res:
                assert abs(calc["energy"] - res["energy"]) <= 1e-8
            if "forces" in res:
                np.testing.assert_allclose(calc["forces"], res["forces"], atol=1e-10)
            if "stress" in res:  # virial = -stress * volume (eV), QUIP's sign
                sigma = _full(res["stress"])
                np.testing.assert_allclose(a.info["virial"], -sigma * want.get_volume(),
                                           rtol=1e-13, atol=1e-12)
                assert np.trace(a.info["virial"]) * np.trace(sigma) < 0
                n_virial += 1
            stored = want.info.get("config_type")
            if len(a) == 1:
                assert a.info["config_type"] == "isolated_atom"
                assert a.info.get("pesdata_config_type") == stored
                assert not any(a.pbc)  # a box for gap_fit's Lattice, still not periodic
                assert np.allclose(a.cell.array, np.eye(3) * 20.0)
            else:
                assert a.info.get("config_type") == stored
    assert n_virial == 25

