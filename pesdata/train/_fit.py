"""Training a model on a store version (or a split's train part) and evaluating it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import ase
import numpy as np
import pandas as pd

from .._names import check_name
from .._where import structure_name
from ..errors import ParameterError, ValidationError
from .checkpoint import check_model_dir, save_model
from .data import take_structures
from .metrics import error_metrics
from .registry import get_model_class

__all__ = ["cross_validate", "cv_summary", "make_model", "predict_metrics", "train"]


def _labelled(images: list[ase.Atoms]) -> list[ase.Atoms]:
    return [a for a in images if a.calc is not None and "energy" in a.calc.results]


def predict_metrics(model, images: list[ase.Atoms]) -> tuple[dict, dict]:
    """Metrics of ``model`` on labelled ``images`` and the raw predictions.

    Raises
    ------
    ValidationError
        A prediction is not finite (NaN or inf); the message names the structure.
    """
    images = _labelled(images)
    if not images:
        raise ParameterError("no labelled structures to evaluate on")
    with_f = [("forces" in a.calc.results) for a in images]
    energies, forces = model.predict(images, forces=True)
    for k, (a, e, f) in enumerate(zip(images, energies, forces, strict=True)):
        if not np.isfinite(e):
            raise ValidationError(f"{structure_name(a, k)}: the model's predicted energy is not "
                                  f"finite ({float(e)!r} eV); no metrics computed")
        f = np.asarray(f)
        if not np.isfinite(f).all():
            atom, comp = np.argwhere(~np.isfinite(f))[0]
            raise ValidationError(
                f"{structure_name(a, k)}: the model's predicted forces are not finite (atom "
                f"{atom}, {'xyz'[comp]}: {float(f[atom, comp])!r} eV/Å); no metrics computed")
    ref_e = [a.calc.results["energy"] for a in images]
    fp = [f for f, ok in zip(forces, with_f, strict=True) if ok]
    fr = [a.calc.results["forces"] for a, ok in zip(images, with_f, strict=True) if ok]
    metrics = error_metrics(
        energies, ref_e, [len(a) for a in images],
        np.concatenate(fp) if fp else None, np.concatenate(fr) if fr else None,
    )
    return metrics, {"images": images, "energy": energies, "forces": forces, "ref_e": ref_e}


def make_model(kind: str, descriptor, **params):
    """A new, unfitted model of ``kind`` (see :func:`~pesdata.train.registry.model_kinds`).

    ``None`` values in ``params`` mean "the default". Unknown kinds, unknown parameters and
    out-of-range or non-finite values are a :class:`~pesdata.errors.ParameterError`.
    """
    cls = get_model_class(kind)
    return cls.from_params(descriptor, **{k: v for k, v in params.items() if v is not None})


def _descriptor(descriptor, images, r_cut: float, device: str):
    """A descriptor object from an object, a config dict / JSON path, or the defaults."""
    from ..descriptors import ACSF, from_config

    if descriptor is None:
        elements = sorted({int(z) for a in images for z in a.numbers})
        return ACSF(elements, r_cut, device=device)
    if hasattr(descriptor, "forward"):
        return descriptor
    return from_config(descriptor, device=device)


def train(
    store,
    out: str | os.PathLike,
    *,
    model: str = "hdnn",
    descriptor=None,
    version: int | str | None = None,
    split: str | None = None,
    fold: int = 0,
    r_cut: float = 5.0,
    device: str = "cpu",
    params: dict | None = None,
    log: Callable[[dict], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Fit a model on a version (or fold ``fold`` of split ``split``) and save it to ``out``.

    Without a split the model trains on every labelled structure of the version (an HDNN
    holds ``valid_fraction`` out for early stopping) and the card reports training-set
    metrics; with one, metrics are measured on the fold's test part. ``descriptor`` is a
    Descriptor, a config dict or a JSON path; by default ACSF with its documented default
    grid and ``r_cut`` for the version's elements. ``params`` go to the model (see
    :class:`HDNNPotential`, :class:`LinearPotential`, :class:`Committee`); ``log`` gets each
    epoch's record and ``progress`` the number of structures described so far. A copy of the
    card (with the model's ``path``) is kept in the store as artefact
    ``model_card/<out name>-v<version>-<time>``.

    Parameters
    ----------
    store : pesdata.Store
        The store to train on.
    out : path-like
        The model directory (see :func:`~pesdata.train.checkpoint.check_model_dir`).
    model : str
        A registered model kind: ``hdnn``, ``linear``, ``committee``.
    descriptor : Descriptor, dict or path-like, optional
        The descriptor, its config or a JSON file holding it (default: ACSF).
    version : int or str, optional
        Version number or tag (default: the latest; with ``split``, the split's own).
    split : str, optional
        A split manifest; the model trains on fold ``fold``'s train part.
    fold : int
        Which fold of ``split``.
    r_cut : float
        Cutoff (Å) of the default descriptor.
    device : str
        ``"cpu"`` or ``"cuda[:k]"``.
    params : dict, optional
        Hyperparameters of the model kind.
    log, progress : callable, optional
        Per-epoch records; number of structures described so far.

    Returns
    -------
    dict
        The model card as written.

    Raises
    ------
    OutputError
        ``out`` may not be written (checked before any work).
    ParameterError
        An unknown model kind, a bad hyperparameter or fold, or no labelled structures.
    ArtefactError
        The split does not exist, leaks, or is pinned to another version.
    SchemaError
        The descriptor config is invalid, or a structure holds an element outside its
        species.
    ValidationError
        The fitted model predicts a non-finite energy or force.
    """
    from ..split import load_split

    out = check_model_dir(out)  # refuse a bad path before any work
    get_model_class(model)  # an unknown kind fails before the data is read
    if split is None and fold:
        raise ParameterError(f"fold {fold} given without a split; name the split too")
    test_ids: list[str] = []
    if split is not None:
        manifest = load_split(store, split, version, allow_other_version=False)
        version = manifest["version"]
        if not 0 <= fold < len(manifest["folds"]):
            raise ParameterError(
                f"split {split!r} has {len(manifest['folds'])} fold(s), not {fold}")
        train_ids, test_ids = manifest["folds"][fold]["train"], manifest["folds"][fold]["test"]
    snap = store.read(version)
    position = {i: k for k, i in enumerate(snap.ids)}
    train_rows = [position[i] for i in (train_ids if split else snap.ids)]
    train_images = _labelled(take_structures(snap, train_rows))
    if not train_images:
        raise ParameterError(f"version {snap.version} has no labelled structures to train on")
    eval_images = (take_structures(snap, [position[i] for i in test_ids]) if test_ids
                   else train_images)
    # the default descriptor covers the elements of both parts (cross_validate: all folds)
    desc = _descriptor(descriptor, train_images + eval_images, r_cut, device)
    fitted = make_model(model, desc, device=device, **(params or {}))
    fitted.fit(fitted.make_dataset(train_images, progress=progress), log=log)
    metrics, _ = predict_metrics(fitted, eval_images)
    card = {
        "version": snap.version,
        "split": split,
        "fold": fold if split else None,
        "n_train": len(train_images),
        "metrics_on": "test" if test_ids else "train",
        "metrics": metrics,
        **fitted.training_summary(),
    }
    card = save_model(fitted, out, **card)
    # the store keeps a copy, so a version knows the models trained on it
    stamp = "".join(c for c in card["created"][:26] if c.isalnum())  # to the microsecond
    stem = out.resolve().name.lstrip(".-").strip()[:80] or "model"
    try:
        check_name(stem)
    except ParameterError:  # a directory name that is no safe artefact name: a plain one
        stem = "model"
    store.artefacts.save("model_card", f"{stem}-v{snap.version}-{stamp}",
                         {**card, "path": str(out.resolve())})
    return card


