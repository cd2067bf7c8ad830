"""``pesdata export --to`` / ``store.export(to=...)``: the machinery every target shares, shown
with the plain ``extxyz`` target — the manifest (against ``schemas/export.json``), the output
directory appearing whole or not at all, E0s, split parts, refusals, bit-for-bit round trip
through ASE's own reader, and the command line end to end.

The store holds real data: the mlearn Si test set (stress converted from its
``virial_stress_vasp_kB``: kbar, VASP order xx yy zz xy yz xz, VASP sign → eV/Å³, Voigt, ASE
sign), six TiO2 cells (two elements, five compositions), a Si frame without forces and one
without energy; version 3 adds isolated Si, Ti and O atoms. The stress conversion is ASE's own
for VASP's ``in kB`` line (ase/io/vasp_parsers/vasp_outcar_parsers.py,
``convert_vasp_outcar_stress``: ``-stress[[0, 1, 2, 4, 5,
3]] * 1e-1 * GPa``).
"""

from __future__ import annotations

import json

import ase.io
import jsonschema
import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from typer.testing import CliRunner

import pesdata
from pesdata.cli import app
from pesdata.errors import ArtefactError, OutputError, ParameterError
from pesdata.export import _base
from pesdata.export._base import Exporter
from pesdata.split import make_split

from .conftest import DATA, ROOT
from .export_data import si_with_stress

runner = CliRunner()
SCHEMA = json.loads((ROOT / "schemas" / "export.json").read_text())
ISOLATED = {"Si": -0.8123456789012345, "Ti": -2.3456789, "O": -1.5}


def _si_with_stress() -> list[Atoms]:
    frames = si_with_stress()
    for a in frames:
        a.info["config_type"] = "si-" + a.info["group"].lower()
    return frames


@pytest.fixture(scope="module")
def st(tmp_path_factory):
    """Version 2: Si (stress) + TiO2 + no-forces + no-energy frames; splits ``h`` (holdout)
    and ``cv`` (3-fold) on it; version 3 adds the isolated atoms."""
    si = _si_with_stress()
    tio2 = [ase.io.read(DATA / "tio2" / "TiO2_aenet_subset.extxyz", i)  # five compositions
            for i in (0, 1, 67, 100, 183, 922)]
    for a in tio2:
        a.info.update(group="tio2", config_type="bulk")
    no_forces = si[0].copy()
    no_forces.rattle(0.01, seed=1)
    no_forces.calc = SinglePointCalculator(no_forces, energy=si[0].get_potential_energy() + 0.01)
    no_forces.info["config_type"] = "no_forces"
    no_energy = si[1].copy()
    no_energy.rattle(0.01, seed=2)
    no_energy.calc = SinglePointCalculator(no_energy, forces=si[1].get_forces())
    no_energy.info["config_type"] = "no_energy"
    store = pesdata.open_store(tmp_path_factory.mktemp("export") / "st", create=True)
    report = store.curate([*si, *tio2, no_forces, no_energy], method="PBE")
    assert (report.added, report.rejected) == (33, [])
    make_split(store, "h", "holdout", test_size=0.2)
    make_split(store, "cv", "kfold", k=3)
    atoms = []
    for sym, e in ISOLATED.items():
        a = Atoms(sym, positions=[[5.0, 5.0, 5.0]], cell=[10, 10, 10], pbc=False)
        a.calc = SinglePointCalculator(a, energy=e, forces=np.zeros((1, 3)))
        a.info["config_type"] = "IsolatedAtom"
        atoms.append(a)
    assert store.curate(atoms, method="PBE").added == 3
    assert store.version == 3
    return store


def _by_id(store, version):
    snap = store.read(version)
    return dict(zip(snap.ids, snap.to_atoms(), strict=True))


def _results(atoms) -> dict:
    return {} if atoms.calc is None else atoms.calc.results


