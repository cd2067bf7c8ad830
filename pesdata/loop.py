"""The active-learning loop: explore → select → label → commit → retrain, from one YAML config.

``pesdata loop CONFIG.yaml`` (or :func:`run_loop`) runs the iterations a config asks for. Each
iteration ``i`` works in ``<workdir>/iter-<i>/`` and goes through steps that each leave a
finished output behind, so a killed run started again continues from the first step whose
output is missing and never redoes finished work:

1. **train** — a committee (``model``) on the store's latest version → ``model/``; its test
   errors on ``test`` (if given) → ``metrics.json``;
2. **explore** — the explorer (``explore``, MD by default) driven by the committee's ASE
   calculator from seed structures (the store's, or files) → ``candidates.extxyz``. ``kind:
   md`` runs Langevin MD at a temperature ladder (:class:`~pesdata.explore.md.MDExplorer`);
   ``kind: ssw`` runs one stochastic surface walk per seed
   (:class:`~pesdata.explore.ssw_explorer.SSWExplorer`: ``params`` takes ``steps``,
   ``max_evaluations`` per walk, ``record_climb``, ``record_quench`` and any
   :class:`~pesdata.explore.ssw.SSW` keyword — ``kind``, ``temperature``, ``height``,
   ``width``, ``n_gaussians``, ``cell``, ...), its climbing frames and new minima (config
   types ``ssw-climb``/``ssw-quench``/``ssw-minimum``, group ``ssw-<seed>``) being the
   candidates — the SSW-NN self-learning cycle. A periodic seed walks its cell by default;
   the committee calculator gives the stress for that;
3. **select** — ``pesdata select`` of the candidates against the latest version with the
   committee (disagreement) and novelty → ledger ``<name>-iter-<i>`` and ``queue/``;
4. **label** — the queue labelled in-process by ``label.calculator`` (resumable), or, with
   ``calculator: queue``, exported to ``export/`` for an external code: the loop stops with a
   message saying what to run, and continues after ``pesdata label import`` + the same command;
5. **commit** — the labels imported as one new version, tagged ``iter-<i>``; the iteration's
   record (version, structures, explored, accurate/candidate/failed shares, selected, test
   RMSE) is added to the loop record, artefact ``loop/<name>`` (``schemas/loop.json``).

The loop stops after ``iterations``, or when the share of ``accurate`` frames in an
exploration reaches ``stop.accurate_share`` (nothing left to learn there, as in DP-GEN), or
when the test force RMSE has not improved for ``stop.patience`` iterations.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ._names import check_name
from .errors import ArtefactError, ArtefactNotFound, InputError, ParameterError

__all__ = ["LoopStopped", "history", "load_config", "run_loop"]

KIND = "loop"
DEFAULTS = {
    "seed": 0, "iterations": 3, "test": None,
    "model": {"kind": "committee", "n_members": 3, "epochs": 100, "descriptor": None,
              "r_cut": 5.0, "params": {}},
    "explore": {"kind": "md", "seeds": "store", "n_seeds": 2, "params": {}},
    "select": {"budget": 8, "diversity": "fps", "novelty": True},
    "label": {"calculator": "emt", "workers": 1, "method": None, "format": "extxyz"},
    "stop": {"accurate_share": None, "patience": None},
}


class LoopStopped(Exception):  # noqa: N818 - a state, not an error: the loop waits for labels
    """The loop stopped to wait for labels from outside (queue mode); ``message`` says what to
    run before starting it again."""


def load_config(path: str | os.PathLike) -> dict:
    """Read and validate a loop config (YAML or JSON); fill defaults; resolve paths.

    Raises
    ------
    InputError
        The file is missing or not YAML/JSON, or a key or value is not allowed (the message
        names the file and the key).
    """
    import yaml

    from .store import validate_artefact

    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise InputError(f"cannot read the loop config ({reason})", path=str(p)) from exc
    if not isinstance(doc, dict):
        raise InputError("a loop config is a mapping of keys (name, store, ...)", path=str(p))
    try:
        validate_artefact("loop_config", doc)
    except ArtefactError as exc:
        text = str(exc).split(" invalid at ", 1)[-1]
        field, _, message = text.partition(": ")
        raise InputError(f"invalid config: {message}", path=str(p), field=field) from exc
    try:
        check_name(doc.get("name"), "loop name")
        # its ledgers are named NAME-iter-N: that name must fit too
        check_name(f"{doc['name']}-iter-{10**5}", "loop name + '-iter-N' (a ledger's name)")
    except ParameterError as exc:
        raise InputError(str(exc), path=str(p), field="name") from exc
    base = p.resolve().parent
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULTS.items()}
    for key, value in doc.items():
        cfg[key] = {**cfg[key], **value} if isinstance(cfg.get(key), dict) else value

    def where(x: str) -> str:
        return str(x) if "://" in str(x) else str((base / x).resolve())

    cfg["store"] = where(cfg["store"])
    cfg["workdir"] = where(cfg.get("workdir") or f"{cfg['name']}-work")
    if cfg["test"]:
        cfg["test"] = where(cfg["test"])
    if "initial" in cfg:
        cfg["initial"] = {**cfg["initial"],
                          "files": [where(f) for f in cfg["initial"].get("files", [])]}
    if isinstance(cfg["explore"]["seeds"], list):
        cfg["explore"]["seeds"] = [where(f) for f in cfg["explore"]["seeds"]]
    for section in ("model",):
        d = cfg[section].get("descriptor")
        if isinstance(d, str):
            cfg[section]["descriptor"] = where(d)
    trust = cfg["select"].get("trust")
    if isinstance(trust, str):
        cfg["select"]["trust"] = where(trust)
    return cfg


def history(store, name: str | None = None) -> pd.DataFrame:
    """The loop's per-iteration table: one row per finished iteration (``schemas/loop.json``).

    Parameters
    ----------
    store : pesdata.Store
    name : str, optional
        Loop name (default: the only loop of the store).
    """
    names = store.artefacts.list(KIND)
    if name is None:
        if len(names) != 1:
            raise ParameterError(f"the store has {len(names)} loops ({names}); name one")
        name = names[0]
    doc = store.artefacts.load(KIND, name)
    return pd.DataFrame(doc["iterations"])


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class _Loop:
    """One run of a loop config (the steps above); state lives in files and the store."""

    def __init__(self, cfg: dict, echo: Callable[[str], None], progress=None) -> None:
        from .store import open_store

        self.cfg, self.echo, self.progress = cfg, echo, progress
        self.name = cfg["name"]
        self.store = open_store(cfg["store"], create=True)
        self.work = Path(cfg["workdir"])
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            self.record = self.store.artefacts.load(KIND, self.name)
        except ArtefactNotFound:
            self.record = {"name": self.name, "version": self.store.version, "created": _now(),
                           "config": json.loads(json.dumps(cfg)), "status": "running",
                           "stop_reason": None, "iterations": []}

    # -- record -------------------------------------------------------------------------------
    def save(self, **changes) -> None:
        self.record.update(changes, version=int(self.store.version), updated=_now())
        self.store.artefacts.save(KIND, self.name, self.record, overwrite=True)

    def done(self) -> set[int]:
        return {int(r["iteration"]) for r in self.record["iterations"]}

    # -- steps ------------------------------------------------------------------------------
    def initial(self) -> None:
        if 0 in self.done():
            return
        init = self.cfg.get("initial") or {}
        if len(self.store.read()) == 0:
            if not init.get("files"):
                raise ParameterError("the store is empty and the config names no initial "
                                     "files: give initial: {files: [...]}")
            report = self.store.curate(init["files"], method=init.get("method"),
                                       message=f"loop {self.name}: initial data")
            self.echo(f"initial data: {report.added} structures → version {report.version}")
        self.tag("iter-0")
        self.record["iterations"].append({"iteration": 0, "version": int(self.store.version),
                                          "tag": "iter-0", "n_structures":
                                          len(self.store.read()), "selected": 0})
        self.save()

    def tag(self, tag: str) -> None:
        if tag not in self.store.tags():
            self.store.tag(tag)

    def train(self, d: Path) -> Path:
        from .train import train

        model = d / "model"
        if not (model / "model_card.json").is_file():
            m = self.cfg["model"]
            params = {"n_members": m["n_members"], "epochs": m["epochs"],
                      "seed": int(self.cfg["seed"]), **(m.get("params") or {})}
            t0 = time.perf_counter()
            train(self.store, model, model="committee", descriptor=m.get("descriptor"),
                  r_cut=float(m.get("r_cut", 5.0)), params=params)
            self.echo(f"  trained a committee of {m['n_members']} on version "
                      f"{self.store.version} ({time.perf_counter() - t0:.0f} s)")
        return model

    def metrics(self, d: Path, model: Path) -> dict:
        from .atomic import atomic_write
        from .train import evaluate

        path = d / "metrics.json"
        if path.is_file():
            return json.loads(path.read_text())
        out = {"energy_rmse": None, "force_rmse": None}
        if self.cfg.get("test"):
            m = evaluate(model, self.cfg["test"])
            out = {"energy_rmse": m["energy_rmse"], "force_rmse": m["force_rmse"]}
        with atomic_write(path, "w") as fh:
            fh.write(json.dumps(out))
        return out

    def seeds(self, i: int) -> list:
        import ase.io

        ex = self.cfg["explore"]
        if isinstance(ex["seeds"], list):
            return [a for f in ex["seeds"] for a in ase.io.read(f, ":")]
        snap = self.store.read()
        rng = np.random.default_rng([int(self.cfg["seed"]), i])
        rows = rng.choice(len(snap), size=min(int(ex["n_seeds"]), len(snap)), replace=False)
        return snap.take(sorted(rows.tolist()))

    def explore(self, d: Path, i: int, model: Path) -> Path:
        from .atomic import atomic_path
        from .explore import get_explorer
        from .io import write_atoms
        from .train.calculator import PesdataCalculator

        path = d / "candidates.extxyz"
        if path.is_file():
            return path
        ex = self.cfg["explore"]
        explorer = get_explorer(ex["kind"])(**(ex.get("params") or {}))
        t0 = time.perf_counter()
        frames = list(explorer.explore(PesdataCalculator(str(model)), self.seeds(i),
                                       seed=int(self.cfg["seed"]) * 1000 + i))
        if not frames:
            raise ParameterError(f"iteration {i}: the explorer produced no candidate frames")
        with atomic_path(path) as tmp:
            write_atoms(tmp, frames, format="extxyz")
        stopped = len(getattr(explorer, "stopped_", []))
        self.echo(f"  explored {len(frames)} candidate frames ({ex['kind']}, "
                  f"{getattr(explorer, 'n_calls_', 0)} evaluations"
                  + (f", {stopped} trajectories stopped early" if stopped else "")
                  + f", {time.perf_counter() - t0:.0f} s)")
        return path

    def select(self, d: Path, i: int, model: Path, candidates: Path):
        from .select import load_ledger, select
        from .select._rescore import rescore

        name, queue = f"{self.name}-iter-{i}", d / "queue"
        s = self.cfg["select"]
        if name not in self.store.artefacts.list("selection") and queue.exists():
            # select writes the queue, then the ledger: a queue without its ledger is what a
            # kill in between left; it is ours (the iteration's work directory), select again
            import shutil

            shutil.rmtree(queue)
        if name in self.store.artefacts.list("selection"):
            ledger, summary = load_ledger(self.store, name)
            if not (queue / "manifest.json").is_file():  # killed between ledger and queue
                if queue.exists():
                    import shutil

                    shutil.rmtree(queue)
                again = rescore(self.store, name, name=f"{name}-queue", out=queue)
                return again.ledger, queue
            return ledger, queue
        options = {k: s[k] for k in ("budget", "diversity", "novelty", "novelty_quantile",
                                     "novelty_threshold", "group_cap", "near_duplicate",
                                     "trust") if s.get(k) is not None}
        sel = select(self.store, [candidates], committee=model, name=name, out=queue,
                     seed=int(self.cfg["seed"]), method=self.method(), **options)
        return sel.ledger, queue

    def method(self) -> str:
        lab = self.cfg["label"]
        return lab.get("method") or (lab["calculator"].upper() if lab["calculator"] in
                                     ("emt", "lj") else lab["calculator"])

    def label(self, d: Path, i: int, queue: Path) -> None:
        from .label import export_queue, label_queue, read_queue

        q = read_queue(queue)
        lab = self.cfg["label"]
        if lab["calculator"] == "queue":
            export = d / "export"
            if not export.exists():
                export_queue(queue, export if lab.get("format") == "vasp"
                             else export.with_suffix(".extxyz"), format=lab.get("format",
                                                                               "extxyz"))
            return
        if q.ids and set(q.labelled_ids()) != set(q.ids):
            report = label_queue(queue, lab["calculator"], workers=int(lab["workers"]))
            self.echo(f"  labelled {report.labelled} structures with {lab['calculator']}"
                      + (f" ({len(report.failed)} failed)" if report.failed else ""))

    def commit(self, d: Path, i: int, queue: Path, n_train: int) -> dict:
        """Import the labels (once); ``added`` counts the rows the iteration added to the store
        (its size now minus ``n_train``, its size when the iteration started), so a kill after
        the import's commit but before the queue recorded it does not lose the count."""
        from .label import import_results, read_queue

        q = read_queue(queue)
        if not q.ids:
            return {"added": 0, "labelled": 0}
        if self.cfg["label"]["calculator"] == "queue":
            if q.status != "imported":
                export = d / ("export" if self.cfg["label"].get("format") == "vasp"
                              else "export.extxyz")
                self.save(status="waiting_for_labels")
                raise LoopStopped(
                    f"iteration {i}: {len(q.ids)} structures wait for labels in {export}; "
                    f"label them, run `pesdata label import {self.cfg['store']} --queue {queue} "
                    f"RESULTS...`, then run the loop again")
            return {"added": 0, "labelled": len(q.ids)}
        if not q.labelled_ids():
            return {"added": 0, "labelled": 0}
        if q.status != "imported":
            import_results(self.store, queue, method=self.method())
        return {"added": max(len(self.store.read()) - n_train, 0),
                "labelled": len(q.labelled_ids())}

    # -- one iteration --------------------------------------------------------------------------
    def iteration(self, i: int) -> dict:
        t0 = time.perf_counter()
        d = self.work / f"iter-{i}"
        d.mkdir(exist_ok=True)
        self.echo(f"iteration {i}")
        marker = d / "n_train.json"  # the training set size, fixed when the iteration starts
        if marker.is_file():
            n_train = int(json.loads(marker.read_text()))
        else:
            from .atomic import atomic_write

            n_train = len(self.store.read())
            with atomic_write(marker, "w") as fh:
                fh.write(str(n_train))
        model = self.train(d)
        metrics = self.metrics(d, model)
        candidates = self.explore(d, i, model)
        ledger, queue = self.select(d, i, model, candidates)
        self.label(d, i, queue)
        added = self.commit(d, i, queue, n_train)
        self.tag(f"iter-{i}")
        decisions = ledger["decision"].value_counts()
        verdicts = ledger["error_verdict"].value_counts() if "error_verdict" in ledger else {}
        n = max(len(ledger), 1)
        row = {
            "iteration": i, "version": int(self.store.version), "tag": f"iter-{i}",
            "n_structures": len(self.store.read()), "n_train": n_train,
            "explored": len(ledger),
            "accurate": float(verdicts.get("accurate", 0) / n),
            "candidate": float(verdicts.get("candidate", 0) / n),
            "failed": float(decisions.get("failed", 0) / n),
            "novel": float((ledger.get("novelty_verdict") == "novel").sum() / n),
            "selected": int(decisions.get("selected", 0)), **added,
            "energy_rmse": metrics["energy_rmse"], "force_rmse": metrics["force_rmse"],
            "model": str(model), "ledger": f"{self.name}-iter-{i}",
            "seconds": round(time.perf_counter() - t0, 1),
        }
        self.record["iterations"].append(row)
        self.save(status="running")
        return row

    def stop_reason(self) -> str | None:
        stop, rows = self.cfg["stop"], [r for r in self.record["iterations"] if r["iteration"]]
        if not rows:
            return None
        share = stop.get("accurate_share")
        if share is not None and rows[-1].get("accurate", 0) >= share:
            return (f"{rows[-1]['accurate']:.0%} of the explored frames were accurate "
                    f"(≥ {share:.0%})")
        patience = stop.get("patience")
        errors = [r.get("force_rmse") for r in rows]
        if patience and len(errors) > patience and all(e is not None for e in errors):
            best_before = min(errors[:-patience])
            if min(errors[-patience:]) >= best_before:
                return (f"the test force RMSE has not improved for {patience} iterations "
                        f"(best {best_before:.4f} eV/Å)")
        return None


def run_loop(config: str | os.PathLike | dict, echo: Callable[[str], None] = print,
             on_iteration: Callable[[dict], None] | None = None) -> pd.DataFrame:
    """Run (or resume) the loop a config describes; return its per-iteration table.

    Parameters
    ----------
    config : path or dict
        The YAML/JSON config file (or a dict as :func:`load_config` returns).
    echo : callable
        Where progress lines go.
    on_iteration : callable, optional
        Called with each finished iteration's record (the CLI prints the table row).

    Raises
    ------
    LoopStopped
        ``label.calculator: queue`` and labels are awaited (the message says what to run).
    """
    cfg = load_config(config) if not isinstance(config, dict) else config
    loop = _Loop(cfg, echo)
    loop.initial()
    done = loop.done()
    reason = loop.stop_reason()
    i = 1
    while reason is None and i <= int(cfg["iterations"]):
        if i not in done:
            row = loop.iteration(i)
            if on_iteration is not None:
                on_iteration(row)
            reason = loop.stop_reason()
        i += 1
    final = "finished" if reason is None else "stopped"
    loop.save(status=final, stop_reason=reason or f"{cfg['iterations']} iterations done")
    if reason:
        echo(f"stopped: {reason}")
    return history(loop.store, loop.name)