def cross_validate(
    store,
    split: str,
    *,
    model: str = "hdnn",
    descriptor=None,
    version: int | str | None = None,
    r_cut: float = 5.0,
    device: str = "cpu",
    params: dict | None = None,
    log: Callable[[dict], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Train one model per fold of ``split`` and measure it on the fold's test part.

    Descriptors (and their Jacobians) are computed once for the whole version and shared by
    the folds. Returns a DataFrame with one row per fold — ``fold``, ``n_train``, ``n_test``,
    ``energy_mae``, ``energy_rmse`` (meV/atom), ``force_mae``, ``force_rmse`` (eV/Å),
    ``seconds`` — and ``df.attrs`` holding ``split``, ``version``, ``model`` and the
    ``mean`` and ``std`` over folds (see :func:`cv_summary`).

    Parameters
    ----------
    store : pesdata.Store
        The store holding the split.
    split : str
        The split manifest; every fold is trained and tested.
    model, descriptor, version, r_cut, device, params, progress
        As for :func:`train`.
    log : callable, optional
        Per-epoch records, with the ``fold`` added.

    Returns
    -------
    pandas.DataFrame
        One row per fold, with the summary in ``df.attrs``.

    Raises
    ------
    ParameterError
        A bad model kind or hyperparameter, or a fold without labelled train or test
        structures.
    ArtefactError
        The split does not exist, leaks, or is pinned to another version.
    ValidationError
        A fold's model predicts a non-finite energy or force.
    """
    from ..split import load_split

    manifest = load_split(store, split, version, allow_other_version=False)
    snap = store.read(manifest["version"])
    position = {i: k for k, i in enumerate(snap.ids)}
    needed = sorted({i for f in manifest["folds"] for part in ("train", "test") for i in f[part]},
                    key=position.__getitem__)
    images = take_structures(snap, [position[i] for i in needed])
    keep = [k for k, a in enumerate(images) if a.calc is not None and "energy" in a.calc.results]
    index = {needed[k]: n for n, k in enumerate(keep)}
    images = [images[k] for k in keep]
    if not images:
        raise ParameterError(f"version {snap.version} has no labelled structures to train on")
    desc = _descriptor(descriptor, images, r_cut, device)
    proto = make_model(model, desc, device=device,
                       **(params or {}))
    data = proto.make_dataset(images, progress=progress)
    rows = []
    for k, fold in enumerate(manifest["folds"]):
        tr = [index[i] for i in fold["train"] if i in index]
        te = [index[i] for i in fold["test"] if i in index]
        if not tr or not te:
            raise ParameterError(f"fold {k} of split {split!r} has no labelled train or test part")
        fitted = make_model(model, desc, device=device,
                            **(params or {}))
        t0 = time.perf_counter()
        fitted.fit_subset(data, tr, log=None if log is None else
                          (lambda r, k=k: log({"fold": k, **r})))
        seconds = time.perf_counter() - t0
        metrics, _ = predict_metrics(fitted, [images[i] for i in te])
        rows.append({"fold": k, "n_train": len(tr), "n_test": len(te),
                     **{m: metrics[m] for m in METRICS}, "seconds": seconds})
    df = pd.DataFrame(rows)
    df.attrs.update({"split": split, "version": snap.version, "model": model,
                     **cv_summary(df)})
    return df


METRICS = ("energy_mae", "energy_rmse", "force_mae", "force_rmse")


def cv_summary(df: pd.DataFrame) -> dict:
    """``{"mean": {...}, "std": {...}}`` of the error columns over folds (std with ddof=0)."""
    cols = [c for c in METRICS if c in df and df[c].notna().any()]
    return {"mean": {c: float(df[c].mean()) for c in cols},
            "std": {c: float(df[c].std(ddof=0)) for c in cols}}
