"""Leak-free splits with scikit-learn's protocol, pinned to a store version as manifests.

Splitters follow ``sklearn.model_selection``: constructors only store parameters,
``split(X, y=None, groups=None)`` yields ``(train, test)`` integer index arrays and
``get_n_splits`` counts them, so they work inside ``cross_val_score`` and friends. Where
scikit-learn has the splitter it is used (``ShuffleSplit``, ``GroupShuffleSplit``,
``StratifiedShuffleSplit``, ``KFold``, ``GroupKFold``, ``StratifiedKFold``,
``StratifiedGroupKFold``, ``LeaveOneOut``, ``LeaveOneGroupOut``); the bootstrap with
out-of-bag test is ours.

:func:`make_split` runs a strategy on a version and saves a **manifest** artefact (the ids of
each fold's train and test parts; ``schemas/split.json``). Structures that share a
``geometry_hash`` (the same geometry under several methods) always land on the same side, and
with ``group_by`` so does every group; both are checked on every fold before anything is saved.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import numpy as np
import pandas as pd
from sklearn import model_selection as ms

from ._params import check_float, check_int
from .errors import ArtefactError, ParameterError

__all__ = [
    "STRATEGIES",
    "Bootstrap",
    "HoldOut",
    "KFold",
    "LeaveOneGroupOut",
    "LeaveOneOut",
    "RepeatedLearningTest",
    "check_manifest",
    "load_split",
    "make_split",
]

Indices = tuple[np.ndarray, np.ndarray]


class _Splitter:
    """Shared sklearn-protocol plumbing: delegate to the sklearn splitter for the inputs."""

    def _delegate(self, y, groups):  # pragma: no cover - overridden
        raise NotImplementedError(f"{type(self).__name__} must define _delegate()")

    def split(self, X, y=None, groups=None) -> Iterator[Indices]:
        """Yield ``(train, test)`` index arrays."""
        yield from self._delegate(y, groups).split(X, y, groups)

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        """Number of (train, test) splits."""
        return self._delegate(y, groups).get_n_splits(X, y, groups)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class HoldOut(_Splitter):
    """One random train/test split; grouped when ``groups`` are given, stratified by ``y``.

    Parameters
    ----------
    test_size : float
        Fraction of structures (or of groups) in the test part.
    random_state : int
        Seed.
    stratify : bool
        Use ``y`` as stratification labels (ignored with groups).
    """

    def __init__(self, test_size: float = 0.2, random_state: int = 0, stratify: bool = False):
        self.test_size = test_size
        self.random_state = random_state
        self.stratify = stratify

    def _delegate(self, y, groups):
        return _shuffle(1, self.test_size, self.random_state, self.stratify and y is not None,
                        groups is not None)


class RepeatedLearningTest(HoldOut):
    """Repeated random sub-sampling (the repeated learning-testing method): ``n_repeats``
    independent hold-outs."""

    def __init__(self, n_repeats: int = 10, test_size: float = 0.2, random_state: int = 0,
                 stratify: bool = False):
        super().__init__(test_size, random_state, stratify)
        self.n_repeats = n_repeats

    def _delegate(self, y, groups):
        return _shuffle(self.n_repeats, self.test_size, self.random_state,
                        self.stratify and y is not None, groups is not None)


def _shuffle(n, test_size, seed, stratified, grouped):
    if grouped:
        return ms.GroupShuffleSplit(n_splits=n, test_size=test_size, random_state=seed)
    if stratified:
        return ms.StratifiedShuffleSplit(n_splits=n, test_size=test_size, random_state=seed)
    return ms.ShuffleSplit(n_splits=n, test_size=test_size, random_state=seed)


class KFold(_Splitter):
    """K-fold cross-validation: plain, grouped (``groups``), stratified (``y``) or both."""

    def __init__(self, n_splits: int = 5, random_state: int = 0, stratify: bool = False):
        self.n_splits = n_splits
        self.random_state = random_state
        self.stratify = stratify

    def _delegate(self, y, groups):
        strat = self.stratify and y is not None
        if groups is not None and strat:
            return ms.StratifiedGroupKFold(self.n_splits, shuffle=True,
                                           random_state=self.random_state)
        if groups is not None:
            return ms.GroupKFold(self.n_splits, shuffle=True, random_state=self.random_state)
        if strat:
            return ms.StratifiedKFold(self.n_splits, shuffle=True, random_state=self.random_state)
        return ms.KFold(self.n_splits, shuffle=True, random_state=self.random_state)


class LeaveOneOut(_Splitter):
    """Leave-one-out (LOOCV); with ``groups``, leave-one-*group*-out so no group straddles."""

    def _delegate(self, y, groups):
        return ms.LeaveOneGroupOut() if groups is not None else ms.LeaveOneOut()


class LeaveOneGroupOut(_Splitter):
    """Leave one group out: each fold tests one whole group (``groups`` required)."""

    def _delegate(self, y, groups):
        if groups is None:
            raise ParameterError("LeaveOneGroupOut needs groups (e.g. --group-by group)")
        return ms.LeaveOneGroupOut()


class Bootstrap:
    """Bootstrap: train on a resample with replacement, test on the out-of-bag rest.

    With ``groups``, whole groups are resampled. Train indices may repeat (that is the
    bootstrap); test indices are unique. A resample that draws every structure (every group)
    leaves nothing out of bag to test on and is drawn again, so every test part is non-empty;
    this needs at least 2 structures (groups).
    """

    def __init__(self, n_repeats: int = 10, random_state: int = 0):
        self.n_repeats = n_repeats
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return self.n_repeats

    def split(self, X, y=None, groups=None) -> Iterator[Indices]:
        n = len(X)
        rng = np.random.default_rng(self.random_state)
        labels = np.arange(n) if groups is None else pd.factorize(np.asarray(groups))[0]
        members = pd.Series(np.arange(n)).groupby(labels).apply(np.asarray).tolist()
        if len(members) < 2:
            raise ParameterError(
                f"a bootstrap needs at least 2 structures (or groups) to leave one out of "
                f"bag, got {len(members)}")
        for _ in range(self.n_repeats):
            oob: np.ndarray = np.array([], int)
            while not len(oob):  # nothing out of bag: nothing to test on, draw again
                drawn = rng.integers(0, len(members), len(members))
                oob = np.setdiff1d(np.arange(len(members)), drawn)
            train = np.concatenate([members[g] for g in drawn])
            test = np.concatenate([members[g] for g in oob])
            yield train, np.sort(test)

    def __repr__(self) -> str:
        return f"Bootstrap(n_repeats={self.n_repeats}, random_state={self.random_state})"


STRATEGIES = ("holdout", "kfold", "loo", "logo", "rlt", "bootstrap")
COLUMNS = ("group", "config_type", "source", "method", "formula", "composition")


def _check_params(k, repeats, test_size, seed) -> tuple[int, int, float, int]:
    """The numeric split arguments, checked (all of them: the manifest records them)."""
    return (check_int("k", k, 2, what="an integer ≥ 2 (folds)"),
            check_int("repeats", repeats),
            check_float("test_size", test_size, low=0, high=1, low_open=True, high_open=True,
                        what="a fraction in (0, 1)"),
            check_int("seed", seed, 0, what="an integer ≥ 0"))


def _splitter(strategy: str, k: int, repeats: int, test_size: float, seed: int, stratify: bool):
    if strategy == "holdout":
        return HoldOut(test_size, seed, stratify)
    if strategy == "kfold":
        return KFold(k, seed, stratify)
    if strategy == "loo":
        return LeaveOneOut()
    if strategy == "logo":
        return LeaveOneGroupOut()
    if strategy == "rlt":
        return RepeatedLearningTest(repeats, test_size, seed, stratify)
    if strategy == "bootstrap":
        return Bootstrap(repeats, seed)
    raise ParameterError(
        f"unknown split strategy {strategy!r:.200}; choose from {', '.join(STRATEGIES)}")


def _column(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in COLUMNS:
        raise ParameterError(f"cannot split by {name!r:.200}; use one of {', '.join(COLUMNS)}")
    if name == "source":  # the file a frame came from, not file#frame
        return df["source"].str.rsplit("#", n=1).str[0].to_numpy()
    if name == "composition":
        from .frames import reduced_formula

        return np.array([reduced_formula(f) for f in df["formula"]])
    values = df[name].astype(object)
    return values.where(values.notna(), "<none>").to_numpy()


def _leak_groups(geometry: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Group labels that also keep every geometry_hash whole (union of the two relations)."""
    g = pd.factorize(geometry)[0]
    if groups is None:
        return g
    u = pd.factorize(groups)[0] + g.max() + 1
    parent = list(range(int(u.max()) + 1))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(g.tolist(), u.tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    return np.array([find(x) for x in g.tolist()])


def check_manifest(manifest: dict, table: pd.DataFrame) -> None:
    """Raise :class:`ArtefactError` when a fold is malformed, leaks or names an unknown
    structure.

    A fold is malformed when one of its parts is empty (a model trained on it would be
    measured on nothing, or on its own training data) or lists an id twice. Only the
    ``train`` part of a ``bootstrap`` manifest may repeat ids: a bootstrap resample draws
    with replacement and :func:`make_split` stores the repeats on purpose; its ``test`` part
    (the out-of-bag structures) is unique like every other part. A fold leaks when one id,
    one ``geometry_hash`` or (with ``group_by``) one group sits in both its parts.

    Parameters
    ----------
    manifest : dict
        The manifest (schema-valid: ``name``, ``version``, ``strategy``, ``folds``).
    table : pandas.DataFrame
        The pinned version's ``id``, ``geometry_hash`` and, when the manifest names a
        ``group_by``, that column's values under ``_group``.

    Raises
    ------
    ArtefactError
        The message names the split, the fold (numbered from 0, as ``--fold``), the part
        where it matters and an id.
    """
    name = manifest.get("name")
    by_id = table.set_index("id")
    known = set(by_id.index)
    grouped = "_group" in by_id and manifest.get("group_by")
    for k, fold in enumerate(manifest["folds"]):
        for part in ("train", "test"):
            ids = fold[part]
            if not ids:
                raise ArtefactError(f"split {name!r} fold {k}: the {part} part is empty")
            if part == "train" and manifest.get("strategy") == "bootstrap":
                continue  # a resample with replacement repeats ids on purpose
            counts = pd.Series(ids).value_counts()
            if counts.iloc[0] > 1:
                raise ArtefactError(
                    f"split {name!r} fold {k}: id {str(counts.index[0]):.200} is listed "
                    f"{counts.iloc[0]} times in the {part} part"
                )
        train, test = set(fold["train"]), set(fold["test"])
        unknown = sorted((train | test) - known)
        if unknown:
            raise ArtefactError(
                f"split {name!r} fold {k}: id {unknown[0]} is not in version "
                f"{manifest.get('version')} ({len(unknown)} unknown id(s))"
            )
        both = sorted(train & test)
        if both:
            raise ArtefactError(f"split {name!r} fold {k}: id {both[0]} is in both parts")
        tr, te = by_id.loc[sorted(train)], by_id.loc[sorted(test)]
        for col in ("geometry_hash", "_group") if grouped else ("geometry_hash",):
            shared = set(tr[col]) & set(te[col])
            if not shared:
                continue
            leak = te.index[te[col].isin(shared)][0]
            where = (
                f"shares its geometry {by_id.at[leak, col]} with a training structure"
                if col == "geometry_hash" else f"is in {manifest['group_by']} "
                f"{str(by_id.at[leak, col])!r:.200}, which is also in training"
            )
            raise ArtefactError(f"split {name!r} fold {k}: test id {leak} {where}")


def _leak_table(snap, group_by: str | None) -> pd.DataFrame:
    """``id``, ``geometry_hash`` and (with ``group_by``) ``_group`` of a version."""
    source = {"composition": "formula"}.get(group_by, group_by)
    columns = ["id", "geometry_hash", *([source] if source in COLUMNS else [])]
    df = snap.table(columns=columns).to_pandas()
    if group_by:  # only the columns needed: no forces or positions are read
        df["_group"] = _column(df, group_by)
    return df[["id", "geometry_hash", *(["_group"] if group_by else [])]]


def make_split(
    store,
    name: str,
    strategy: str = "holdout",
    *,
    k: int = 5,
    repeats: int = 10,
    test_size: float = 0.2,
    group_by: str | None = None,
    stratify_by: str | None = None,
    seed: int = 0,
    version: int | str | None = None,
    save: bool = True,
) -> dict:
    """Split a version and save the manifest artefact ``split/<name>``.

    The manifest is written under the store's write lock, and whether ``name`` is taken is
    decided inside it: of two concurrent calls with one name exactly one succeeds, the other
    raises :class:`~pesdata.errors.ArtefactError`.

    Parameters
    ----------
    store : pesdata.Store
        The store to split (and to save the manifest in).
    name : str
        Name of the manifest artefact.
    strategy : str
        One of :data:`STRATEGIES`: ``holdout``, ``kfold``, ``loo``, ``logo`` (needs
        ``group_by``), ``rlt`` (repeated learning-testing), ``bootstrap``.
    k : int
        Folds for ``kfold`` (≥ 2).
    repeats : int
        Repeats for ``rlt`` and ``bootstrap`` (≥ 1).
    test_size : float
        Test fraction for ``holdout`` and ``rlt``, in (0, 1).
    group_by, stratify_by : str, optional
        A column of :data:`COLUMNS` whose groups stay whole / whose proportions are kept.
    seed : int
        Random seed (≥ 0).
    version : int or str, optional
        Version number or tag to split (default: the latest).
    save : bool
        Save the manifest; ``False`` only returns it.

    Returns
    -------
    dict
        The manifest: ``name``, ``version``, ``strategy``, ``params``, ``group_by``,
        ``stratify_by``, ``seed``, ``folds`` (list of ``{"train": [ids], "test": [ids]}``; a
        hold-out is one fold), ``created``.

    Raises
    ------
    ParameterError
        An unknown strategy or column, an out-of-range or non-numeric ``k``, ``repeats``,
        ``test_size`` or ``seed`` (the message quotes it), an empty version, or a split
        scikit-learn cannot make (e.g. fewer groups than folds) or a bootstrap of fewer
        than 2 structures (groups).
    ArtefactError
        A split called ``name`` exists, or a fold would leak.
    """
    k, repeats, test_size, seed = _check_params(k, repeats, test_size, seed)
    if save and name in store.artefacts.list("split"):  # fail early; decided under the lock
        raise ArtefactError(f"split artefact {name!r} exists; choose another name")
    snap = store.read(version)
    df = snap.to_pandas()
    if df.empty:
        raise ParameterError(f"version {snap.version} is empty: nothing to split")
    geometry = snap.table(columns=["geometry_hash"]).column("geometry_hash").to_numpy(
        zero_copy_only=False
    )
    user_groups = _column(df, group_by) if group_by else None
    y = _column(df, stratify_by) if stratify_by else None
    groups = _leak_groups(geometry, user_groups)
    grouped = group_by is not None or len(set(groups.tolist())) < len(df)
    splitter = _splitter(strategy, k, repeats, test_size, seed, stratify_by is not None)
    ids = np.asarray(snap.ids, dtype=object)
    try:
        folds = [
            {"train": ids[tr].tolist(), "test": ids[te].tolist()}
            for tr, te in splitter.split(np.arange(len(df)), y, groups if grouped else None)
        ]
    except ValueError as exc:  # sklearn's own message, e.g. too few groups for k folds
        raise ParameterError(
            f"cannot make a {strategy} split of version {snap.version}: {exc}"
        ) from exc
    manifest = {
        "name": name,
        "version": snap.version,
        "strategy": strategy,
        "params": {"k": k, "repeats": repeats, "test_size": test_size},
        "group_by": group_by,
        "stratify_by": stratify_by,
        "seed": seed,
        "splitter": repr(splitter),
        "folds": folds,
        "created": datetime.now(timezone.utc).isoformat(),
    }
    table = pd.DataFrame({"id": ids, "geometry_hash": geometry})
    if user_groups is not None:
        table["_group"] = user_groups
    check_manifest(manifest, table)
    if save:
        with store.writing():  # the existence check and the write, as one step
            if name in store.artefacts.list("split"):
                raise ArtefactError(f"split artefact {name!r} exists; choose another name")
            store.artefacts.save("split", name, manifest)
    return manifest


def load_split(store, name: str, version: int | str | None = None, *,
               allow_other_version: bool = False) -> dict:
    """Load manifest ``name`` and re-check it against its pinned version.

    A manifest is a JSON file a user can edit, so its invariants are checked again on every
    load (see :func:`check_manifest`): every id exists in the pinned version, no part of a
    fold is empty or lists an id twice (except a bootstrap's ``train`` part, a resample with
    replacement), and no id, ``geometry_hash`` or ``group_by`` group sits on both sides of a
    fold. Using it on another version than its own is an error unless
    ``allow_other_version``; even then every id must exist in that version.

    Parameters
    ----------
    store : pesdata.Store
        The store holding the manifest.
    name : str
        The manifest's name.
    version : int or str, optional
        The version the caller will use it on (default: its pinned version).
    allow_other_version : bool
        Allow a ``version`` other than the pinned one.

    Returns
    -------
    dict
        The manifest, as :func:`make_split` returns it.

    Raises
    ------
    ArtefactNotFound
        No split of that name.
    ArtefactError
        The manifest fails its schema, has an empty part or a repeated id, or leaks (the
        message names the fold, the part and an id).
    ParameterError
        ``version`` is not the pinned one (without ``allow_other_version``).
    """
    manifest = store.artefacts.load("split", name)
    check_manifest(manifest, _leak_table(store.read(manifest["version"]),
                                         manifest.get("group_by")))
    if version is None:
        return manifest
    number = store.resolve(version)
    if number != manifest["version"]:
        if not allow_other_version:
            raise ParameterError(
                f"split {name!r} is pinned to version {manifest['version']}, not {number} "
                f"(pass allow_other_version=True to use it anyway)"
            )
        present = set(store.read(number).ids)
        missing = {i for f in manifest["folds"] for part in f.values() for i in part} - present
        if missing:
            raise ArtefactError(
                f"split {name!r}: {len(missing)} id(s) are not in version {number}, "
                f"e.g. {sorted(missing)[0]}"
            )
    return manifest
