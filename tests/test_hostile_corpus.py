"""A corpus of malformed structure files through ``curate``: each ends in a one-line error that
names the file (and the frame and field where there is one) or in a quarantine entry naming
file#frame and field — never a traceback, a hang or a partial write (issue 19, hostile input).

Every file is made in the test from a valid two-atom frame; the other formats start from the
real files in ../shared/data/ase, cut. The store's version count and its files (the lock
aside) are compared before and after every failed run.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import pesdata
from pesdata.errors import PesdataError, ValidationError

from .conftest import DATA, deadline

H = ('Lattice="5.43 0 0 0 5.43 0 0 0 5.43" Properties=species:S:1:pos:R:3:forces:R:3 '
     'energy=-10.0 pbc="T T T"')
ATOMS = ("Si 0 0 0 0 0 0", "Si 1.5 1.5 1.5 0 0 0")


def fr(header: str = H, lines=ATOMS, n: int | None = None) -> str:
    """One extxyz frame (``n`` overrides the atom count line)."""
    return f"{len(lines) if n is None else n}\n{header}\n" + "".join(f"{ln}\n" for ln in lines)


V = fr()  # the valid frame the store already holds
OTHER = fr(lines=("Si 0 0 0 0.1 0 0", "Si 1.4 1.5 1.5 0 0 0"))  # another valid geometry
CELL = "5.43 0 0 0 5.43 0 0 0 5.43"


def hdr(old: str, new: str) -> str:
    assert old in H
    return H.replace(old, new)


def _cut(data: bytes, frac: float = 0.5) -> bytes:
    return data[: int(len(data) * frac)]


_RAW = (V + OTHER).encode() * 20
_RNG = np.random.default_rng(19)

# name -> (content, words the one-line error must hold); frame numbers are 0-based
ERRORS: dict[str, tuple[bytes, list[str]]] = {
    # truncated
    "cut_header.xyz": ((V + OTHER + '2\nLattice="5.43 0 0').encode(), ["frame 2", "Lattice"]),
    "cut_atom_line.xyz": ((V + OTHER + fr()[:-12]).encode(),
                          ["frame 2", "field 'Properties'", "atom 1 has 3 values", "declares 7"]),
    "cut_frame.xyz": ((V + OTHER + f"2\n{H}\n{ATOMS[0]}\n").encode(),
                      ["frame 2", "Frame has 1 atoms, expected 2"]),
    "cut_after_count.xyz": ((V + OTHER + "2\n").encode(), ["frame 2", "field 'atom count'"]),
    "cut.xyz.gz": (gzip.compress(_RAW)[:-30], ["truncated or corrupt", "frames 0-"]),
    "cut.xyz.bz2": (_cut(bz2.compress(_RAW)), ["frame 0", "truncated or corrupt"]),
    "cut.xyz.xz": (_cut(lzma.compress(_RAW)), ["frame 0", "truncated or corrupt"]),
    "zero.xyz.gz": (b"", ["empty"]),
    "empty_stream.xyz.gz": (gzip.compress(b""), ["format"]),
    "garbage.xyz.gz": (b"\x1f\x8b" + _RNG.bytes(200), ["frame 0", "truncated or corrupt"]),
    # binary garbage, empty
    "empty.xyz": (b"", ["file is empty"]),
    "blank.xyz": (b"  \n\n \n", ["no frames could be read"]),
    "random.xyz": (_RNG.bytes(4096), ["frame 0", "not UTF-8"]),
    "random.bin": (_RNG.bytes(4096), ["cannot be read"]),
    "picture.xyz": (b"\x89PNG\r\n\x1a\n" + _RNG.bytes(500), ["frame 0", "not UTF-8"]),
    "nul.xyz": (b"\0" * 1000, ["frame 0", "field 'atom count'", "expected the number of atoms"]),
    "nul_in_line.xyz": ((V + f"2\n{H}\nSi 0 0 0\0 0 0 0\n{ATOMS[1]}\n").encode(), ["frame 1"]),
    "utf16.xyz": (V.encode("utf-16"), ["frame 0", "not UTF-8"]),
    "latin1_comment.xyz": (V.encode() + fr(H + ' note="caf\xe9"').encode("latin-1"),
                           ["frame 1", "line 6", "not UTF-8"]),
    # elements
    "symbol_Xx.xyz": ((V + fr(lines=("Xx 0 0 0 0 0 0", ATOMS[1]))).encode(), ["frame 1", "Xx"]),
    "symbol_number.xyz": (fr(lines=("14 0 0 0 0 0 0", ATOMS[1])).encode(), ["frame 0", "14"]),
    # lengths and counts
    "forces_short.xyz": ((V + fr(lines=(ATOMS[0], "Si 1.5 1.5 1.5 0 0"))).encode(),
                         ["frame 1", "field 'Properties'", "atom 1 has 6 values"]),
    "count_too_big.xyz": ((V + fr(n=3) + OTHER).encode(), ["frame 1", "atom 2 has 1 values"]),
    "count_too_small.xyz": ((V + fr(n=1) + OTHER).encode(),
                            ["frame 2", "field 'atom count'", "line 8"]),
    "count_absurd.xyz": ((V + f"99999999999999999999\n{H}\n").encode(),
                         ["frame 1", "field 'atom count'", "claims 99999999999999999999 atoms"]),
    "count_negative.xyz": ((V + f"-5\n{H}\n").encode(), ["frame 1", "negative number of atoms"]),
    "count_float.xyz": ((V + fr(n=2.5)).encode(), ["frame 1", "'2.5'"]),
    # a Properties header that lies
    "props_more.xyz": ((V + fr(hdr("forces:R:3", "forces:R:3:charges:R:1"))).encode(),
                       ["frame 1", "field 'Properties'", "atom 0 has 7 values", "declares 8"]),
    "props_fewer.xyz": ((V + fr(hdr(":forces:R:3", ""))).encode(),
                        ["frame 1", "field 'Properties'", "atom 0 has 7 values", "declares 4"]),
    "props_R_for_S.xyz": ((V + fr(hdr("species:S:1", "species:R:1"))).encode(),
                          ["frame 1", "'Si'"]),
    "props_I_for_R.xyz": ((V + fr(hdr("forces:R:3", "forces:I:3"),
                                  lines=("Si 0 0 0 0.5 0 0", ATOMS[1]))).encode(),
                          ["frame 1", "'0.5'"]),
    "props_type_Q.xyz": ((V + fr(hdr("forces:R:3", "forces:Q:3"))).encode(),
                         ["frame 1", "field 'Properties'", "unknown type 'Q'"]),
    "props_count_0.xyz": ((V + fr(hdr("forces:R:3", "forces:R:0"))).encode(),
                          ["frame 1", "field 'Properties'", "count '0'"]),
    "props_count_huge.xyz": ((V + fr(hdr("forces:R:3", "forces:R:99999999999"))).encode(),
                             ["frame 1", "field 'Properties'", "more than 100000 columns"]),
    "props_not_triples.xyz": ((V + fr(hdr("forces:R:3", "forces:R"))).encode(),
                              ["frame 1", "field 'Properties'", "triples"]),
    "props_same_name.xyz": ((V + fr(hdr("forces:R:3", "pos:R:3"))).encode(),
                            ["frame 1", "more than once"]),
    # keys
    "key_twice.xyz": ((V + fr(H + " energy=-5.0")).encode(),
                      ["frame 1", "field 'energy'", "given twice"]),
    "lattice_twice.xyz": ((V + fr(H + ' Lattice="1 0 0 0 1 0 0 0 1"')).encode(),
                          ["frame 1", "field 'Lattice'", "given twice"]),
    "lattice_8.xyz": ((V + fr(hdr(CELL, "5.43 0 0 0 5.43 0 0 0"))).encode(),
                      ["frame 1", "Lattice", "9-long"]),
    "pbc_words.xyz": ((V + fr(hdr('pbc="T T T"', 'pbc="yes no maybe"'))).encode(),
                      ["frame 1", "field 'pbc'", "'yes no maybe'"]),
    "pbc_two.xyz": ((V + fr(hdr('pbc="T T T"', 'pbc="T T"'))).encode(),
                    ["frame 1", "field 'pbc'"]),
    "stress_5.xyz": ((V + fr(H + ' stress="1 2 3 4 5"')).encode(), ["frame 1", "stress"]),
    "json_broken.xyz": ((V + fr(H + ' data="_JSON {bad"')).encode(), ["frame 1", "JSON"]),
    "json_deep.xyz": ((V + fr(H + ' data="_JSON ' + "[" * 5000 + "]" * 5000 + '"')).encode(),
                      ["frame 1", "Recursion"]),
    "int_overflow.xyz": ((V + fr(hdr("forces:R:3", "forces:R:3:tags:I:1"), lines=(
        "Si 0 0 0 0 0 0 99999999999999999999999", "Si 1.5 1.5 1.5 0 0 0 1"))).encode(),
        ["frame 1", "too large"]),
    # very long lines
    "long_atom_line.xyz": ((V + fr(lines=(ATOMS[0] + " 1" * 500_000, ATOMS[1]))).encode(),
                           ["frame 1", "atom 0 has 500007 values"]),
    # other formats ASE reads: the real files of ../shared/data/ase, cut; garbage
    "POSCAR": (b"Si\n1.0\n5.43 0 0\n0 5.43 0\n0 0\n", ["frame 0", "'vasp'"]),
    "CONTCAR": (b"Si\n1.0\n5.43 0 0\n0 5.43 0\n0 0 5.43\nSi\n999999999\nDirect\n0 0 0\n",
                ["frame 0", "field 'atom count'", "claims 999999999 atoms"]),
    "cut.castep": (_cut((DATA / "ase" / "md.castep").read_bytes()), ["frame 0", "castep"]),
    "cut/vasprun.xml": (_cut((DATA / "ase" / "vasprun_pstress.xml").read_bytes()),
                        ["frame 0", "does not end with </modeling>"]),
    "cut/OUTCAR": (_cut((DATA / "ase" / "OUTCAR_example_1").read_bytes()),
                   ["no frames could be read", "'vasp-out'"]),
    "garbage/OUTCAR": (b"garbage\n" * 100, ["frame 0", "Incomplete OUTCAR"]),
    "aims.out": (_cut((DATA / "ase" / "aims_md.out").read_bytes(), 0.02), []),
    "garbage.traj": (_RNG.bytes(2048), ["frame 0", "'traj'"]),
    "garbage.db": (_RNG.bytes(2048), ["frame 0", "'db'"]),
    "short.json": (b'{"1": {"numbers": [14, 14], "positions": [[0, 0, 0]]}}', ["frame 0"]),
    "broken.json": (b"{not json", ["frame 0"]),
    "broken.cif": (b"data_x\n_cell_length_a 5.43\n_cell_length_b\nloop_\n_atom_site_label\n",
                   ["frame 0"]),
    "broken.xsf": (b"# total energy = -10 eV\nCRYSTAL\nPRIMVEC\n1 0 0\n0 1\n", ["frame 0"]),
}

# an OUTCAR next to a CONTCAR that claims 10^11 atoms: ASE's OUTCAR reader reads the CONTCAR
SIBLING = ("hostile_dir/OUTCAR", (DATA / "ase" / "OUTCAR_example_1").read_bytes(),
           ["field 'atom count'", "CONTCAR beside it"])

# name -> (content, [(frame, field)] the quarantine must name); the other frames are valid
REJECTED: dict[str, tuple[bytes, list[tuple[int, str]]]] = {
    "symbol_X.xyz": (fr(lines=("X 0 0 0 0 0 0", ATOMS[1])), [(0, "numbers")]),
    "z_200.xyz": (fr(hdr("species:S:1", "Z:I:1"), ("200 0 0 0 0 0 0", "14 1.5 1.5 1.5 0 0 0")),
                  [(0, "numbers")]),
    "z_negative.xyz": (fr(hdr("species:S:1", "Z:I:1"), ("-3 0 0 0 0 0 0", "14 1 1 1 0 0 0")),
                       [(0, "numbers")]),
    "z_huge.xyz": (fr(hdr("species:S:1", "Z:I:1"), ("99999999999 0 0 0 0 0 0", "14 1 1 1 0 0 0")),
                   [(0, "numbers")]),
    "nan_pos.xyz": (OTHER + fr(lines=("Si nan 0 0 0 0 0", ATOMS[1])), [(1, "positions")]),
    "inf_pos.xyz": (OTHER + fr(lines=("Si inf 0 0 0 0 0", ATOMS[1])), [(1, "positions")]),
    "nan_forces.xyz": (OTHER + fr(lines=("Si 0 0 0 nan 0 0", ATOMS[1])), [(1, "forces")]),
    "inf_forces.xyz": (OTHER + fr(lines=("Si 0 0 0 -inf 0 0", ATOMS[1])), [(1, "forces")]),
    "nan_energy.xyz": (OTHER + fr(hdr("energy=-10.0", "energy=nan")), [(1, "energy")]),
    "inf_energy.xyz": (OTHER + fr(hdr("energy=-10.0", "energy=inf")), [(1, "energy")]),
    "overflow_energy.xyz": (OTHER + fr(hdr("energy=-10.0", "energy=1e400")), [(1, "energy")]),
    "nan_stress.xyz": (OTHER + fr(H + ' stress="nan 0 0 0 1 0 0 0 1"'), [(1, "stress")]),
    "nan_cell.xyz": (OTHER + fr(hdr(CELL, "nan 0 0 0 5.43 0 0 0 5.43")), [(1, "cell")]),
    "inf_cell.xyz": (OTHER + fr(hdr(CELL, "inf 0 0 0 5.43 0 0 0 5.43")), [(1, "cell")]),
    "huge_cell.xyz": (OTHER + fr(hdr(CELL, "1e300 0 0 0 1e300 0 0 0 1e300")), [(1, "cell")]),
    "zero_cell.xyz": (OTHER + fr(hdr(CELL, "0 0 0 0 0 0 0 0 0")), [(1, "cell")]),
    "pos_1e300.xyz": (OTHER + fr(lines=("Si 1e300 0 0 0 0 0", ATOMS[1])), [(1, "positions")]),
    "pos_1e300_all.xyz": (OTHER + fr(lines=("Si 1e300 0 0 0 0 0", "Si -1e300 1e300 1 0 0 0")),
                          [(1, "positions")]),
    "zero_atoms.xyz": (OTHER + fr(lines=()), [(1, "numbers")]),
    "zero_atoms_bare.xyz": ("0\n\n", [(0, "numbers")]),
    "no_species.xyz": (OTHER + fr(hdr("species:S:1:", ""), ("0 0 0 0 0 0", "1.5 1.5 1.5 0 0 0")),
                       [(1, "numbers")]),
    "energy_two.xyz": (OTHER + fr(hdr("energy=-10.0", 'energy="1 2"')), [(1, "energy")]),
    "energy_word.xyz": (OTHER + fr(hdr("energy=-10.0", "energy=abc")), [(1, "energy")]),
}




def _state(root: Path) -> tuple[int, list[str]]:
    """The store's version count and its files, the write lock aside."""
    files = sorted(
        str(p.relative_to(root)) for p in root.rglob("*")
        if p.is_file() and p.name != "write.lock"
    )
    return len(pesdata.open_store(root).table.dataset().versions()), files


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A store holding the valid frame (one curate), and a folder of hostile files."""
    root = tmp_path_factory.mktemp("hostile")
    store = root / "store"
    (root / "good.xyz").write_text(V)
    pesdata.open_store(store, create=True).curate(str(root / "good.xyz"), method="DFT")
    return root, store


def _write(root: Path, name: str, content: bytes | str) -> Path:
    path = root / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _curate_error(store: Path, path: Path, **options) -> PesdataError:
    """Curate ``path``; the error it must raise (any other outcome fails the test)."""
    before = _state(store)
    with deadline(30), pytest.raises(PesdataError) as err:
        pesdata.open_store(store).curate(str(path), method="DFT", **options)
    assert _state(store) == before, "a failed curate changed the store"
    return err.value


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_malformed_file_is_a_one_line_error_naming_it(seeded, name):
    root, store = seeded
    content, words = ERRORS[name]
    path = _write(root, name, content)
    for quarantine in (False, True):  # quarantine is for frames, never for an unreadable file
        err = _curate_error(store, path, quarantine=quarantine)
        message = str(err)
        assert "\n" not in message and len(message) < 600, message
        assert message.startswith(str(path)), message
        for word in words:
            assert word in message, (word, message)
        if err.__cause__ is not None:
            assert err.__traceback__ is not None  # raised ``from`` the parser's error


def test_outcar_beside_a_lying_contcar(seeded):
    root, store = seeded
    name, content, words = SIBLING
    path = _write(root, name, content)
    _write(root, "hostile_dir/CONTCAR", ERRORS["CONTCAR"][0])
    message = str(_curate_error(store, path))
    assert message.startswith(str(path)) and all(w in message for w in words), message


@pytest.mark.parametrize("kind", ["directory", "fifo", "symlink loop", "dangling link"])
def test_special_paths_are_one_line_errors(seeded, kind):
    root, store = seeded
    path = root / "special" / kind.replace(" ", "_")
    path.parent.mkdir(exist_ok=True)
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # opening it for reading would block: it must never be opened
    elif kind == "symlink loop":
        path.symlink_to(path)
    else:
        path.symlink_to(root / "nowhere")
    expected = {"directory": "is a directory", "fifo": "not a regular file",
                "symlink loop": "symbolic links", "dangling link": "symbolic link to nothing"}
    message = str(_curate_error(store, path))
    assert message.startswith(str(path)) and expected[kind] in message, message


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_broken_frame_is_quarantined_naming_frame_and_field(seeded, name):
    root, store = seeded
    content, expected = REJECTED[name]
    path = _write(root, name, content)
    err = _curate_error(store, path)  # by default nothing is written
    assert isinstance(err, ValidationError) and "\n" not in str(err)
    frame, field = expected[0]
    assert f"{path}#{frame}" in str(err) or f"frame {frame}" in str(err), str(err)
    with deadline(30):
        report = pesdata.open_store(store).curate(str(path), method="DFT", quarantine=True)
    got = {(int(e["source"].rpartition("#")[2]), r["field"])
           for e in report.rejected for r in e["reasons"]}
    assert set(expected) <= got, (expected, report.rejected)
    assert all(e["source"].startswith(f"{path}#") for e in report.rejected)
    assert report.read == report.added + report.duplicates + len(report.rejected)
    stored = pesdata.open_store(store).read().table(columns=["source"]).column("source")
    assert not {e["source"] for e in report.rejected} & set(stored.to_pylist())


# -- the CLI: one line on stderr, exit code != 0, nothing written ---------------------------
CLI_CASES = ["cut_atom_line.xyz", "random.xyz", "props_count_huge.xyz", "key_twice.xyz",
             "CONTCAR", "cut/vasprun.xml", "pbc_words.xyz"]


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_malformed_file_one_line_error(seeded, name):
    from pesdata.cli import app

    root, store = seeded
    content, words = ERRORS[name]
    path = _write(root, name, content)
    before = _state(store)
    with deadline(30):
        result = CliRunner().invoke(app, ["curate", str(store), str(path), "--method", "DFT"])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}"), result.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert _state(store) == before


def test_cli_quarantine_names_file_frame_and_field(seeded):
    from pesdata.cli import app

    root, store = seeded
    path = _write(root, "cli_nan.xyz", REJECTED["nan_forces.xyz"][0])
    before = _state(store)
    result = CliRunner().invoke(app, ["curate", str(store), str(path), "--method", "DFT"])
    assert result.exit_code == 3 and _state(store) == before
    (line,) = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: 1 of 2 frame(s) invalid, nothing written")
    assert f"first: {path}: frame 1: field 'forces'" in line, line


def test_cli_message_with_markup_is_printed_as_it_is(tmp_path):
    """A file whose first line reads ``[/]`` made rich raise a MarkupError: a traceback."""
    from pesdata.cli import app

    path = tmp_path / "markup.xyz"
    path.write_text("[/]\n[bold]x\n")
    result = CliRunner().invoke(app, ["curate", str(tmp_path / "s"), str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {path}: frame 0: field 'atom count': line 1: expected the number of atoms, "
        "got '[/]'"
    ]
    assert not (tmp_path / "s").exists()


def test_cli_quarantine_report_prints_markup_in_values_as_it_is(tmp_path):
    """A quarantined frame whose energy reads ``[/]``: the report quotes it, no MarkupError."""
    from pesdata.cli import app

    path = tmp_path / "markup.xyz"
    frame = '2\nProperties=species:S:1:pos:R:3 energy={} pbc="F F F"\nCu 0 0 0\nCu 0 0 2.5\n'
    path.write_text(frame.format('"[/]"') + frame.format("-1.0"))
    result = CliRunner().invoke(app, ["curate", str(tmp_path / "s"), str(path), "--quarantine"])
    assert result.exit_code == 0, result.output
    assert f"rejected {path}#0: energy: energy value '[/]' is not a number" in result.output
    assert pesdata.open_store(tmp_path / "s").info()["n_structures"] == 1


def test_cli_in_a_subprocess_never_hangs_on_a_fifo_or_a_huge_header(tmp_path):
    """The console script, with a hard timeout: a FIFO given as input and a POSCAR claiming
    10⁹ atoms each end in one line on stderr (exit 2) and leave no store behind."""
    fifo = tmp_path / "input.xyz"
    os.mkfifo(fifo)
    poscar = tmp_path / "POSCAR"
    poscar.write_bytes(ERRORS["CONTCAR"][0])
    for path, word in ((fifo, "not a regular file"), (poscar, "claims 999999999 atoms")):
        run = subprocess.run(
            [sys.executable, "-m", "pesdata", "curate", str(tmp_path / "s"), str(path)],
            capture_output=True, text=True, timeout=120,
        )
        assert run.returncode == 2, run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {path}") and word in lines[0]
        assert "Traceback" not in run.stderr and not (tmp_path / "s").exists()