def _assert_same(got: Atoms, ref: Atoms) -> None:
    """Bit for bit: numbers, positions, cell, pbc, labels present exactly where stored."""
    np.testing.assert_array_equal(got.numbers, ref.numbers)
    np.testing.assert_array_equal(got.positions, ref.positions)
    np.testing.assert_array_equal(got.cell.array, ref.cell.array)
    np.testing.assert_array_equal(got.pbc, ref.pbc)
    a, b = _results(got), _results(ref)
    assert {k for k in a if a[k] is not None} == {k for k in b if b[k] is not None}
    for key, value in b.items():
        if value is not None:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(value), err_msg=key)
    for key in ("config_type", "group", "method"):
        assert got.info.get(key) == ref.info.get(key), key


# -- the manifest ---------------------------------------------------------------------------


def test_manifest_validates_and_names_its_source(st, tmp_path):
    out = tmp_path / "o"
    manifest = st.export(out, to="extxyz", split="cv", fold=1, e0="average")
    on_disk = json.loads((out / "pesdata-export.json").read_text())
    assert on_disk == manifest
    jsonschema.Draft202012Validator(SCHEMA).validate(on_disk)
    split = st.artefacts.load("split", "cv")
    assert (on_disk["target"], on_disk["version"], on_disk["split"], on_disk["fold"]) == (
        "extxyz", 2, "cv", 1)
    assert on_disk["n_folds"] == 3 and on_disk["strategy"] == "kfold"
    assert on_disk["store"] == str(st.uri)
    assert on_disk["pesdata_version"] == pesdata.__version__
    for part in ("train", "test"):
        n = len(split["folds"][1][part])
        assert on_disk["parts"][part] == {"files": [f"{part}.extxyz"], "count": n,
                                          "structures": n}
    assert on_disk["e0_mode"] == "average" and sorted(on_disk["e0"]) == ["O", "Si", "Ti"]
    assert sorted(out.iterdir()) == sorted(
        out / f for f in ("pesdata-export.json", "train.extxyz", "test.extxyz"))


