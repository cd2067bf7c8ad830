"""Ingest of the real DFT data sets in ../shared/data: counts, units and exact values."""

import tarfile

import ase.io
import numpy as np
import pytest

import pesdata
from pesdata.errors import InputError

# (file, curate options, frames, atoms) as listed in shared/data/README.md
MLEARN = [
    ("mlearn/Si_training.extxyz", {}, 214, 13_233),
    ("mlearn/Si_test.extxyz", {}, 25, 1_525),
    ("mlearn/Cu_test.extxyz", {}, 31, 3_178),
    ("mlearn/Cu_train_acedata.xyz", {"forces_key": "force"}, 262, 27_416),
    ("tio2/TiO2_aenet_subset.extxyz", {}, 1_000, 21_285),
]


def _by_source(snap):
    """Map frame index in the file → Atoms read back from the store."""
    df = snap.to_pandas()
    order = {int(s.rsplit("#", 1)[1]): i for i, s in enumerate(df["source"])}
    atoms = snap.to_atoms()
    return {k: atoms[i] for k, i in order.items()}


@pytest.mark.parametrize(("name", "options", "frames", "atoms"), MLEARN)
def test_counts_and_exact_values(tmp_path, data, name, options, frames, atoms):
    st = pesdata.open_store(tmp_path / "s", create=True)
    report = st.curate(data / name, method="PBE", **options)
    assert (report.read, report.added, report.rejected, report.duplicates) == (
        frames, frames, [], 0
    )
    info = st.info()
    assert (info["n_structures"], info["n_atoms"]) == (frames, atoms)
    assert info["n_with_energy"] == info["n_with_forces"] == frames
    back = _by_source(st.read())
    key = options.get("forces_key", "forces")
    for k, ref in enumerate(ase.io.read(data / name, ":")):
        got = back[k]
        np.testing.assert_array_equal(got.numbers, ref.numbers)
        np.testing.assert_array_equal(got.positions, ref.positions)
        np.testing.assert_array_equal(got.cell.array, ref.cell.array)
        ref_forces = ref.arrays[key] if key != "forces" else ref.get_forces()
        np.testing.assert_array_equal(got.get_forces(), ref_forces)
        assert got.get_potential_energy() == ref.get_potential_energy()
        for info_key in ("group", "tag", "description", "virial_stress_vasp_kB"):
            if info_key in ref.info:
                np.testing.assert_array_equal(got.info[info_key], ref.info[info_key])


def test_reingest_is_all_duplicates(tmp_path, data):
    st = pesdata.open_store(tmp_path / "s", create=True)
    st.curate(data / "mlearn/Si_test.extxyz", method="PBE")
    report = st.curate(data / "mlearn/Si_test.extxyz", method="PBE")
    assert (report.added, report.duplicates, report.committed) == (0, 25, False)
    assert st.version == 2
    other = st.curate(data / "mlearn/Si_test.extxyz", method="PBEsol")  # another method
    assert other.added == 25 and len(st.read()) == 50


def test_gap18_quirks_key_mapping(tmp_path, data):
    st = pesdata.open_store(tmp_path / "s", create=True)
    report = st.curate(
        data / "quirks/Si_tiny.xyz", method="CASTEP", energy_key="dft_energy",
        forces_key="dft_force", virial_key="dft_virial",
    )
    assert report.read == report.added == 53 and report.rejected == []
    back = _by_source(st.read())
    for k, ref in enumerate(ase.io.read(data / "quirks/Si_tiny.xyz", ":")):
        got = back[k]
        assert got.get_potential_energy() == ref.info["dft_energy"]
        np.testing.assert_array_equal(got.get_forces(), ref.arrays["dft_force"])
        for name, values in ref.arrays.items():  # the other per-atom arrays are kept
            if name != "dft_force":
                np.testing.assert_array_equal(got.arrays[name], values)
        if "dft_virial" in ref.info:
            virial = np.asarray(ref.info["dft_virial"]).reshape(3, 3)
            stress = -virial / ref.get_volume()
            np.testing.assert_allclose(got.get_stress(voigt=False), stress, rtol=1e-12)
    df = st.read().to_pandas()
    assert "isolated_atom" in set(df["config_type"])


def test_without_key_mapping_the_forces_are_missing(tmp_path, data):
    """ACEData's `force` column is not taken for forces unless asked."""
    st = pesdata.open_store(tmp_path / "s", create=True)
    report = st.curate(data / "mlearn/Cu_train_acedata.xyz", method="PBE")
    assert report.added == 262 and st.info()["n_with_forces"] == 0
    assert "force" in st.read().take([0])[0].arrays


def test_aenet_xsf_forces_in_ev_per_angstrom(tmp_path, data):
    with tarfile.open(data / "tio2/TiO2_aenet_xsf.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    files = sorted((tmp_path / "dir_xsf").glob("*.xsf"))
    assert len(files) == 1000
    st = pesdata.open_store(tmp_path / "s", create=True)
    report = st.curate(files[:200], method="PBE")
    assert report.added == 200 and report.rejected == []
    got = {s.rsplit("/", 1)[1].split("#")[0]: a for s, a in zip(
        st.read().to_pandas()["source"], st.read().to_atoms(), strict=True)}
    subset = ase.io.read(data / "tio2/TiO2_aenet_subset.extxyz", ":")
    ref = {a.info["source_file"]: a for a in subset}
    for name, atoms in got.items():
        np.testing.assert_allclose(atoms.get_forces(), ref[name].get_forces(), atol=1e-8)
        assert atoms.get_potential_energy() == pytest.approx(
            ref[name].get_potential_energy(), abs=1e-6
        )
    # plain ASE would have scaled the forces by Hartree: the validator catches such a unit error
    plain = ase.io.read(files[0], format="xsf")
    assert np.abs(plain.get_forces()).max() > 20 * np.abs(got[files[0].name].get_forces()).max()


@pytest.mark.parametrize(
    ("name", "options", "frames", "labels"),
    [
        ("ase/OUTCAR_example_1", {}, 1, ("energy", "forces", "stress")),
        ("ase/vasprun_pstress.xml", {}, 1, ("energy", "forces", "stress")),
        ("ase/vasprun_dfpt.xml", {}, 1, ("energy", "forces")),
        ("ase/md.castep", {}, 3, ("energy", "forces")),
        ("ase/aims_md.out", {"format": "aims-output"}, None, ("energy", "forces")),
        ("ase/aims_relax.out", {"format": "aims-output"}, None, ("energy", "forces")),
    ],
)
def test_code_output_formats(tmp_path, data, name, options, frames, labels):
    st = pesdata.open_store(tmp_path / "s", create=True)
    fmt = options.get("format")
    ref = ase.io.read(data / name, ":", format=fmt)
    report = st.curate(data / name, method="DFT", **options)
    assert report.read == report.added == len(ref) == (frames or len(ref))
    back = _by_source(st.read())
    for k, r in enumerate(ref):
        got = back[k]
        np.testing.assert_array_equal(got.positions, r.positions)
        if "energy" in labels:
            assert got.get_potential_energy() == r.get_potential_energy()
        if "forces" in labels:
            np.testing.assert_array_equal(got.get_forces(), r.get_forces())
        if "stress" in labels:
            np.testing.assert_array_equal(got.get_stress(), r.get_stress())


def test_ambiguous_aims_output_needs_a_format(tmp_path, data):
    st = pesdata.open_store(tmp_path / "s", create=True)
    with pytest.raises(InputError, match=r"aims_md.out: no frames could be read as format '"):
        st.curate(data / "ase/aims_md.out")  # ASE guesses another format for it
    assert st.version == 1
