"""The versioned store: versions, tags, log, diff, snapshots, export, artefacts."""

import ase.db
import ase.io
import numpy as np
import pandas as pd
import pytest

import pesdata
from pesdata.errors import ArtefactError, StoreNotFoundError, TagExistsError, VersionNotFound

from .conftest import DATA, emt_cells


def test_open_missing_store_raises(tmp_path):
    with pytest.raises(StoreNotFoundError, match="no pesdata store"):
        pesdata.open_store(tmp_path / "nope")


def test_new_store_has_one_empty_version(store):
    assert store.version == 1
    snap = store.read()
    assert len(snap) == 0 and snap.ids == []
    assert snap.to_pandas().empty
    assert store.log()["message"].tolist() == ["create store"]


def test_versions_tags_log_and_time_travel(store):
    r1 = store.curate(emt_cells(5), method="EMT", message="first five")
    r2 = store.curate(emt_cells(3, seed=1), method="EMT", message="three more")
    assert (r1.version, r2.version) == (2, 3)
    store.tag("v-five", 2)
    assert store.resolve("v-five") == 2 and store.tags() == {"v-five": 2}
    assert len(store.read("v-five")) == 5 and len(store.read(2)) == 5 and len(store.read()) == 8
    assert len(store.read(-1)) == 8
    log = store.log()
    assert log["version"].tolist() == [1, 2, 3]
    assert log["message"].tolist()[1:] == ["first five", "three more"]
    assert log["n_structures"].tolist() == [0, 5, 8]
    assert log.loc[1, "tags"] == "v-five"
    assert log["timestamp"].is_monotonic_increasing
    with pytest.raises(VersionNotFound):
        store.read(99)
    with pytest.raises(VersionNotFound):
        store.read("no-such-tag")
    with pytest.raises(TagExistsError, match="already names"):
        store.tag("v-five")


def test_diff_added_removed_relabelled(store):
    cells = emt_cells(4)
    unlabelled = [c.copy() for c in emt_cells(2, seed=7)]  # copies drop the calculator
    store.curate(cells[:3] + unlabelled, method="EMT")
    labelled = emt_cells(2, seed=7)
    report = store.curate([cells[3], *labelled], method="EMT")
    assert (report.added, report.relabelled, report.duplicates) == (1, 2, 2)
    d = store.diff(2, 3)
    ids3 = set(store.read(3).ids)
    assert len(d["added"]) == 1 and d["added"][0] in ids3
    assert d["removed"] == []
    assert len(d["relabelled"]) == 2
    back = store.diff(3, 2)
    assert back["removed"] == d["added"] and back["added"] == []
    snap = store.read(3)
    df = snap.to_pandas().set_index("id")
    assert df.loc[d["relabelled"], "energy"].notna().all()
    assert store.read(2).to_pandas().set_index("id").loc[d["relabelled"], "energy"].isna().all()


def test_snapshot_views(store):
    cells = emt_cells(6)
    store.curate(cells, method="EMT", config_type="bulk", group="traj-1")
    snap = store.read()
    df = snap.to_pandas()
    assert list(df.columns) == [
        "id", "formula", "n_atoms", "energy", "energy_per_atom", "fmax", "volume", "method",
        "config_type", "group", "source", "version_added",
    ]
    assert (df["formula"] == "Cu32").all() and (df["version_added"] == 2).all()
    by_source = {int(s.split("#")[1]): i for i, s in enumerate(df["source"])}
    for k, atoms in enumerate(cells):
        row = df.iloc[by_source[k]]
        assert row["energy"] == atoms.get_potential_energy()
        assert row["energy_per_atom"] == pytest.approx(atoms.get_potential_energy() / 32)
        assert row["fmax"] == pytest.approx(np.linalg.norm(atoms.get_forces(), axis=1).max())
        assert row["volume"] == pytest.approx(atoms.get_volume())
    arrays = snap.to_arrays()
    assert arrays["offsets"].tolist() == list(range(0, 6 * 32 + 1, 32))
    assert arrays["positions"].shape == (192, 3) and arrays["forces"].shape == (192, 3)
    taken = snap.take([4, 0, 4])
    assert [a.info["group"] for a in taken] == ["traj-1"] * 3
    k = by_source_inverse = {v: k for k, v in by_source.items()}[4]
    np.testing.assert_array_equal(taken[0].positions, cells[k].positions)
    np.testing.assert_array_equal(
        arrays["forces"][4 * 32 : 5 * 32], cells[by_source_inverse].get_forces()
    )
    assert len(snap.to_atoms()) == 6 == len(list(snap))
    with pytest.raises(IndexError):
        snap.take([6])


def test_to_arrays_with_unlabelled_structures_gives_nan_rows(store):
    cells = emt_cells(2)
    store.curate([cells[0], cells[1].copy()], method="EMT")
    arrays = store.read().to_arrays()
    assert arrays["forces"].shape == (64, 3)
    assert np.isnan(arrays["energy"]).sum() == 1
    assert np.isnan(arrays["forces"]).all(axis=1).sum() == 32


