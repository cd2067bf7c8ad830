"""The join of a version's rows with the descriptor cache index (issue 19, flat memory):
spilled to disk or in memory, it equals a plain dictionary join over the Parquet files read
whole (first entry of an id wins, missing rows, atom-count mismatches), and describe and the
descriptor stream give the same results when it is spilled."""

from __future__ import annotations

import shutil
from pathlib import Path

import ase.io
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pesdata
from pesdata.descriptors import _locate, _stream, describe, from_config, load_descriptors
from pesdata.descriptors._locate import locate
from pesdata.descriptors._stream import DescriptorStream

from .conftest import DATA

CONFIG = {"descriptor": "acsf", "species": ["O", "Ti"], "r_cut": 4.0,
          "g2_params": [[0.5, 0.0], [0.1, 2.0]], "g4_params": [[0.01, 1, 1]]}
TIO2 = DATA / "tio2/TiO2_aenet_subset.extxyz"
SIZES = [None, 1, 5, 16, 1 << 20]  # default, spilled into many parts and windows, in memory


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """A TiO2 store of 90 structures, 60 of them described (in segments of 7), as a directory
    to copy."""
    tmp = tmp_path_factory.mktemp("locate")
    frames = ase.io.read(TIO2, ":90")
    ase.io.write(tmp / "a.extxyz", frames[:60])
    ase.io.write(tmp / "b.extxyz", frames[60:])
    st = pesdata.open_store(tmp / "s", create=True)
    desc = from_config(CONFIG)
    st.curate(tmp / "a.extxyz", method="PBE")
    describe(st, desc, batch_size=7)
    st.curate(tmp / "b.extxyz", method="PBE")
    return tmp / "s", desc


def _copy(cached, tmp_path):
    src, desc = cached
    shutil.copytree(src, tmp_path / "s")
    st = pesdata.open_store(tmp_path / "s")
    return st, desc, tmp_path / "s" / "arrays" / desc.config_hash


def _expected(st, root: Path):
    """(segment, first_row, cached n_atoms, table n_atoms) per row, by a dict over whole files."""
    entries: dict[str, tuple] = {}
    for f in sorted((root / "index").glob("*.parquet")):
        for row in pq.read_table(f).to_pylist():
            entries.setdefault(row["id"], (row["segment"], row["first_row"], row["n_atoms"]))
    table = st.read().table(["id", "n_atoms"]).to_pylist()
    return [(*entries.get(r["id"], (None, None, None)), r["n_atoms"]) for r in table]


def _check(loc, expected):
    got = loc.read(0, loc.n_rows)
    assert len(got) == loc.n_rows == len(expected)
    for (code, first), (seg, row, _, _) in zip(got.tolist(), expected, strict=True):
        if seg is None:
            assert code == -1
        else:
            assert (loc.segments[code], first) == (seg, row)
    assert loc.missing == sum(e[0] is None for e in expected)
    assert loc.n_atoms == sum(e[3] for e in expected)
    bad = [k for k, e in enumerate(expected) if e[0] is not None and e[2] != e[3]]
    assert (loc.mismatch is None) == (not bad)
    if bad:
        assert loc.mismatch.row == bad[0]
        assert (loc.mismatch.cached, loc.mismatch.table) == expected[bad[0]][2:]


@pytest.mark.parametrize("mem", SIZES)
def test_join_equals_a_dictionary_join(cached, tmp_path, mem):
    st, _, root = _copy(cached, tmp_path)
    loc = locate(st.read(), root, mem_entries=mem)
    assert loc.spilled == (mem is not None and mem < 90)
    assert loc.missing == 30
    _check(loc, _expected(st, root))
    # reads of any range agree with the whole
    whole = loc.read(0, 90)
    for lo, hi in [(0, 1), (5, 17), (89, 90), (80, 200), (-3, 2), (50, 50)]:
        assert np.array_equal(loc.read(lo, hi), whole[max(lo, 0):min(hi, 90)])
    spill = loc._tmp.name if loc.spilled else None
    loc.close()
    assert spill is None or not Path(spill).exists()


