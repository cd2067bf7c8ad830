"""The streamed reference (issue 19, flat memory): descriptor chunks equal the whole-version
load, chunked statistics equal NumPy's, streamed nearest-neighbour distances equal float64 brute
force (scipy), the streamed novelty fit equals the in-memory one, on every chunk size and
scheduler, and ``select`` never loads the reference whole."""

from __future__ import annotations

import shutil
from pathlib import Path

import ase.io
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from scipy.spatial.distance import cdist

import pesdata
from pesdata.descriptors import _stream, describe, from_config, load_descriptors
from pesdata.descriptors._stream import DescriptorStream
from pesdata.errors import ArtefactNotFound, ParameterError, StoreCorruptError
from pesdata.select import Environments
from pesdata.select._reference import ElementStats, StreamedReference
from pesdata.select.fingerprint import element_scaling
from pesdata.select.novelty import NoveltyCriterion

from .conftest import DATA

CONFIG = {"descriptor": "acsf", "species": ["O", "Ti"], "r_cut": 4.5,
          "g2_params": [[0.5, 0.0], [0.1, 2.0], [0.05, 3.0]],
          "g4_params": [[0.01, 1, 1], [0.01, 2, -1]]}
TIO2 = DATA / "tio2/TiO2_aenet_subset.extxyz"


@pytest.fixture(scope="module")
def tio2(tmp_path_factory):
    """A TiO2 store of 120 structures curated from two files and described twice (so a
    version's structures lie in interleaved segments), and 40 candidate frames."""
    tmp = tmp_path_factory.mktemp("stream")
    frames = ase.io.read(TIO2, ":160")
    ase.io.write(tmp / "a.extxyz", frames[:50])
    ase.io.write(tmp / "b.extxyz", frames[50:120])
    st = pesdata.open_store(tmp / "s", create=True)
    desc = from_config(CONFIG)
    st.curate(tmp / "a.extxyz", method="PBE")
    describe(st, desc, batch_size=16)
    st.curate(tmp / "b.extxyz", method="PBE")
    describe(st, desc, batch_size=16)
    return st, desc, frames[120:]


def _env(desc, frames) -> Environments:
    with torch.no_grad():
        x = desc.compute(frames).numpy()
    return Environments(x, np.concatenate([a.numbers for a in frames]),
                        np.repeat(np.arange(len(frames)), [len(a) for a in frames]),
                        len(frames))


@pytest.mark.parametrize("chunk_rows", [1, 97, 500, None])
def test_chunks_equal_the_whole_version(tio2, chunk_rows):
    st, desc, _ = tio2
    whole = load_descriptors(st, desc)
    stream = DescriptorStream(st, desc, chunk_rows=chunk_rows)
    plans = list(stream.plans())
    assert np.array_equal(np.concatenate([p.read() for p in plans]), whole["features"])
    assert np.array_equal(np.concatenate([p.numbers for p in plans]), whole["numbers"])
    assert sum(p.n_structures for p in plans) == len(whole["ids"]) == len(stream) == 120
    assert [p.first_structure for p in plans] == list(
        np.cumsum([0] + [p.n_structures for p in plans])[:-1])
    assert [p.first_atom for p in plans] == list(np.cumsum([0] + [p.n_rows for p in plans])[:-1])
    if chunk_rows and chunk_rows > 24:  # a chunk ends at the structure that fills it
        assert all(p.n_rows >= chunk_rows for p in plans[:-1])


def test_stream_refuses_uncached_and_corrupt_caches(tio2, tmp_path):
    st, desc, _ = tio2
    other = from_config({**CONFIG, "r_cut": 4.0})
    with pytest.raises(ArtefactNotFound, match="120 structure"):
        DescriptorStream(st, other)
    copy = tmp_path / "copy"
    shutil.copytree(Path(st.uri), copy)
    st2 = pesdata.open_store(copy)
    root = copy / "arrays" / desc.config_hash
    index = sorted((root / "index").glob("*.parquet"))[0]
    table = pq.read_table(index).to_pandas()
    table.loc[0, "first_row"] = 10_000
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), index)
    with pytest.raises(StoreCorruptError, match="names row 10"):
        for plan in DescriptorStream(st2, desc).plans():
            plan.read()
    table.loc[0, "first_row"] = -24  # would wrap around to the segment's end
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), index)
    with pytest.raises(StoreCorruptError, match="names row -24"):
        for plan in DescriptorStream(st2, desc).plans():
            plan.read()
    table.loc[0, "first_row"] = 0
    table.loc[0, "n_atoms"] = 7
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), index)
    with pytest.raises(StoreCorruptError, match="gives structure .* 7 atoms; the table has"):
        list(DescriptorStream(st2, desc).plans())