def test_schema_refuses_what_it_should():
    good = {"pesdata_export": 1, "target": "extxyz", "store": "s", "version": 2, "split": None,
            "fold": None, "e0_mode": "none", "e0": {}, "parts": {"all": {
                "files": ["all.extxyz"], "count": 1, "structures": 1}},
            "key_mapping": {}, "units": {}, "missing_labels": "absent",
            "pesdata_version": "0", "created": "now"}
    jsonschema.Draft202012Validator(SCHEMA).validate(good)
    for bad in ({"target": "nope"}, {"parts": {"valid": good["parts"]["all"]}},
                {"e0": {"Si": "x"}}, {"version": -1}, {"extra": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft202012Validator(SCHEMA).validate({**good, **bad})


# -- OUT whole or not at all ----------------------------------------------------------------


class _HalfWay(Exporter):
    """Writes the first part, then fails."""

    name = "halfway"

    def write(self, parts, out, e0):
        (out / "train.extxyz").write_text("written before the failure\n")
        raise RuntimeError("exporter failed half-way")


class _BadManifest(Exporter):
    """Writes its files but reports a key mapping the schema refuses (a number)."""

    name = "badmanifest"

    def write(self, parts, out, e0):
        for part in parts:
            (out / f"{part}.txt").write_text("x\n")
        return {"files": {p: [f"{p}.txt"] for p in parts}, "counts": {p: 1 for p in parts},
                "key_mapping": {"energy": 1}, "units": {}, "missing_labels": "absent"}


@pytest.mark.parametrize(("exporter", "error", "match"), [
    (_HalfWay, RuntimeError, "half-way"),
    (_BadManifest, ArtefactError, "pesdata-export.json. invalid at"),
])
def test_failing_exporter_leaves_nothing(st, tmp_path, monkeypatch, exporter, error, match):
    monkeypatch.setitem(_base._EXPORTERS, exporter.name, exporter)
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "other").write_text("keep")
    with pytest.raises(error, match=match):
        st.export(parent / "o", to=exporter.name, split="h")
    assert sorted(p.name for p in parent.iterdir()) == ["other"]  # no OUT, no staging dir


def test_existing_out_is_refused_and_kept(st, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine").write_text("keep")
    with pytest.raises(OutputError, match="exists"):
        st.export(out, to="extxyz")
    (tmp_path / "f").write_text("keep")
    with pytest.raises(OutputError, match="exists"):
        st.export(tmp_path / "f", to="extxyz")
    assert [p.name for p in out.iterdir()] == ["mine"] and (tmp_path / "f").read_text() == "keep"


# -- E0s ------------------------------------------------------------------------------------


def test_e0_isolated_without_isolated_atoms_names_the_elements(st, tmp_path):
    with pytest.raises(ParameterError, match=r"for O, Si, Ti;"):
        st.export(tmp_path / "o", to="extxyz", version=2, e0="isolated")
    assert not (tmp_path / "o").exists()


def test_e0_isolated_with_isolated_atoms(st, tmp_path):
    manifest = st.export(tmp_path / "o", to="extxyz", version=3, e0="isolated")
    assert manifest["e0"] == ISOLATED  # exactly the stored energies
    back = ase.io.read(tmp_path / "o" / "all.extxyz", ":")
    isolated = [a for a in back if a.info.get("config_type") == "IsolatedAtom"]
    assert sorted(a.get_chemical_symbols()[0] for a in isolated) == ["O", "Si", "Ti"]


def test_e0_average_is_the_least_squares_fit(st, tmp_path):
    manifest = st.export(tmp_path / "o", to="extxyz", version=2, e0="average")
    frames = [a for a in st.read(2).to_atoms() if _results(a).get("energy") is not None]
    assert len(frames) == 32  # one of 33 frames has no energy and takes no part
    elements = ["O", "Si", "Ti"]
    x = np.array([[a.get_chemical_symbols().count(s) for s in elements] for a in frames])
    y = np.array([a.get_potential_energy() for a in frames])
    ref, *_ = np.linalg.lstsq(x.astype(float), y, rcond=None)
    assert sorted(manifest["e0"]) == elements
    np.testing.assert_allclose([manifest["e0"][s] for s in elements], ref, rtol=0, atol=1e-9)
    # Si alone is fitted by the Si frames: the fit is not a per-atom mean over everything
    si = [e / len(a) for a, e in zip(frames, y, strict=True) if set(a.symbols) == {"Si"}]
    assert abs(manifest["e0"]["Si"] - np.mean(si)) < 0.5


def test_unknown_e0_mode_and_target_are_refused(st, tmp_path):
    with pytest.raises(ParameterError, match="e0='zero'"):
        st.export(tmp_path / "o", to="extxyz", e0="zero")
    with pytest.raises(ParameterError, match="known: aselmdb, deepmd, extxyz"):
        st.export(tmp_path / "o", to="torch")
    assert not (tmp_path / "o").exists()


# -- splits ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("split", "fold"), [("h", 0), ("cv", 2)])
def test_split_parts_are_the_split_ids_in_order(st, tmp_path, split, fold):
    out = tmp_path / "o"
    st.export(out, to="extxyz", split=split, fold=fold)
    folds = st.artefacts.load("split", split)["folds"]
    got = {p: [a.info["id"] for a in ase.io.read(out / f"{p}.extxyz", ":")]
           for p in ("train", "test")}
    assert got == {p: folds[fold][p] for p in ("train", "test")}
    assert not set(got["train"]) & set(got["test"])
    assert len(got["train"]) + len(got["test"]) == 33


def test_split_refusals(st, tmp_path):
    out = tmp_path / "o"
    with pytest.raises(ParameterError, match="pinned to version 2, not 3"):
        st.export(out, to="extxyz", split="h", version=3)
    assert st.export(out, to="extxyz", split="h", version=2)["version"] == 2  # its own: fine
    for fold in (3, -1, True, 1.0):
        with pytest.raises(ParameterError, match=r"fold=.*: split 'cv' has folds 0\.\.2"):
            st.export(tmp_path / "p", to="extxyz", split="cv", fold=fold)
    with pytest.raises(ParameterError, match="fold=1 needs a split"):
        st.export(tmp_path / "p", to="extxyz", fold=1)
    with pytest.raises(ParameterError, match="format='extxyz'"):
        st.export(tmp_path / "p", to="extxyz", format="extxyz")
    with pytest.raises(ParameterError, match="need a trainer target"):
        st.export(tmp_path / "p.xyz", split="h")
    with pytest.raises(ParameterError, match="need a trainer target"):
        st.export(tmp_path / "p.xyz", e0="average")
    assert not (tmp_path / "p").exists() and not (tmp_path / "p.xyz").exists()


# -- lossless -------------------------------------------------------------------------------


def test_round_trip_through_ase_is_bit_for_bit(st, tmp_path):
    st.export(tmp_path / "o", to="extxyz", version=3)
    back = ase.io.read(tmp_path / "o" / "all.extxyz", ":")
    stored = _by_id(st, 3)
    assert [a.info["id"] for a in back] == st.read(3).ids  # the version's order, all of it
    for got in back:
        _assert_same(got, stored[got.info["id"]])
    by_type = {a.info.get("config_type"): _results(a) for a in back}
    assert "forces" not in by_type["no_forces"] and "energy" in by_type["no_forces"]
    assert "energy" not in by_type["no_energy"] and "forces" in by_type["no_energy"]
    with_stress = [a for a in back if "stress" in _results(a)]
    assert len(with_stress) == 25 and all(a.info["group"] != "tio2" for a in with_stress)
    # the ASE sign: the store's stress, not the VASP one (tensile positive)
    raw = ase.io.read(DATA / "mlearn" / "Si_test.extxyz", ":")
    vasp = {a.positions.tobytes(): a.info["virial_stress_vasp_kB"] for a in raw}
    for a in with_stress:
        if a.positions.tobytes() in vasp:
            v = np.asarray(vasp[a.positions.tobytes()])
            np.testing.assert_allclose(a.get_stress()[:3], -v[:3] * 0.1 * units.GPa, rtol=1e-12)


# -- the command line -----------------------------------------------------------------------


def _cli(*args):
    return runner.invoke(app, ["export", *(str(a) for a in args)])


def _one_line_error(result, text):
    assert result.exit_code != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], result.stderr


def test_cli_end_to_end(st, tmp_path):
    root = st.uri
    out = tmp_path / "o"
    result = _cli(root, out, "--to", "extxyz", "--split", "cv", "--fold", "1", "--e0", "average",
                  "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest == json.loads((out / "pesdata-export.json").read_text())
    assert (manifest["split"], manifest["fold"], manifest["e0_mode"]) == ("cv", 1, "average")
    folds = st.artefacts.load("split", "cv")["folds"]
    assert [a.info["id"] for a in ase.io.read(out / "test.extxyz", ":")] == folds[1]["test"]

    human = _cli(root, tmp_path / "h", "--to", "extxyz", "--split", "h", "--e0", "average")
    assert human.exit_code == 0, human.output
    for text in ("export --to extxyz: version 2, split 'h' fold 0 of 1", "train.extxyz",
                 "E0 (average, eV): O ", "missing labels: the key is absent",
                 "pesdata-export.json"):
        assert text in human.stdout, human.stdout
    assert json.loads((tmp_path / "h" / "pesdata-export.json").read_text())["split"] == "h"

    _one_line_error(_cli(root, out, "--to", "extxyz"), "exists; export --to writes a new")
    _one_line_error(_cli(root, tmp_path / "x", "--to", "extxyz", "--version", "2", "--e0",
                         "isolated"), "for O, Si, Ti;")
    _one_line_error(_cli(root, tmp_path / "x", "--to", "extxyz", "--split", "h", "--version",
                         "3"), "pinned to version 2, not 3")
    _one_line_error(_cli(root, tmp_path / "x", "--to", "extxyz", "--split", "h", "--fold", "4"),
                    "has folds 0..0")
    _one_line_error(_cli(root, tmp_path / "x", "--to", "nope"), "unknown export target 'nope'")
    _one_line_error(_cli(root, tmp_path / "x.xyz", "--split", "h"), "need --to")
    _one_line_error(_cli(root, tmp_path / "x", "--to", "extxyz", "--fold", "1"),
                    "--fold needs --split")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.xyz").exists()

    # without --to, as before
    plain = _cli(root, tmp_path / "plain.xyz", "--version", "2", "--json")
    assert plain.exit_code == 0, plain.output
    assert json.loads(plain.stdout)["n_structures"] == 33
    assert len(ase.io.read(tmp_path / "plain.xyz", ":")) == 33


NOTE = "key_mapping:\n  REF_energy: total_energy  # [bold]not markup[/bold] " + "x" * 90


def test_cli_summary_prints_refused_ids_and_notes_verbatim(st, tmp_path, monkeypatch):
    from pesdata.export.extxyz import ExtxyzExporter

    class Noted(ExtxyzExporter):
        def write(self, parts, out, e0):
            result = super().write(parts, out, e0)
            first = parts["train"][0].info["id"]
            result["refused"] = [{"id": first, "reason": "no forces [test]"}]
            result["notes"] = [NOTE]
            return result

    monkeypatch.setitem(_base._EXPORTERS, "extxyz", Noted)
    result = _cli(st.uri, tmp_path / "o", "--to", "extxyz", "--split", "h")
    assert result.exit_code == 0, result.output
    first = st.artefacts.load("split", "h")["folds"][0]["train"][0]
    assert "refused 1 structure(s):" in result.stdout
    assert f"{first}: no forces [test]" in result.stdout
    assert NOTE in result.stdout


# -- review fixes ------------------------------------------------------------------------------


def test_e0_average_refuses_elements_the_training_part_lacks(st, tmp_path):
    from pesdata.export import export

    make_split(st, "by_group", "logo", group_by="group", version=2)
    folds = st.artefacts.load("split", "by_group")["folds"]
    snap = st.read(2)
    row = {i: k for k, i in enumerate(snap.ids)}

    def has_ti(ids):
        return any("Ti" in a.get_chemical_symbols() for a in snap.take([row[i] for i in ids]))

    fold = next(k for k, f in enumerate(folds) if has_ti(f["test"]) and not has_ti(f["train"]))
    with pytest.raises(ParameterError, match=r"no E0 for O, Ti"):
        export(st, tmp_path / "o", "mace", split="by_group", fold=fold, e0="average")
    assert not (tmp_path / "o").exists()  # the reservation of OUT is given back


def test_an_out_being_written_by_another_export_is_refused(st, tmp_path, monkeypatch):
    """OUT is claimed (mkdir) before the work: a second export to it fails at once."""
    from pesdata.export import export

    seen = {}

    def second(*args, **kwargs):
        with pytest.raises(OutputError, match="exists"):
            export(st, tmp_path / "o", "extxyz")
        seen["refused"] = True
        return original(*args, **kwargs)

    original = _base.gather
    monkeypatch.setattr(_base, "gather", second)
    manifest = export(st, tmp_path / "o", "extxyz")
    assert seen["refused"] and manifest["store"] == str(st.uri if "://" in str(st.uri) else
                                                         __import__("os").path.abspath(st.uri))


def test_numeric_array_info_is_kept(tmp_path):
    a = Atoms("Si2", positions=[[0, 0, 0], [1.4, 1.4, 1.4]], cell=[5.43] * 3, pbc=True)
    a.calc = SinglePointCalculator(a, energy=-10.0, forces=np.zeros((2, 3)))
    a.info["vec"] = np.array([1.5, 2.25, 1 / 3])
    store = pesdata.open_store(tmp_path / "s", create=True)
    store.curate([a], method="PBE")
    store.export(tmp_path / "o", to="extxyz")
    back = ase.io.read(tmp_path / "o" / "all.extxyz")
    assert np.array_equal(back.info["vec"], a.info["vec"])


def test_nequip_names_a_part_by_its_own_labels(st, tmp_path):
    """A test part with energies and forces only is test.extxyz, even when train has stress."""
    from pesdata.export import export

    make_split(st, "by_group2", "logo", group_by="group", version=2)
    folds = st.artefacts.load("split", "by_group2")["folds"]
    snap = st.read(2)
    row = {i: k for k, i in enumerate(snap.ids)}
    for k, f in enumerate(folds):
        test = snap.take([row[i] for i in f["test"]])
        if all("stress" not in _base.labels(a) and "forces" in _base.labels(a)
               and "energy" in _base.labels(a) for a in test):
            m = export(st, tmp_path / "n", "nequip", split="by_group2", fold=k)
            assert "test.extxyz" in m["parts"]["test"]["files"]
            return
    pytest.fail("no fold whose test part has energies and forces only")