@pytest.mark.parametrize("mem", SIZES)
def test_first_entry_wins_and_mismatch_is_the_first_in_row_order(cached, tmp_path, mem):
    st, _, root = _copy(cached, tmp_path)
    files = sorted((root / "index").glob("*.parquet"))
    a = pq.read_table(files[0]).to_pandas()
    b = pq.read_table(files[1]).to_pandas()
    early = a.copy()
    early["first_row"] = early["first_row"] + 1000  # sorts first: these entries win
    pq.write_table(pa.Table.from_pandas(early, preserve_index=False),
                   root / "index" / "0000-early.parquet")
    late = b.copy()
    late["first_row"] = 0  # sorts last: ignored
    pq.write_table(pa.Table.from_pandas(late, preserve_index=False),
                   root / "index" / "zzzz-late.parquet")
    b.loc[len(b) - 1, "n_atoms"] = 999
    b.loc[0, "n_atoms"] = 998
    pq.write_table(pa.Table.from_pandas(b, preserve_index=False), files[1])
    expected = _expected(st, root)
    assert sum(1 for e in expected if e[1] is not None and e[1] >= 1000) == len(a)
    loc = locate(st.read(), root, mem_entries=mem)
    _check(loc, expected)
    assert loc.mismatch.cached in (998, 999)


@pytest.mark.parametrize("mem", [None, 3])
def test_empty_index_and_empty_version(cached, tmp_path, mem):
    st, _, root = _copy(cached, tmp_path)
    shutil.rmtree(root / "index")
    (root / "index").mkdir()
    loc = locate(st.read(), root, mem_entries=mem)
    assert loc.missing == 90 and (loc.read(0, 90)["code"] == -1).all()
    empty = pesdata.open_store(tmp_path / "e", create=True)
    loc = locate(empty.read(), root, mem_entries=mem)
    assert (loc.n_rows, loc.missing, loc.n_atoms) == (0, 0, 0)
    assert len(loc.read(0, 10)) == 0


def test_describe_and_stream_equal_when_spilled(cached, tmp_path, monkeypatch):
    st, desc, root = _copy(cached, tmp_path)
    monkeypatch.setattr(_locate, "MEM_ENTRIES", 4)
    out = describe(st, desc, batch_size=8)
    assert (out["computed"], out["cached"]) == (30, 60)
    assert describe(st, desc)["computed"] == 0
    stream = DescriptorStream(st, desc, chunk_rows=50)
    assert stream._locations.spilled
    whole = load_descriptors(st, desc)
    plans = list(stream.plans())
    assert np.array_equal(np.concatenate([p.read() for p in plans]), whole["features"])
    assert np.array_equal(np.concatenate([p.numbers for p in plans]), whole["numbers"])
    spill = Path(stream._locations._tmp.name)
    del stream, plans
    import gc

    gc.collect()
    assert not spill.exists()  # the temporary directory goes with the stream


def test_a_full_temporary_disk_is_a_clear_error(cached, tmp_path, monkeypatch):
    import errno

    from pesdata.errors import DiskFull

    st, desc, root = _copy(cached, tmp_path)
    monkeypatch.setattr(_locate, "MEM_ENTRIES", 4)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(_locate.tempfile, "tempdir", str(tmp_path / "tmp"))  # as $TMPDIR does
    import builtins

    opened = builtins.open

    def full(path, mode="r", *a, **k):
        if "pesdata-locate-" in str(path) and ("a" in mode or "w" in mode):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return opened(path, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", full)
    with pytest.raises(DiskFull, match="pesdata-locate-.*TMPDIR"):
        describe(st, desc)
    with pytest.raises(DiskFull, match="no space left"):
        DescriptorStream(st, desc)
    monkeypatch.setattr(builtins, "open", opened)
    assert not list((tmp_path / "tmp").iterdir())  # nothing left behind


def test_a_cached_version_is_joined_once_for_select(cached, tmp_path, monkeypatch):
    """describe's join is handed to the stream when describe computed nothing (select's path);
    when it computed something, or for another version, the stream joins again."""
    from pesdata.descriptors._cache import _describe

    st, desc, _ = _copy(cached, tmp_path)
    out, located = _describe(st, desc, None, 8, None, None, None)
    assert out["computed"] == 30 and located is None  # the cache changed: stale, closed
    out, located = _describe(st, desc, None, 8, None, None, None)
    assert out["computed"] == 0 and located.version == st.version
    calls = []
    monkeypatch.setattr(_stream, "locate", lambda *a, **k: calls.append(a) or locate(*a, **k))
    with DescriptorStream(st, desc, locations=located) as stream:
        assert stream._locations is located and not calls
        whole = load_descriptors(st, desc)
        assert np.array_equal(np.concatenate([p.read() for p in stream.plans()]),
                              whole["features"])
    located.version = -1  # of another version: joined again, the given one closed
    with DescriptorStream(st, desc, locations=located) as stream:
        assert len(calls) == 1 and stream._locations is not located