def test_export_extxyz_and_db_round_trip(store, tmp_path):
    cells = emt_cells(4)
    store.curate(cells, method="EMT", group="g")
    for name in ("out.extxyz", "out.db"):
        n = store.export(tmp_path / name)
        assert n == 4
        back = ase.io.read(tmp_path / name, ":")
        assert len(back) == 4
        got = sorted(back, key=lambda a: a.get_potential_energy())
        want = sorted(cells, key=lambda a: a.get_potential_energy())
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a.positions, b.positions, atol=1e-8)
            np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-8)
            assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-8)
    # re-ingesting the export is a no-op: same geometry and method
    report = store.curate(tmp_path / "out.extxyz")
    assert (report.added, report.duplicates, report.conflicts) == (0, 4, [])
    assert ase.db.connect(tmp_path / "out.db").count() == 4


def test_info_summary(store):
    store.curate(emt_cells(3), method="EMT")
    info = store.info()
    assert info == {
        "version": 2, "n_structures": 3, "n_atoms": 96, "elements": ["Cu"],
        "methods": {"EMT": 3}, "n_with_energy": 3, "n_with_forces": 3, "tags": [],
    }


def test_curate_report_artefact_is_saved_and_valid(store):
    report = store.curate(emt_cells(2), method="EMT")
    names = store.artefacts.list("curate_report")
    assert len(names) == 1 and names[0].startswith("v000002")
    doc = store.artefacts.load("curate_report", names[0])
    assert doc["version"] == report.version == 2 and doc["added"] == 2
    with pytest.raises(ArtefactError, match="curate_report artefact 'bad' invalid at version"):
        store.artefacts.save("curate_report", "bad", {**doc, "version": "two"})


def test_optimize_keeps_rows_and_builds_indices(store):
    for seed in range(3):
        store.curate(emt_cells(2, seed=seed), method="EMT")
    before = sorted(store.read().ids)
    store.optimize()
    ds = store.read().dataset
    assert sorted(store.read().ids) == before
    assert {i.name for i in ds.describe_indices()} >= {"id_idx", "geometry_hash_idx"}
    report = store.curate(emt_cells(2, seed=0), method="EMT")  # dedup through the index
    assert report.duplicates == 2 and report.added == 0


def test_log_is_a_dataframe(store):
    store.curate(emt_cells(2), method="EMT", message="two EMT cells")
    store.tag("first")
    log = store.log()
    assert isinstance(log, pd.DataFrame)
    assert log.columns.tolist() == ["version", "timestamp", "message", "n_structures", "tags"]
    assert len(log) == 2 and log["version"].tolist() == [1, 2]
    assert log.loc[1, "message"] == "two EMT cells"
    assert log["n_structures"].tolist() == [0, 2] and log["tags"].tolist() == ["", "first"]


def test_take_arrays_matches_take(store):
    cells = emt_cells(5)
    store.curate(cells, method="EMT")
    snap = store.read()
    batch = snap.take_arrays([3, 1])
    atoms = snap.take([3, 1])
    assert batch["offsets"].tolist() == [0, 32, 64]
    np.testing.assert_array_equal(batch["positions"][:32], atoms[0].positions)
    np.testing.assert_array_equal(batch["forces"][32:], atoms[1].get_forces())
    np.testing.assert_array_equal(batch["numbers"], np.full(64, 29))
    assert batch["energy"].tolist() == [a.get_potential_energy() for a in atoms]
    with pytest.raises(IndexError):
        snap.take_arrays([5])


def test_array_cache_takes_what_take_arrays_reads(tmp_path):
    st = pesdata.open_store(tmp_path / "si", create=True)
    st.curate(DATA / "mlearn" / "Si_test.extxyz", method="PBE")  # 24-64 atoms per frame
    snap = st.read()
    cache = snap.cache_arrays()
    assert len(cache) == 25 and cache.nbytes > 1525 * 56
    idx = np.random.default_rng(0).choice(25, 12, replace=False).tolist() + [-1, 0]
    got, ref = cache.take(idx), snap.take_arrays(idx)
    assert set(got) == set(ref)
    for key in ref:
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    with pytest.raises(IndexError):
        cache.take([25])


def test_file_url_and_reingest_of_db_and_traj_exports(tmp_path):
    st = pesdata.open_store(f"file://{tmp_path / 'url-store'}", create=True)
    cells = emt_cells(3)
    st.curate(cells, method="EMT")
    assert len(pesdata.open_store(tmp_path / "url-store").read()) == 3
    calls = []
    for name in ("out.db", "out.traj"):
        assert st.export(tmp_path / name, progress=lambda d, t: calls.append((d, t))) == 3
        other = pesdata.open_store(tmp_path / f"from-{name}", create=True)
        report = other.curate(tmp_path / name, method="EMT")
        assert report.added == 3
        assert sorted(other.read().ids) == sorted(st.read().ids)  # same geometry, same ids
    assert calls[-1] == (3, 3)
