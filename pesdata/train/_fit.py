"""Training a model on a store version (or a split's train part) and evaluating it."""

from __future__ import annotations

import os
from pathlib import Path

import ase
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import PesdataError
from .checkpoint import load_model, save_model
from .linear import LinearPotential
from .metrics import error_metrics

__all__ = ["evaluate", "predict_metrics", "train"]

MODELS = ("linear",)


def _labelled(images: list[ase.Atoms]) -> list[ase.Atoms]:
    return [a for a in images if a.calc is not None and "energy" in a.calc.results]


def predict_metrics(model: LinearPotential, images: list[ase.Atoms]) -> tuple[dict, dict]:
    """Metrics of ``model`` on labelled ``images`` and the raw predictions."""
    images = _labelled(images)
    if not images:
        raise PesdataError("no labelled structures to evaluate on")
    with_f = [("forces" in a.calc.results) for a in images]
    energies, forces = model.predict(images, forces=True)
    ref_e = [a.calc.results["energy"] for a in images]
    fp = [f for f, ok in zip(forces, with_f, strict=True) if ok]
    fr = [a.calc.results["forces"] for a, ok in zip(images, with_f, strict=True) if ok]
    metrics = error_metrics(
        energies, ref_e, [len(a) for a in images],
        np.concatenate(fp) if fp else None, np.concatenate(fr) if fr else None,
    )
    return metrics, {"images": images, "energy": energies, "forces": forces, "ref_e": ref_e}


def train(
    store,
    out: str | os.PathLike,
    *,
    model: str = "linear",
    descriptor=None,
    version: int | str | None = None,
    split: str | None = None,
    fold: int = 0,
    alpha: float = 1e-8,
    force_weight: float = 0.0,
    r_cut: float = 5.0,
) -> dict:
    """Fit a model on a version (or fold ``fold`` of split ``split``) and save it to ``out``.

    Without a split the model trains on every labelled structure of the version and the card
    reports training-set metrics; with one, metrics are measured on the fold's test part.
    ``descriptor`` is a Descriptor, a config dict or a JSON path; by default ACSF with its
    documented default grid and ``r_cut`` for the version's elements. Returns the model card.
    """
    from ..descriptors import ACSF, from_config
    from ..split import load_split

    if model not in MODELS:
        raise PesdataError(f"unknown model {model!r}; available: {', '.join(MODELS)}")
    test_ids: list[str] = []
    if split is not None:
        manifest = load_split(store, split, version, allow_other_version=False)
        version = manifest["version"]
        if not 0 <= fold < len(manifest["folds"]):
            raise PesdataError(f"split {split!r} has {len(manifest['folds'])} fold(s), not {fold}")
        train_ids, test_ids = manifest["folds"][fold]["train"], manifest["folds"][fold]["test"]
    snap = store.read(version)
    position = {i: k for k, i in enumerate(snap.ids)}
    train_rows = [position[i] for i in (train_ids if split else snap.ids)]
    train_images = _labelled(snap.take(train_rows))
    if not train_images:
        raise PesdataError(f"version {snap.version} has no labelled structures to train on")
    if descriptor is None:
        elements = sorted({int(z) for a in train_images for z in a.numbers})
        descriptor = ACSF(elements, r_cut)
    elif not hasattr(descriptor, "forward"):
        descriptor = from_config(descriptor)
    fitted = LinearPotential(descriptor, alpha=alpha, force_weight=force_weight).fit(train_images)
    eval_images = snap.take([position[i] for i in test_ids]) if test_ids else train_images
    metrics, _ = predict_metrics(fitted, eval_images)
    card = {
        "version": snap.version,
        "split": split,
        "fold": fold if split else None,
        "n_train": len(train_images),
        "metrics_on": "test" if test_ids else "train",
        "metrics": metrics,
    }
    return save_model(fitted, out, **card)


def _target_images(target: str) -> tuple[list[ase.Atoms], str]:
    """Structures of ``STORE``, ``STORE@VERSION`` or any structure file curate reads."""
    from .. import open_store
    from ..frames import frames_to_table, table_to_atoms
    from ..io import read_frames

    path, _, version = target.partition("@")
    if (Path(path) / "_pesdata" / "store.json").is_file():
        snap = open_store(path).read(version or None)
        return snap.to_atoms(), f"{path}@{snap.version}"
    frames = list(read_frames(target))
    return table_to_atoms(frames_to_table(frames)), target


def evaluate(model_dir: str | os.PathLike, target: str, parity: str | None = None) -> dict:
    """Energy MAE/RMSE (meV/atom) and force MAE/RMSE (eV/Å) of a saved model on ``target``.

    ``parity`` writes a Parquet file with one row per structure: n_atoms, reference and
    predicted energy, and reference and predicted forces (per atom) for parity plots.
    """
    model, _card = load_model(model_dir)
    images, name = _target_images(str(target))
    metrics, pred = predict_metrics(model, images)
    if parity:
        ims = pred["images"]
        ref_f = [a.calc.results.get("forces") for a in ims]
        table = pa.table({
            "n_atoms": [len(a) for a in ims],
            "energy_ref": pred["ref_e"],
            "energy_pred": pred["energy"],
            "forces_ref": [None if f is None else np.asarray(f).tolist() for f in ref_f],
            "forces_pred": [np.asarray(f).tolist() for f in pred["forces"]],
        })
        pq.write_table(table, parity)
    return {"target": name, **metrics}
