"""Hostile inputs to the readers and writers: each ends in a short, precise error, never a hang.

Reproductions of /work/shared/repro/adversarial.sh blocks D3 (huge atom count), D4 (10 MB line),
D9 (export over special files), D12 (compressed extxyz) and garbage after valid frames.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import stat

import ase.io
import numpy as np
import pytest

import pesdata
from pesdata.errors import InputError, OutputError
from pesdata.io import detect_format, read_frames, write_atoms

from .conftest import DATA, deadline

HEADER = ('Lattice="5.43 0 0 0 5.43 0 0 0 5.43" Properties=species:S:1:pos:R:3:forces:R:3 '
          'energy=-10.0 pbc="T T T"')
COMPRESSORS = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}




@pytest.fixture
def valid3(tmp_path):
    """Three real Si frames (mlearn test set) written by ASE, and their bytes."""
    path = tmp_path / "valid3.xyz"
    ase.io.write(path, ase.io.read(DATA / "mlearn" / "Si_test.extxyz", ":3"), format="extxyz")
    return path


@pytest.mark.parametrize("ext", sorted(COMPRESSORS))
def test_compressed_extxyz_reads_like_the_plain_file(tmp_path, valid3, ext):
    packed = tmp_path / f"v.xyz.{ext}"
    packed.write_bytes(COMPRESSORS[ext](valid3.read_bytes()))
    assert detect_format(packed) == "extxyz"
    plain = list(read_frames(valid3, method="PBE"))
    ours = list(read_frames(packed, method="PBE"))
    ref = ase.io.read(packed, ":")  # ASE reads compressed files itself
    assert len(ours) == len(plain) == len(ref) == 3
    for i, (a, b, atoms) in enumerate(zip(ours, plain, ref, strict=True)):
        assert a.id == b.id
        np.testing.assert_array_equal(a.positions, atoms.positions)
        np.testing.assert_array_equal(a.forces, atoms.get_forces())
        assert a.energy == atoms.get_potential_energy()
        assert a.source == f"{packed}#{i}"


def test_compressed_extxyz_curates(tmp_path, valid3):
    packed = tmp_path / "v.xyz.gz"
    packed.write_bytes(gzip.compress(valid3.read_bytes()))
    store = pesdata.open_store(tmp_path / "s", create=True)
    report = store.curate([packed], method="PBE")
    assert report.read == 3
    assert len(store.read()) == 3


def test_huge_atom_count_is_refused_at_once(tmp_path, valid3):
    path = tmp_path / "hugecount.xyz"
    path.write_text(valid3.read_text() + f"999999999999\n{HEADER}\nSi 0 0 0 0 0 0\n")
    with deadline(20), pytest.raises(InputError) as info:
        list(read_frames(path))
    err = info.value
    assert (err.path, err.frame, err.field) == (str(path), 3, "atom count")
    assert "999999999999" in str(err) and "bytes follow" in str(err)
    # curate says the same, naming the file
    store = pesdata.open_store(tmp_path / "s", create=True)
    with deadline(30), pytest.raises(InputError, match=r"frame 3: field 'atom count'"):
        store.curate([path], method="PBE")


def test_huge_atom_count_in_a_compressed_file_stops_at_its_end(tmp_path):
    path = tmp_path / "hugecount.xyz.gz"
    path.write_bytes(gzip.compress(f"999999999999\n{HEADER}\nSi 0 0 0 0 0 0\n".encode()))
    with deadline(20), pytest.raises(InputError, match="expected 999999999999") as info:
        list(read_frames(path))
    assert info.value.frame == 0


def test_negative_atom_count(tmp_path):
    path = tmp_path / "neg.xyz"
    path.write_text(f"-2\n{HEADER}\n")
    with pytest.raises(InputError, match="negative number of atoms -2") as info:
        list(read_frames(path))
    assert (info.value.frame, info.value.field) == (0, "atom count")


def test_ten_megabyte_line_is_not_echoed(tmp_path):
    path = tmp_path / "longline.xyz"
    path.write_bytes(b"A" * 10_000_000)
    with pytest.raises(InputError) as info:
        list(read_frames(path))
    msg = str(info.value)
    assert len(msg) < 500
    assert "(10000000 characters)" in msg and "'AAAA" in msg
    assert info.value.frame == 0


def test_long_garbage_line_after_frames_is_capped(tmp_path, valid3):
    path = tmp_path / "tail.xyz"
    path.write_text(valid3.read_text() + "3\n" + "x" * 100_000 + "\nSi 0 0\n")
    with pytest.raises(InputError) as info:
        list(read_frames(path))
    assert len(str(info.value)) < 600
    assert info.value.frame == 3


@pytest.mark.parametrize(
    "tail, match",
    [
        (b"this is garbage\n", "expected the number of atoms, got 'this is garbage'"),
        (bytes(range(128, 256)) * 4, "not UTF-8 text"),
        (b"1\nLattice=\"1 2\" Properties=species:S:1:pos:R:3\nSi 0 0 0\n", "Lattice"),
        (b"5\nProperties=species:S:1:pos:R:3\nSi 0 0 0\n", "Frame has 1 atoms, expected 5"),
        (b"\n\n1\nProperties=species:S:1:pos:R:3\nSi 0 0 0\n", "blank line"),
    ],
    ids=["text", "binary", "bad-comment", "truncated", "blank-line"],
)
def test_garbage_after_three_frames_is_reported_at_frame_3(tmp_path, valid3, tail, match):
    path = tmp_path / "garbage.xyz"
    path.write_bytes(valid3.read_bytes() + tail)
    got = []
    with pytest.raises(InputError, match=match) as info:
        for frame in read_frames(path):
            got.append(frame)
    assert info.value.frame == 3, str(info.value)
    assert info.value.path == str(path)
    assert len(got) == 3  # the valid frames came first


def test_non_utf8_in_a_comment_names_the_line(tmp_path, valid3):
    lines = valid3.read_bytes().split(b"\n")
    n0 = int(lines[0])
    second = n0 + 2  # first line of frame 1
    lines[second + 1] = lines[second + 1] + b" note=\xff\xfe"
    path = tmp_path / "latin.xyz"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(InputError, match=rf"line {second + 2}: not UTF-8") as info:
        list(read_frames(path))
    assert info.value.frame == 1


# -- writes outside the store -------------------------------------------------------------------


@pytest.fixture
def images():
    return ase.io.read(DATA / "mlearn" / "Si_test.extxyz", ":2")


def _no_temp_files(folder) -> bool:
    return not [p for p in os.listdir(folder) if p.startswith(".")]


def test_export_refuses_a_fifo(tmp_path, images):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="FIFO"):
        write_atoms(fifo, images, format="extxyz")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert _no_temp_files(tmp_path)


def test_export_refuses_a_symlink_and_leaves_its_target(tmp_path, images):
    target = tmp_path / "real.xyz"
    target.write_text("keep")
    link = tmp_path / "link.xyz"
    link.symlink_to(target)
    with pytest.raises(OutputError, match="symbolic link"):
        write_atoms(link, images)
    assert link.is_symlink() and target.read_text() == "keep"
    assert _no_temp_files(tmp_path)


def test_export_refuses_a_character_device(tmp_path, images):
    dev = tmp_path / "fakenull"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here ({exc})")
    with pytest.raises(OutputError, match="character device"):
        write_atoms(dev, images, format="extxyz")
    assert stat.S_ISCHR(os.lstat(dev).st_mode)
    assert _no_temp_files(tmp_path)


def test_store_export_refuses_special_files_and_replaces_regular_ones(tmp_path):
    store = pesdata.open_store(tmp_path / "s", create=True)
    store.curate([DATA / "mlearn" / "Si_test.extxyz"], method="PBE")
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "fifo")
    with pytest.raises(OutputError):
        store.export(out / "fifo", format="extxyz")
    (out / "old.xyz").write_text("old")
    assert store.export(out / "old.xyz") == 25
    assert len(ase.io.read(out / "old.xyz", ":")) == 25
    assert sorted(os.listdir(out)) == ["fifo", "old.xyz"]


def test_failed_write_leaves_no_temp_file(tmp_path, images):
    def broken():
        yield images[0]
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError, match="writer died"):
        write_atoms(tmp_path / "out.xyz", broken())
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name, magic", [
    ("out.xyz.gz", b"\x1f\x8b"), ("out.xyz.bz2", b"BZh"), ("out.traj.gz", b"\x1f\x8b"),
    ("out.xyz.xz", b"\xfd7zXZ\x00"),
])
def test_compressed_outputs_are_compressed(tmp_path, images, name, magic):
    path = tmp_path / name
    assert write_atoms(path, images) == 2
    raw = path.read_bytes()
    assert raw[:len(magic)] == magic, f"{name} starts with {raw[:6]!r}, not {magic!r}"
    back = ase.io.read(path, ":")
    np.testing.assert_allclose(back[1].positions, images[1].positions, atol=1e-6)
    assert _no_temp_files(tmp_path)


def test_an_error_thrown_into_the_reader_is_not_relabelled(tmp_path):
    """Only conversion errors become InputError; the consumer's own errors pass unchanged."""
    path = tmp_path / "a.xyz"
    path.write_text(f"2\n{HEADER}\nSi 0 0 0 0 0 0\nSi 1.5 1.5 1.5 0 0 0\n" * 2)
    frames = read_frames(path)
    assert next(frames).source == f"{path}#0"
    with pytest.raises(ValueError, match="the consumer's own") as err:
        frames.throw(ValueError("the consumer's own"))
    assert type(err.value) is ValueError


