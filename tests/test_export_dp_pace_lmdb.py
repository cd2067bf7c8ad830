"""Round trips of the deepmd, pacemaker and aselmdb export targets, read back with each
format's own reader (dpdata ``deepmd/npy``, pandas, ``ase.db.connect``) and compared with the
store value by value.

The data: the mlearn Si test set (stress from ``virial_stress_vasp_kB``, converted as ASE's
VASP reader does), TiO2 frames of several compositions (two elements), a TiO2 frame with its
atoms reversed (same composition, another atom order), a frame without forces, one without
energy, one without any label, a non-periodic Si cluster with an extra per-atom array, and an
isolated atom of each element (``--e0 isolated``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ase.db
import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

import pesdata
from pesdata.errors import ParameterError
from pesdata.export._base import export, labels
from pesdata.split import make_split

from .export_data import si_with_stress

dpdata = pytest.importorskip("dpdata")
pd = pytest.importorskip("pandas")
pytest.importorskip("ase_db_backends")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # as conftest.DATA
E0 = {"O": -1.5, "Si": -0.8, "Ti": -2.1}




def _special(data: Path) -> dict[str, Atoms]:
    tio = ase.io.read(data / "tio2/TiO2_aenet_subset.extxyz", "::80")
    for a in tio:
        a.info["config_type"] = "bulk"
    extra = ase.io.read(data / "tio2/TiO2_aenet_subset.extxyz", "1:4")
    nof, noe, none = (a.copy() for a in extra)
    nof.calc = SinglePointCalculator(nof, energy=extra[0].get_potential_energy())
    noe.calc = SinglePointCalculator(noe, forces=extra[1].get_forces())
    none.calc = None
    src = ase.io.read(data / "tio2/TiO2_aenet_subset.extxyz", "5")
    order = np.arange(len(src))[::-1]
    rev = src[order]
    rev.calc = SinglePointCalculator(rev, energy=src.get_potential_energy(),
                                     forces=src.get_forces()[order])
    si = ase.io.read(data / "mlearn/Si_test.extxyz", "3")
    cluster = si[:10]
    cluster.pbc = False
    cluster.cell = np.zeros((3, 3))
    cluster.arrays["hirshfeld"] = np.linspace(-0.3, 0.3, 10)
    cluster.info["config_type"] = "cluster"
    cluster.calc = SinglePointCalculator(cluster, energy=-30.0, forces=si.get_forces()[:10])
    iso = []
    for sym, e in E0.items():
        x = Atoms(sym, positions=[[0.0, 0.0, 0.0]], pbc=False)
        x.info["config_type"] = "IsolatedAtom"
        x.calc = SinglePointCalculator(x, energy=e, forces=np.zeros((1, 3)))
        iso.append(x)
    return {"tio": tio, "nof": nof, "noe": noe, "none": none, "rev": rev,
            "cluster": cluster, "iso": iso}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    if not DATA.is_dir():
        pytest.fail(f"real data set not found at {DATA}")
    root = tmp_path_factory.mktemp("dp_pace_lmdb")
    st = pesdata.open_store(root / "store", create=True)
    st.curate(si_with_stress(), method="PBE")
    si_version = st.version
    sp = _special(DATA)
    special = [sp["nof"], sp["noe"], sp["none"], sp["rev"], sp["cluster"]]
    st.curate(sp["tio"] + special + sp["iso"], method="PBE")
    snap = st.read()
    frames = {i: a for i, a in zip(snap.ids, snap.to_atoms(), strict=True)}
    ids = {}
    for key, atoms in zip(("nof", "noe", "none", "rev", "cluster"), special, strict=True):
        ids[key] = next(i for i, a in frames.items()
                        if len(a) == len(atoms) and np.array_equal(a.numbers, atoms.numbers)
                        and np.allclose(a.positions, atoms.positions, atol=1e-12))
    make_split(st, "ho", "holdout", test_size=0.2, seed=1)
    outs = {to: export(st, root / to, to, split="ho", e0="isolated")
            for to in ("deepmd", "pacemaker", "aselmdb")}
    return {"root": root, "store": st, "frames": frames, "ids": ids, "outs": outs,
            "si_version": si_version}


def _parts(ex, to):
    return ex["root"] / to, ex["outs"][to]["parts"]


def test_split_covers_every_frame(exported):
    man = exported["outs"]["deepmd"]
    assert set(man["parts"]) == {"train", "test"}
    assert man["e0"] == pytest.approx(E0, abs=1e-12)
    index = {}
    out = exported["root"] / "deepmd"
    for part in ("train", "test"):
        for row in json.loads((out / f"{part}.frames.json").read_text())["frames"]:
            index[row["id"]] = part
    expected = set(exported["frames"]) - {exported["ids"]["none"]}
    assert set(index) == expected
    assert [r["id"] for r in man["refused"]] == [exported["ids"]["none"]]


# -- deepmd ------------------------------------------------------------------------------------

def _dp_systems(ex):
    out, parts = _parts(ex, "deepmd")
    for part, info in parts.items():
        index = json.loads((out / f"{part}.frames.json").read_text())
        by_system: dict[str, list] = {}
        for row in index["frames"]:
            by_system.setdefault(row["system"], []).append(row)
        systems = [f for f in info["files"] if not f.endswith(".json")]
        assert sorted(systems) == sorted(by_system)
        for rel in systems:
            rows = sorted(by_system[rel], key=lambda r: r["frame"])
            assert [r["frame"] for r in rows] == list(range(len(rows)))
            yield part, out / rel, rows, index["type_map"]


def test_deepmd_values_through_dpdata(exported):
    frames = exported["frames"]
    seen = 0
    for _part, path, rows, type_map in _dp_systems(exported):
        assert (path / "type_map.raw").read_text().split() == type_map == ["O", "Si", "Ti"]
        sets = path / "set.000"
        for name in ("coord", "box", "energy", "force", "virial"):
            if (sets / f"{name}.npy").exists():
                assert np.load(sets / f"{name}.npy").dtype == np.float64, (path, name)
        labelled = (sets / "energy.npy").exists()
        system = (dpdata.LabeledSystem if labelled else dpdata.System)(str(path),
                                                                       fmt="deepmd/npy")
        assert system.get_nframes() == len(rows)
        nopbc = (path / "nopbc").exists()
        assert bool(system.nopbc) == nopbc
        for j, row in enumerate(rows):
            ref = frames[row["id"]]
            lab = labels(ref)
            n = len(ref)
            symbols = [system["atom_names"][t] for t in system["atom_types"]]
            assert symbols == ref.get_chemical_symbols()  # stored order, not re-sorted
            np.testing.assert_allclose(system["coords"][j], ref.positions, rtol=0, atol=1e-10)
            assert nopbc == (not any(ref.pbc))
            if not nopbc:
                np.testing.assert_allclose(system["cells"][j], ref.cell.array, rtol=0,
                                           atol=1e-10)
            assert row.get("config_type") == ref.info.get("config_type")
            assert row.get("group") == ref.info.get("group")
            assert labelled == ("energy" in lab)
            if labelled:
                assert abs(system["energies"][j] - lab["energy"]) < 1e-8
            assert (sets / "force.npy").exists() == ("forces" in lab)
            if "forces" in lab:
                forces = np.load(sets / "force.npy")
                assert forces.shape == (len(rows), 3 * n)
                np.testing.assert_allclose(forces[j].reshape(n, 3), lab["forces"], rtol=0,
                                           atol=1e-10)
                if labelled:
                    np.testing.assert_allclose(system["forces"][j], lab["forces"], rtol=0,
                                               atol=1e-10)
            assert (sets / "virial.npy").exists() == ("stress" in lab)
            if "stress" in lab:
                # DeePMD's virial is -stress * volume (eV), full 3x3
                sigma = ref.get_stress(voigt=False)
                np.testing.assert_allclose(system["virials"][j], -sigma * ref.get_volume(),
                                           rtol=0, atol=1e-8)
                # and dpdata's own ASE conversion gives the stored stress back, same sign
                back = system.sub_system([j]).to("ase/structure")[0]
                np.testing.assert_allclose(back.get_stress(), lab["stress"], rtol=0,
                                           atol=1e-12)
            seen += 1
    assert seen == len(frames) - 1


def test_deepmd_layout_of_missing_labels_and_atom_order(exported):
    ids, frames = exported["ids"], exported["frames"]
    where = {r["id"]: (path, rows) for _, path, rows, _ in _dp_systems(exported) for r in rows}
    path, rows = where[ids["nof"]]
    assert not (path / "set.000/force.npy").exists()          # no forces: no force.npy
    assert (path / "set.000/energy.npy").exists()
    assert all("forces" not in labels(frames[r["id"]]) for r in rows)
    path, rows = where[ids["noe"]]
    assert not (path / "set.000/energy.npy").exists()         # no energy: no energy.npy
    assert (path / "set.000/force.npy").exists()
    assert all("energy" not in labels(frames[r["id"]]) for r in rows)
    path, _ = where[ids["cluster"]]
    assert (path / "nopbc").exists()
    # same composition, other atom order: its own system with its own type.raw
    rev_path, _ = where[ids["rev"]]
    rev = frames[ids["rev"]]
    same = [p for p, _ in where.values() if p != rev_path
            and (p / "type.raw").read_text().split() != (rev_path / "type.raw").read_text().split()
            and sorted((p / "type.raw").read_text().split())
            == sorted((rev_path / "type.raw").read_text().split())]
    assert same, "the reversed frame shares a system with the original order"
    types = [int(t) for t in (rev_path / "type.raw").read_text().split()]
    assert [["O", "Si", "Ti"][t] for t in types] == rev.get_chemical_symbols()
    reason = exported["outs"]["deepmd"]["refused"][0]["reason"]
    assert "no energy, forces or stress" in reason


# -- pacemaker ---------------------------------------------------------------------------------

def _pace_frames(ex):
    out, parts = _parts(ex, "pacemaker")
    for part, info in parts.items():
        assert info["files"] == [f"{part}.pckl.gzip"]
        df = pd.read_pickle(out / info["files"][0], compression="gzip")
        assert info["count"] == len(df)
        yield part, df


def test_pacemaker_values_through_pandas(exported):
    frames, ids = exported["frames"], exported["ids"]
    seen = set()
    for _part, df in _pace_frames(exported):
        for col in ("ase_atoms", "energy", "forces", "energy_corrected", "id", "w_energy",
                    "w_forces"):
            assert col in df.columns
        for _, row in df.iterrows():
            ref = frames[row["id"]]
            lab = labels(ref)
            atoms = row["ase_atoms"]
            assert atoms.get_chemical_symbols() == ref.get_chemical_symbols()
            np.testing.assert_allclose(atoms.positions, ref.positions, rtol=0, atol=1e-10)
            np.testing.assert_allclose(atoms.cell.array, ref.cell.array, rtol=0, atol=1e-10)
            assert list(atoms.pbc) == list(ref.pbc)
            assert atoms.calc is None
            assert abs(row["energy"] - lab["energy"]) < 1e-8
            e0 = sum(E0[s] for s in ref.get_chemical_symbols())
            assert abs(row["energy_corrected"] - (lab["energy"] - e0)) < 1e-8
            # what pyace's ACEDataset.process_dataset demands
            assert np.shape(row["forces"]) == (len(ref), 3)
            assert not np.isnan(row["forces"]).any() and not np.isnan(row["energy_corrected"])
            assert row["config_type"] == ref.info.get("config_type")
            assert row["group"] == ref.info.get("group")
            assert atoms.info["id"] == row["id"]
            assert row["w_energy"] == pytest.approx(1 / len(df))
            if "forces" in lab:
                np.testing.assert_allclose(row["forces"], lab["forces"], rtol=0, atol=1e-10)
                np.testing.assert_allclose(row["w_forces"], np.full(len(ref), 1 / len(df)))
            else:
                assert row["id"] == ids["nof"]
                assert np.all(row["w_forces"] == 0)  # the placeholder zeros never fit
            if "stress" in lab:
                np.testing.assert_allclose(row["stress"], lab["stress"], rtol=0, atol=1e-12)
            else:
                assert row["stress"] is None
            seen.add(row["id"])
    assert seen == set(frames) - {ids["noe"], ids["none"]}
    cluster = next(df for _, df in _pace_frames(exported)
                   if ids["cluster"] in set(df["id"]))
    atoms = cluster.set_index("id").loc[ids["cluster"], "ase_atoms"]
    np.testing.assert_array_equal(atoms.arrays["hirshfeld"], np.linspace(-0.3, 0.3, 10))
    refused = {r["id"]: r["reason"] for r in exported["outs"]["pacemaker"]["refused"]}
    assert set(refused) == {ids["noe"], ids["none"]}
    assert all("no energy" in r for r in refused.values())


def test_pacemaker_without_missing_forces_and_e0_none(exported, tmp_path):
    man = export(exported["store"], tmp_path / "o", "pacemaker",
                 version=exported["si_version"], e0="none")
    df = pd.read_pickle(tmp_path / "o/all.pckl.gzip", compression="gzip")
    assert len(df) == 25 and man["refused"] == []
    assert "w_energy" not in df.columns and "w_forces" not in df.columns
    assert (df["energy_corrected"] == df["energy"]).all()
    assert any("energy_corrected = energy" in n for n in man["notes"])


# -- aselmdb -----------------------------------------------------------------------------------

def test_aselmdb_values_through_ase_db(exported):
    frames, ids = exported["frames"], exported["ids"]
    out, parts = _parts(exported, "aselmdb")
    seen = set()
    for part, info in parts.items():
        assert info["files"] == [f"{part}.aselmdb"]
        assert not (out / f"{part}.aselmdb-lock").exists()
        with ase.db.connect(out / info["files"][0], readonly=True,
                            use_lock_file=False) as db:
            rows = list(db.select())
        assert len(rows) == info["count"] == info["structures"]
        for row in rows:
            fid = row.key_value_pairs["pesdata_id"]
            ref = frames[fid]
            lab = labels(ref)
            atoms = row.toatoms()
            assert atoms.get_chemical_symbols() == ref.get_chemical_symbols()
            np.testing.assert_allclose(atoms.positions, ref.positions, rtol=0, atol=1e-10)
            np.testing.assert_allclose(atoms.cell.array, ref.cell.array, rtol=0, atol=1e-10)
            assert list(atoms.pbc) == list(ref.pbc)
            results = atoms.calc.results if atoms.calc is not None else {}
            assert set(results) == set(lab)  # a missing label is absent, never 0
            if "energy" in lab:
                assert abs(atoms.get_potential_energy() - lab["energy"]) < 1e-8
            if "forces" in lab:
                np.testing.assert_allclose(atoms.get_forces(), lab["forces"], rtol=0,
                                           atol=1e-10)
            if "stress" in lab:
                np.testing.assert_allclose(atoms.get_stress(), lab["stress"], rtol=0,
                                           atol=1e-12)
            assert row.key_value_pairs.get("config_type") == ref.info.get("config_type")
            assert row.key_value_pairs.get("group") == ref.info.get("group")
            info_back = row.data["__info__"]
            expected = {**ref.info, "id": fid}  # export adds the id
            assert set(info_back) == set(expected)
            for key, value in expected.items():
                np.testing.assert_array_equal(info_back[key], value)
            arrays = row.data.get("__arrays__", {})
            assert set(arrays) == set(ref.arrays) - {"numbers", "positions"}
            for key, value in arrays.items():
                np.testing.assert_array_equal(value, ref.arrays[key])
            seen.add(fid)
    assert seen == set(frames)
    assert exported["outs"]["aselmdb"]["refused"] == []
    by_id = {r["pesdata_id"]: r for p in parts for r in ase.db.connect(
        out / f"{p}.aselmdb", readonly=True, use_lock_file=False).select()}
    assert "hirshfeld" in by_id[ids["cluster"]].data["__arrays__"]
    nof = by_id[ids["nof"]].toatoms()
    with pytest.raises(Exception, match="forces"):
        nof.get_forces()  # what fairchem's AtomsToGraphs would call: it fails, never reads 0


def test_aselmdb_without_backend_is_a_parameter_error(exported, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ase_db_backends.aselmdb", None)
    with pytest.raises(ParameterError, match="pip install ase-db-backends"):
        export(exported["store"], tmp_path / "o", "aselmdb", version=exported["si_version"])
    assert not (tmp_path / "o").exists()


def test_aselmdb_through_mace_lmdb_reader(exported):
    """MACE's own LMDB reader (``mace.data.lmdb_dataset.LMDBDataset``): labels as stored, a
    missing label weight 0, config_type and the extra per-atom array back in the Atoms."""
    torch = pytest.importorskip("torch")
    lmdb_dataset = pytest.importorskip("mace.data.lmdb_dataset")
    from mace.tools import AtomicNumberTable

    frames, ids = exported["frames"], exported["ids"]
    out, parts = _parts(exported, "aselmdb")
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    seen = set()
    try:
        for info in parts.values():
            ds = lmdb_dataset.LMDBDataset(str(out / info["files"][0]), r_max=4.0,
                                          z_table=AtomicNumberTable([8, 14, 22]))
            assert len(ds) == info["count"]
            for k in range(len(ds)):
                atoms = ds.AseDB.get_atoms(ds.AseDB.ids[k])
                fid = atoms.info["pesdata_id"]
                ref = frames[fid]
                lab = labels(ref)
                assert atoms.info.get("config_type") == ref.info.get("config_type")
                for key in set(ref.arrays) - {"numbers", "positions"}:
                    np.testing.assert_array_equal(atoms.arrays[key], ref.arrays[key])
                item = ds[k]
                np.testing.assert_allclose(item.positions.numpy(), ref.positions, rtol=0,
                                           atol=1e-10)
                assert float(item.energy_weight) == (1.0 if "energy" in lab else 0.0)
                assert float(item.forces_weight) == (1.0 if "forces" in lab else 0.0)
                assert float(item.stress_weight) == (1.0 if "stress" in lab else 0.0)
                if "energy" in lab:
                    assert abs(float(item.energy) - lab["energy"]) < 1e-8
                if "forces" in lab:
                    np.testing.assert_allclose(item.forces.numpy(), lab["forces"], rtol=0,
                                               atol=1e-10)
                if "stress" in lab:
                    np.testing.assert_allclose(item.stress.numpy()[0],
                                               ref.get_stress(voigt=False), rtol=0, atol=1e-12)
                seen.add(fid)
    finally:
        torch.set_default_dtype(default)
    assert seen == set(frames)
    assert ids["nof"] in seen and ids["cluster"] in seen


def _labelled(atoms: Atoms, fid: str, **results) -> Atoms:
    atoms.info["id"] = fid
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def test_deepmd_periodicity_edge_cases(tmp_path):
    from pesdata.export.deepmd import DeepmdExporter

    f = np.zeros((2, 3))
    slab = _labelled(Atoms("Si2", positions=[[0, 0, 0], [1.2, 1.2, 1.2]],
                           cell=[4.0, 4.0, 12.0], pbc=[True, True, False]), "slab",
                     energy=-9.0, forces=f)
    flat = _labelled(Atoms("Si2", positions=[[0, 0, 0], [1.2, 1.2, 0.0]],
                           cell=[[4.0, 0, 0], [0, 4.0, 0], [0, 0, 0]], pbc=[True, True, False]),
                     "flat", energy=-9.5, forces=f)
    mol = _labelled(Atoms("Si2", positions=[[0, 0, 0], [2.3, 0, 0]], pbc=False), "mol",
                    energy=-8.0, forces=f, stress=np.full(6, 0.01))
    out = tmp_path / "o"
    out.mkdir()
    got = DeepmdExporter().write({"all": [slab, flat, mol]}, out, {})
    assert got["refused"] == [{"id": "flat", "reason": got["refused"][0]["reason"]}]
    assert "no volume" in got["refused"][0]["reason"]
    assert got["counts"] == {"all": 2}
    assert any("partly periodic" in n and "slab" in n for n in got["notes"])
    assert any("stress of non-periodic" in n and "mol" in n for n in got["notes"])
    assert not (out / "all/Si2-ef/nopbc").exists()
    assert (out / "all/Si2-ef-nopbc/nopbc").exists()
    assert not (out / "all/Si2-ef-nopbc/set.000/virial.npy").exists()
    np.testing.assert_array_equal(np.load(out / "all/Si2-ef/set.000/box.npy")[0],
                                  slab.cell.array.ravel())


def test_aselmdb_metadata_ase_refuses_as_key_stays_in_data(tmp_path):
    from pesdata.export.aselmdb import AselmdbExporter

    a = _labelled(Atoms("Cu", positions=[[0, 0, 0]], cell=[2.5, 2.5, 2.5], pbc=True), "x1",
                  energy=-3.0)
    a.info.update(config_type="1", group="g")  # "1" reads as an int: ASE refuses it as a key
    out = tmp_path / "o"
    out.mkdir()
    AselmdbExporter().write({"all": [a]}, out, {})
    row = next(ase.db.connect(out / "all.aselmdb", readonly=True, use_lock_file=False).select())
    assert row.key_value_pairs == {"pesdata_id": "x1", "group": "g"}
    assert row.data["__info__"]["config_type"] == "1"
    assert set(row.toatoms().calc.results) == {"energy"}
