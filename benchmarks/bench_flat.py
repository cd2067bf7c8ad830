"""Flat memory beyond the 10⁶ of ``bench_scale``: the per-structure parts of curate, describe and
select, alone, at sizes up to 10⁷ — cheap to make, unlike a 10⁷-frame store.

``bench_scale`` measures whole steps at 10⁴–10⁶ structures, where Lance's and the writer's
bounded buffers are still filling; this measures the three joins that used to keep an array per
structure in the driver, on synthetic data of the same shape (random 128-bit ids):

* **locate** — describe's and select's join of a version's rows (a Lance table of ``id`` and
  ``n_atoms``) with the descriptor cache index (Parquet files of 2,000 entries; the cache holds
  every id), :func:`pesdata.descriptors._locate.locate`;
* **resolve** — curate's in-run deduplication over the log of spooled rows (10 % of them a
  second copy of an earlier id, same labels), :func:`pesdata.curate.dedup.resolve`, and the
  count of rows kept (the dropped copies sorted window by window);
* **outliers** — the energy and force outlier validators over the run's statistics (one
  population per 1 % of the rows, one population holding a third of them),
  :func:`pesdata.curate._population.flag_outliers`.

Each case runs in a fresh process; the data is written first (outside the measurement), then
the driver's RSS is sampled every 5 ms around the call; the figure is peak − RSS before the
call. Usage: ``python benchmarks/bench_flat.py [--sizes 100000 1000000 10000000]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _hex(rng, n: int) -> np.ndarray:
    raw = np.frombuffer(rng.bytes(16 * n), np.uint8).reshape(n, 16)
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    out = np.empty((n, 32), np.uint8)
    out[:, 0::2], out[:, 1::2] = digits[raw >> 4], digits[raw & 15]
    return out.view("S32").reshape(n)


def make(case: str, n: int, work: Path) -> None:
    """Write the case's input under ``work`` (not measured)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(n)
    step = 1 << 18
    if case == "locate":
        import lance

        (work / "index").mkdir(parents=True)
        seg = 0

        def batches():
            nonlocal seg
            for lo in range(0, n, step):
                ids = _hex(rng, min(step, n - lo))
                for k in range(0, len(ids), 2000):
                    part = ids[k:k + 2000]
                    pq.write_table(pa.table({
                        "id": pa.array(part.astype(str)), "segment": [f"seg-{seg:08d}"] * len(part),
                        "first_row": np.arange(len(part), dtype=np.int64) * 20,
                        "n_atoms": np.full(len(part), 20, np.int64)}),
                        work / "index" / f"seg-{seg:08d}.parquet")
                    seg += 1
                yield pa.record_batch({"id": pa.array(rng.permutation(ids).astype(str)),
                                       "n_atoms": np.full(len(ids), 20, np.int64)})

        schema = pa.schema([("id", pa.string()), ("n_atoms", pa.int64())])
        lance.write_dataset(pa.RecordBatchReader.from_batches(schema, batches()),
                            str(work / "table.lance"), max_rows_per_file=1 << 20)
        return
    from pesdata.curate._stats import STAT_REC
    from pesdata.curate.dedup import RUN_REC

    with open(work / "log.bin", "wb") as fh:  # the run's log, as curate writes it
        for lo in range(0, n, step):
            m = min(step, n - lo)
            k = np.arange(lo, lo + m)
            pos = (k // 512) << 32 | k % 512
            if case == "resolve":
                rec = np.zeros(m, RUN_REC)
                keys = np.frombuffer(rng.bytes(16 * m), "S16").copy()
                again = np.flatnonzero(rng.random(m) < 0.1)
                keys[again] = keys[rng.integers(0, m, len(again))]  # second copies
                rec["key"], rec["pos"], rec["seq"], rec["labels"], rec["flags"] = \
                    keys, pos, k, 7, 1
            else:
                rec = np.zeros(m, STAT_REC)
                rec["pos"] = (k // 512) << 34 | (k % 512) << 2  # see curate._stats._pack
                rec["group"] = np.where(k % 3 == 0, 0, rng.integers(1, max(2, n // 100), m))
                rec["fmax"], rec["energy_per_atom"] = rng.gamma(2.0, size=m), \
                    rng.normal(-3.7, 0.1, m)
            fh.write(rec.tobytes())
    (work / "n").write_text(str(n))


def run(case: str, work: Path) -> dict:
    """Measure the case in this process (the child)."""
    import psutil

    proc = psutil.Process()
    if case == "locate":
        import lance

        from pesdata.descriptors._locate import locate
        from pesdata.store._snapshot import SCAN_OPTIONS

        ds = lance.dataset(str(work / "table.lance"))

        class Snap:  # what locate reads of a snapshot
            def __len__(self):
                return ds.count_rows()

            def batches(self, columns, size):  # as Snapshot.batches scans
                yield from ds.to_batches(columns=list(columns), batch_size=size, **SCAN_OPTIONS)

        call = lambda: locate(Snap(), work)  # noqa: E731
    elif case == "resolve":
        from pesdata.curate import _spool, dedup

        ids = dedup.RunIds(work / "log.bin")
        ids._log._n_file = int((work / "n").read_text())  # the log written by make()
        spool = _spool.Spool(work / "spool")
        spool.n_files = len(ids) // 512 + 1  # the spool files the log's positions name
        report = type("R", (), {"added": 0, "duplicates": 0, "relabelled": 0})()
        call = lambda: (dedup.resolve(ids, spool, report, work / "parts"),  # noqa: E731
                        spool.n_kept)
    else:
        from pesdata.curate._population import flag_outliers
        from pesdata.curate._stats import RunStats
        from pesdata.curate._validators import EnergyOutlierValidator, ForceOutlierValidator

        stats = RunStats(work / "log.bin")
        stats._log._n_file = n = int((work / "n").read_text())  # the log written by make()
        stats.keys = [f"g{g}" for g in range(max(2, n // 100))]
        stats.populations = {k: {"group": k} for k in stats.keys}
        checks = [ForceOutlierValidator(), EnergyOutlierValidator()]
        call = lambda: flag_outliers(stats, checks, work / "population")  # noqa: E731
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    t = threading.Thread(target=sample)
    t.start()
    t0 = time.perf_counter()
    call()
    wall = time.perf_counter() - t0
    done.set()
    t.join()
    return {"case": case, "wall_s": round(wall, 2), "base_mb": round(base / 1e6),
            "peak_delta_mb": round((peak[0] - base) / 1e6, 1)}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        print(json.dumps(run(sys.argv[2], Path(sys.argv[3]))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    ap.add_argument("--cases", nargs="+", default=["locate", "resolve", "outliers"])
    ap.add_argument("--out", default="bench-out")
    args = ap.parse_args()
    rows = []
    print("| case | structures | wall s | peak − before, MB |\n|---|---|---|---|")
    for case in args.cases:
        for n in args.sizes:
            work = Path(tempfile.mkdtemp(prefix=f"bench-flat-{case}-"))
            try:
                make(case, n, work)
                out = subprocess.run([sys.executable, __file__, "_child", case, str(work)],
                                     check=True, capture_output=True, text=True)
                row = {**json.loads(out.stdout.strip().splitlines()[-1]), "n": n}
            finally:
                shutil.rmtree(work, ignore_errors=True)
            rows.append(row)
            print(f"| {case} | {n:,} | {row['wall_s']} | {row['peak_delta_mb']} |", flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench_flat.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