# -- a cut compressed stream: the frame being read, after the complete frames before it -------

def _cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


@pytest.mark.parametrize("ext", list(COMPRESSORS))
def test_truncated_compressed_file_names_the_frame_being_read(tmp_path, ext):
    raw = (DATA / "mlearn" / "Si_test.extxyz").read_bytes()
    packed = tmp_path / f"cut.xyz.{ext}"
    packed.write_bytes(_cut(COMPRESSORS[ext](raw), 0.6))
    read = []
    with deadline(60), pytest.raises(InputError) as err:
        for frame in read_frames(packed):
            read.append(frame)
    # every complete frame before the cut came out first (bzip2 decodes whole 900 kB blocks:
    # nothing of this 170 kB file is readable before its end)
    assert len(read) >= (0 if ext == "bz2" else 5)
    assert err.value.path == str(packed) and err.value.frame == len(read)
    assert "compressed file is truncated or corrupt" in str(err.value)
    assert f"frame {len(read)}" in str(err.value)
    if read:
        whole = list(ase.io.iread(DATA / "mlearn" / "Si_test.extxyz"))
        np.testing.assert_array_equal(read[-1].positions, whole[len(read) - 1].positions)


@pytest.mark.parametrize("fmt", [None, "extxyz"])
def test_compressed_file_cut_inside_the_first_header(tmp_path, fmt):
    packed = tmp_path / "head.xyz.gz"
    packed.write_bytes(gzip.compress((DATA / "mlearn" / "Si_test.extxyz").read_bytes())[:30])
    with pytest.raises(InputError, match="compressed file is truncated or corrupt") as err:
        list(read_frames(packed, format=fmt))
    assert err.value.path == str(packed)
    assert "--format" not in str(err.value)



def test_compressed_file_cut_without_a_telling_name(tmp_path):
    packed = tmp_path / "head.gz"
    packed.write_bytes(gzip.compress((DATA / "mlearn" / "Si_test.extxyz").read_bytes())[:30])
    with pytest.raises(InputError, match="compressed file is truncated or corrupt") as err:
        list(read_frames(packed))
    assert err.value.path == str(packed) and err.value.frame == 0
