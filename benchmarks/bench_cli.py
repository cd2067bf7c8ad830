"""Benchmark what a user types: command start-up and ``pesdata curate`` as a command.

1. Start-up: wall time of ``pesdata --help``, ``pesdata info STORE`` and ``pesdata log STORE``
   (each a fresh interpreter, the installed console script) against
   ``python -c "import ase.io"``, median of ``--repeats`` runs after one warm-up. Bar (DESIGN §8):
   ≤ 2× the ``import ase.io`` time.
2. Ingest as a command: ``pesdata curate NEW_STORE FILE --method PBE`` (a fresh process, start-up
   included) against ``python -c "import ase.io; ase.io.read(FILE, ':')"`` (also a fresh process)
   on the replicated mlearn Cu file of ``bench_store.py`` (≥ ``--min-atoms`` atoms). Bar: ≤ 1.5×.

Timings never fail the script; the table prints PASS/FAIL per bar and the results go to
``<out>/bench_cli.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_store import build_fixtures, machine_info  # noqa: E402

BIN = Path(sys.executable).parent


def wall(cmd: list[str], repeats: int, before=None) -> list[float]:
    """Wall times of ``cmd`` (after one untimed warm-up); ``before()`` runs untimed first."""
    times = []
    for i in range(repeats + 1):
        if before is not None:
            before()
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if i:
            times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-atoms", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    pesdata_bin = str(BIN / "pesdata")
    py = sys.executable

    xyz, _db, n_struct, n_atoms = build_fixtures(args.out, args.min_atoms)
    store = args.out / "cli-store"
    shutil.rmtree(store, ignore_errors=True)

    def fresh():
        shutil.rmtree(store, ignore_errors=True)

    res = {
        "machine": machine_info(),
        "import_ase_io_s": wall([py, "-c", "import ase.io"], args.repeats),
        "help_s": wall([pesdata_bin, "--help"], args.repeats),
        "curate_cmd_s": wall([pesdata_bin, "curate", str(store), str(xyz), "--method", "PBE"],
                             max(1, args.repeats // 2), before=fresh),
        "read_cmd_s": wall([py, "-c", f"import ase.io; ase.io.read({str(xyz)!r}, ':')"],
                           max(1, args.repeats // 2)),
        "n_structures": n_struct,
        "n_atoms": n_atoms,
    }
    res["info_s"] = wall([pesdata_bin, "info", str(store)], args.repeats)
    res["log_s"] = wall([pesdata_bin, "log", str(store)], args.repeats)
    (args.out / "bench_cli.json").write_text(json.dumps(res, indent=2))

    med = {k: statistics.median(v) for k, v in res.items() if k.endswith("_s")}
    base = med["import_ase_io_s"]
    print(f"# bench_cli  {res['machine']}")
    print("| what | pesdata | anchor | ratio | bar |")
    print("|---|---|---|---|---|")
    for key, label in (("help_s", "`pesdata --help`"), ("info_s", "`pesdata info`"),
                       ("log_s", "`pesdata log`")):
        r = med[key] / base
        print(f"| {label} | {med[key]:.2f} s | import ase.io {base:.2f} s | {r:.2f}× | "
              f"≤ 2× {'PASS' if r <= 2 else 'FAIL'} |")
    r = med["curate_cmd_s"] / med["read_cmd_s"]
    print(f"| `pesdata curate` {n_atoms} atoms | {med['curate_cmd_s']:.2f} s | "
          f"ase.io.read {med['read_cmd_s']:.2f} s | {r:.2f}× | ≤ 1.5× "
          f"{'PASS' if r <= 1.5 else 'FAIL'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