def test_chunked_statistics_equal_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, [0.1, 5.0, 1e-3], size=(1000, 3))
    total = None
    for part in np.array_split(x, [7, 8, 400, 999]):
        s = ElementStats(len(part), part.mean(axis=0) if len(part) else np.zeros(3),
                         ((part - part.mean(axis=0)) ** 2).sum(axis=0) if len(part)
                         else np.zeros(3))
        total = s if total is None else total.merge(s)
    assert total.n == 1000
    np.testing.assert_allclose(total.mean, x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(total.var, x.var(axis=0), rtol=1e-12)


@pytest.mark.parametrize("chunk_rows", [50, 1000])
def test_streamed_nearest_equals_float64_brute_force(tio2, chunk_rows):
    st, desc, cands = tio2
    ref = StreamedReference(DescriptorStream(st, desc, chunk_rows=chunk_rows))
    whole = load_descriptors(st, desc)
    q_env = _env(desc, cands)
    for z in (8, 22):
        x = whole["features"][whole["numbers"] == z]
        mu, scale = x.mean(axis=0), x.std(axis=0) + 1e-3
        xs = (x - mu) / scale
        q = (q_env.features[q_env.numbers == z] - mu) / scale
        q = np.vstack([q, xs[:5]])  # five queries equal to reference rows: distance 0
        d, pos = ref.nearest({z: (mu, scale, q, None, None)})[z]
        exact = cdist(q, xs)
        np.testing.assert_allclose(d, exact.min(axis=1), rtol=1e-6, atol=5e-4)
        assert np.array_equal(d[-5:], np.zeros(5))
        np.testing.assert_allclose(np.linalg.norm(xs[pos] - q, axis=1), d, rtol=1e-12)
        # leave-one-out: a reference row's own row is skipped, never the nearest other one
        own = np.arange(0, len(xs), 7)
        d_loo, pos_loo = ref.nearest({z: (mu, scale, xs[own], own, None)})[z]
        full = cdist(xs[own], xs)
        full[np.arange(len(own)), own] = np.inf
        np.testing.assert_allclose(d_loo, full.min(axis=1), rtol=1e-6, atol=5e-4)
        assert not np.any(pos_loo == own)


@pytest.mark.parametrize(("chunk_rows", "scheduler"),
                         [(None, None), (61, None), (61, "threads"), (200, "processes")])
def test_streamed_novelty_equals_in_memory(tio2, chunk_rows, scheduler):
    st, desc, cands = tio2
    whole = Environments.from_cache(load_descriptors(st, desc))
    ref = StreamedReference(DescriptorStream(st, desc, chunk_rows=chunk_rows), scheduler, 2)
    mem = NoveltyCriterion(n_calibration=300, seed=4).fit(whole)
    streamed = NoveltyCriterion(n_calibration=300, seed=4, index_mb=0).fit(ref)
    tm, ts = mem.thresholds_, streamed.thresholds_
    assert ts["search"] == {"O": "streamed", "Ti": "streamed"}
    assert tm["search"] == {"O": "IndexFlatL2", "Ti": "IndexFlatL2"}
    for key in ("n_reference", "n_calibration", "n_nonfinite_dropped"):
        assert ts[key] == tm[key]
    for sym in ("O", "Ti"):
        np.testing.assert_allclose(ts["calibration"][sym], tm["calibration"][sym], rtol=1e-5)
        np.testing.assert_allclose(ts["scaling"]["scale"][sym], tm["scaling"]["scale"][sym],
                                   rtol=1e-12)
    env = _env(desc, cands)
    a, b = mem.score(env), streamed.score(env)
    np.testing.assert_allclose(b["novelty"], a["novelty"], rtol=1e-5)
    assert list(b["novelty_atom"]) == list(a["novelty_atom"])
    c_mem, s_mem = element_scaling(whole)
    c_str, s_str = element_scaling(ref)
    for z in (8, 22):
        np.testing.assert_allclose(c_str[z], c_mem[z], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(s_str[z], s_mem[z], rtol=1e-10)


@pytest.mark.parametrize(("exact_max", "chunk_rows"), [(None, 150), (200, 1500)])
def test_streamed_results_do_not_depend_on_the_scheduler(tio2, exact_max, chunk_rows):
    st, desc, cands = tio2
    env = _env(desc, cands)
    out = []
    for scheduler in (None, "threads", "processes"):
        ref = StreamedReference(DescriptorStream(st, desc, chunk_rows=chunk_rows), scheduler, 2)
        crit = NoveltyCriterion(n_calibration=200, index_mb=0, exact_max=exact_max).fit(ref)
        assert set(crit.thresholds_["search"].values()) == {
            "streamed" if exact_max is None else "streamed IVF"}
        out.append((crit.thresholds_["calibration"], crit.score(env)["atom_distances"].tolist()))
    assert out[0] == out[1] == out[2]


def test_select_never_loads_the_reference_whole(tio2, monkeypatch, tmp_path):
    """The reference is read chunk by chunk: load_descriptors (the whole-version read) is not
    called, and several chunks give the ledger of one."""
    import pesdata.descriptors as descriptors
    from pesdata.select import select

    st, desc, cands = tio2
    ase.io.write(tmp_path / "c.extxyz", cands)

    def refuse(*args, **kwargs):
        raise AssertionError("select loaded the whole reference")

    monkeypatch.setattr(descriptors, "load_descriptors", refuse)
    one = select(st, [tmp_path / "c.extxyz"], descriptor=desc, budget=5, name="one")
    monkeypatch.setattr(_stream, "CHUNK_VALUES", 50 * desc.n_features)
    many = select(st, [tmp_path / "c.extxyz"], descriptor=desc, budget=5, name="many",
                  novelty_index_mb=0)
    assert one.summary["criteria"]["novelty"]["search"] == {"O": "IndexFlatL2",
                                                             "Ti": "IndexFlatL2"}
    assert many.summary["criteria"]["novelty"]["search"] == {"O": "streamed", "Ti": "streamed"}
    cols = ["id", "decision", "rank"]
    assert one.ledger[cols].equals(many.ledger[cols])
    # in memory (float32 rows, refined) and streamed (float64) agree to float32 rounding
    np.testing.assert_allclose(many.ledger["novelty"].astype(float),
                               one.ledger["novelty"].astype(float), rtol=1e-5)


def test_index_budget_keeps_some_elements_in_memory_and_streams_the_rest(tio2):
    """With room for O's rows only, O is indexed in memory and Ti streamed; each element's
    thresholds and distances equal those of the all-in-memory fit (the same calibration
    draws), and the in-memory element equals it exactly."""
    st, desc, cands = tio2
    whole = Environments.from_cache(load_descriptors(st, desc))
    n_o = int((whole.numbers == 8).sum())
    mb = n_o * (8 * desc.n_features + 8) / 2**20
    ref = StreamedReference(DescriptorStream(st, desc, chunk_rows=90))
    mixed = NoveltyCriterion(n_calibration=150, seed=2, index_mb=mb * 1.01).fit(ref)
    mem = NoveltyCriterion(n_calibration=150, seed=2).fit(whole)
    assert mixed.thresholds_["search"] == {"O": "IndexFlatL2", "Ti": "streamed"}
    assert "Ti" not in mixed.rows_ and mixed.rows_["O"].dtype == np.float32
    for sym in ("O", "Ti"):
        assert mixed.thresholds_["n_calibration"][sym] == mem.thresholds_["n_calibration"][sym]
        np.testing.assert_allclose(mixed.thresholds_["calibration"][sym],
                                   mem.thresholds_["calibration"][sym], rtol=1e-5)
    env = _env(desc, cands)
    a, b = mem.score(env), mixed.score(env)
    np.testing.assert_allclose(b["novelty"], a["novelty"], rtol=1e-5)
    with pytest.raises(ParameterError, match="index_mb"):
        NoveltyCriterion(index_mb=-1).fit(ref)


def test_cli_index_mb(tio2, tmp_path):
    import json

    from typer.testing import CliRunner

    from pesdata.cli import app

    st, desc, cands = tio2
    ase.io.write(tmp_path / "c.extxyz", cands)
    (tmp_path / "d.json").write_text(json.dumps(CONFIG))
    args = ["select", st.uri, "--candidates", str(tmp_path / "c.extxyz"), "--descriptor",
            str(tmp_path / "d.json"), "--budget", "3", "--json"]
    res = CliRunner().invoke(app, [*args, "--index-mb", "0", "--name", "cli-streamed"])
    assert res.exit_code == 0, res.output
    from pesdata.select.ledger import load_ledger

    assert load_ledger(st, "cli-streamed")[1]["criteria"]["novelty"]["search"] == {
        "O": "streamed", "Ti": "streamed"}
    res = CliRunner().invoke(app, [*args, "--index-mb", "-2"])
    assert res.exit_code != 0 and "index_mb" in res.output


def test_unrankable_query_is_inf_as_in_memory(tio2):
    """A query beyond float32's range: faiss ranks nothing (-1); both paths say inf, -1."""
    st, desc, cands = tio2
    ref = StreamedReference(DescriptorStream(st, desc, chunk_rows=200))
    whole = Environments.from_cache(load_descriptors(st, desc))
    env = _env(desc, cands[:2])
    feats = env.features.copy()
    feats[0, 0] = 1e20
    env = Environments(feats, env.numbers, env.structure, env.n_frames)
    mem = NoveltyCriterion(n_calibration=100).fit(whole).score(env)
    streamed = NoveltyCriterion(n_calibration=100, index_mb=0).fit(ref).score(env)
    assert mem["atom_distances"][0][0] == streamed["atom_distances"][0][0] == np.inf
    np.testing.assert_allclose(streamed["atom_distances"][1], mem["atom_distances"][1],
                               rtol=1e-5)


def test_calibration_on_every_row_runs_in_blocks(tio2, monkeypatch):
    """n_calibration=None on a streamed element: the calibration rows are gathered and
    searched a block at a time, with the in-memory fit's answer."""
    from pesdata.select import _reference

    st, desc, _ = tio2
    monkeypatch.setattr(_reference, "CALIBRATION_BLOCK", 100)
    whole = Environments.from_cache(load_descriptors(st, desc))
    ref = StreamedReference(DescriptorStream(st, desc, chunk_rows=300))
    calls = []
    gather = ref.gather
    monkeypatch.setattr(ref, "gather", lambda picks, *a, **k: calls.append(picks) or
                        gather(picks, *a, **k))
    streamed = NoveltyCriterion(n_calibration=None, index_mb=0).fit(ref)
    mem = NoveltyCriterion(n_calibration=None).fit(whole)
    n_o = int((whole.numbers == 8).sum())
    assert len([c for c in calls if c]) == -(-n_o // 100) and n_o > 100  # O: the most rows
    for sym in ("O", "Ti"):
        assert streamed.thresholds_["n_calibration"][sym] == mem.thresholds_["n_calibration"][sym]
        np.testing.assert_allclose(streamed.thresholds_["calibration"][sym],
                                   mem.thresholds_["calibration"][sym], rtol=1e-5)


def test_queries_in_blocks_give_the_one_block_answer(tio2, monkeypatch):
    from pesdata.select import _reference

    st, desc, cands = tio2
    env = _env(desc, cands)
    ref = StreamedReference(DescriptorStream(st, desc, chunk_rows=250))
    crit = NoveltyCriterion(n_calibration=120, index_mb=0)
    one = crit.fit(ref).score(env)
    monkeypatch.setattr(_reference, "QUERY_VALUES", 7 * desc.n_features)  # 7 rows per task
    many = NoveltyCriterion(n_calibration=120, index_mb=0).fit(ref).score(env)
    assert many["atom_distances"].tolist() == one["atom_distances"].tolist()


def test_id_keys_are_the_digests_and_sort_as_the_ids():
    from pesdata._ids import id_keys

    rng = np.random.default_rng(0)
    ids = [rng.bytes(16).hex() for _ in range(500)] + ["00" * 16, "ff" * 16, "0" * 31 + "1"]
    keys = id_keys(pa.array(ids))
    assert keys.dtype == np.dtype("S16")
    assert [k.ljust(16, b"\0") for k in keys.tolist()] == [bytes.fromhex(i) for i in ids]
    assert list(np.argsort(keys, kind="stable")) == sorted(range(len(ids)), key=ids.__getitem__)
    # anything else (upper case, short, non-hex) gets its own key, never a pesdata id's
    odd = ["AB" * 16, "abc", "zz" * 16, "ab" * 16]
    k = id_keys(pa.array(odd))
    assert len(set(k.tolist())) == 4 and k[3] == bytes.fromhex("ab" * 16)
    assert np.array_equal(k[:3], id_keys(pa.array(odd[:3])))  # fixed width or not: one key
    wide = id_keys(pa.array(["ab" * 16, "ab" * 20]))  # a wider id in the batch changes nothing
    assert wide[0] == k[3] and wide[1] != k[3]


def test_index_arrays_equal_the_parquet_files(tio2):
    from pesdata.descriptors._cache import _group_dir
    from pesdata.descriptors._index import index_files, iter_index

    st, desc, _ = tio2
    root = _group_dir(st, desc)
    files = sorted((root / "index").glob("*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files])
    listed, total = index_files(root)
    segments: dict[str, int] = {}
    batches = list(iter_index(listed, segments))
    keys, codes, first, n_atoms = (np.concatenate([b[i] for b in batches]) for i in range(4))
    names = np.array(list(segments), dtype=object)
    assert [k.ljust(16, b"\0").hex() for k in keys.tolist()] == table["id"].to_pylist()
    assert list(names[codes]) == table["segment"].to_pylist()
    assert first.tolist() == table["first_row"].to_pylist()
    assert n_atoms.tolist() == table["n_atoms"].to_pylist()
    assert total == len(table)
    assert len(files) > 5 and all(b[1] is None for b in iter_index(listed))


def test_index_without_a_column_is_corruption(tio2, tmp_path):
    from pesdata.descriptors._cache import _group_dir

    st, desc, _ = tio2
    copy = tmp_path / "s"
    shutil.copytree(st.root, copy)
    st2 = pesdata.open_store(copy)
    index = sorted((_group_dir(st2, desc) / "index").glob("*.parquet"))[1]
    pq.write_table(pq.read_table(index).drop_columns(["first_row"]), index)
    with pytest.raises(StoreCorruptError, match=f"{index.name}: unreadable .* first_row"):
        DescriptorStream(st2, desc)


def test_streamed_ivf_recalls_the_exact_search(tio2, monkeypatch):
    """Above exact_max rows a streamed element is searched through IVF cells shared by the
    chunks: each distance is the float64 distance to a real row, so never below float64 brute
    force, and equal to it for nearly every query; with every cell probed it is exact,
    leave-one-out included."""
    from pesdata.select import _nn

    st, desc, cands = tio2
    env = _env(desc, cands)
    whole = load_descriptors(st, desc)
    ref = StreamedReference(DescriptorStream(st, desc, chunk_rows=1500))
    built = []
    real = _nn.ivf_from_centroids
    monkeypatch.setattr(_nn, "ivf_from_centroids",
                        lambda cells, x: built.append(len(x)) or real(cells, x))
    exact = NoveltyCriterion(n_calibration=None, seed=4, index_mb=0).fit(ref)
    assert not built
    ivf = NoveltyCriterion(n_calibration=None, seed=4, index_mb=0, exact_max=200).fit(ref)
    assert built  # chunks were searched through the cells
    assert ivf.thresholds_["search"] == {"O": "streamed IVF", "Ti": "streamed IVF"}
    assert exact.thresholds_["search"] == {"O": "streamed", "Ti": "streamed"}
    assert {s: len(c) for s, c in ivf.quantisers_.items()} == {
        s: max(1, min(int(4 * np.sqrt(max(c.get(z, 0) for c in ref._counts))),
                      ivf.thresholds_["n_reference"][s] // 39))
        for s, z in (("O", 8), ("Ti", 22))}
    for sym in ("O", "Ti"):  # leave-one-out calibration: the same quantiles, near enough
        np.testing.assert_allclose(ivf.thresholds_["per_element"][sym],
                                   exact.thresholds_["per_element"][sym], rtol=0.05)

    def brute(nprobe):
        monkeypatch.setattr(_nn, "IVF_NPROBE", nprobe)
        recalled = []
        for z, sym in ((8, "O"), (22, "Ti")):
            mu, scale, cells = ivf.centre_[sym], ivf.scale_[sym], ivf.quantisers_[sym]
            xs = (whole["features"][whole["numbers"] == z] - mu) / scale
            q = (env.features[env.numbers == z] - mu) / scale
            d, pos = ref.nearest({z: (mu, scale, q, None, cells)})[z]
            truth = cdist(q, xs).min(axis=1)
            assert np.all(d >= truth * (1 - 1e-12))
            np.testing.assert_allclose(np.linalg.norm(xs[pos] - q, axis=1), d, rtol=1e-12)
            recalled.append(np.isclose(d, truth, rtol=1e-9, atol=1e-12))
            own = np.arange(0, len(xs), 5)
            d_loo, pos_loo = ref.nearest({z: (mu, scale, xs[own], own, cells)})[z]
            full = cdist(xs[own], xs)
            full[np.arange(len(own)), own] = np.inf
            assert np.all(d_loo >= full.min(axis=1) * (1 - 1e-12)) and not np.any(pos_loo == own)
            if nprobe >= len(cells):  # every cell probed: exact
                np.testing.assert_allclose(d_loo, full.min(axis=1), rtol=1e-9, atol=1e-12)
        return np.mean(np.concatenate(recalled))

    assert brute(_nn.IVF_NPROBE) >= 0.95
    assert brute(1000) == 1.0
    assert 0.5 < brute(1) < 1  # one cell of 24-47 probed: some queries miss, never low
    rough = NoveltyCriterion(n_calibration=None, seed=4, index_mb=0, exact_max=200).fit(ref)
    for sym in ("O", "Ti"):  # a miss only raises a threshold
        assert rough.thresholds_["per_element"][sym] >= exact.thresholds_["per_element"][sym]
