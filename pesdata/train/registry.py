"""Model kinds found by name: one small registry instead of ``if kind == ...`` chains.

Every model kind is a :class:`Potential` subclass registered under its ``kind`` name; training,
cross-validation and checkpoints only talk to that interface:

========================  ==================================================================
``from_params(d, **p)``   a new, unfitted model from a descriptor and hyperparameters
``params()``              the hyperparameters as JSON types (the model card's ``params``)
``make_dataset(images)``  what ``fit``/``fit_subset`` train on (descriptors computed once)
``fit_subset(data, idx)`` fit on part of a dataset (cross-validation folds share one)
``state_dict()``          the fitted weights, a flat ``{name: tensor}`` (``model.pt``)
``load_state(state)``     put saved weights back into a model built by ``from_params``
``energy(g, ...)``        total energies of a flat batch from its descriptors
``predict(images)``       energies (and forces) — written once, here
========================  ==================================================================

The built-in kinds (``hdnn``, ``linear``, ``committee``) are found lazily, as ASE finds its
formats, so importing the registry imports no model; :func:`register` adds another kind.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence

import ase

from ..errors import ParameterError

__all__ = ["NOT_FITTED", "Potential", "check_fitted", "get_model_class", "model_kinds", "register"]

_BUILTIN = {
    "hdnn": ("pesdata.train.hdnn", "HDNNPotential"),
    "linear": ("pesdata.train.linear", "LinearPotential"),
    "committee": ("pesdata.train.committee", "Committee"),
}
_REGISTRY: dict[str, type[Potential]] = {}
NOT_FITTED = "the model is not fitted; call fit() first"


def check_fitted(fitted: bool) -> None:
    """Raise the one "not fitted" error of every model kind unless ``fitted``.

    Parameters
    ----------
    fitted : bool
        Whether the model holds fitted weights.

    Raises
    ------
    ParameterError
        ``fitted`` is false: predicting with (or saving) an unfitted model is a usage error.
    """
    if not fitted:
        raise ParameterError(NOT_FITTED)


class Potential:
    """Base class of the model kinds: the shared ``predict`` and the registry interface.

    Subclasses set ``kind``, take the descriptor as their first constructor argument and
    implement ``params``, ``fit``, ``state_dict``, ``load_state`` and ``energy`` (see the
    module docstring).
    """

    kind: str = ""
    descriptor = None

    @classmethod
    def from_params(cls, descriptor, **params) -> Potential:
        """A new, unfitted model; unknown parameters are a :class:`ParameterError`."""
        signature = inspect.signature(cls.__init__).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in signature.values()):
            unknown = sorted(set(params) - set(signature))
            if unknown:
                raise ParameterError(f"the {cls.kind} model takes no {', '.join(unknown)}")
        try:
            return cls(descriptor, **params)
        except TypeError as exc:  # an unexpected keyword further down (committee members)
            raise ParameterError(f"bad {cls.kind} parameters: {exc}") from exc

    def params(self) -> dict:  # pragma: no cover - every kind overrides it
        """Hyperparameters (JSON types), as recorded in the model card."""
        raise NotImplementedError

    def make_dataset(self, images: Sequence[ase.Atoms], **kwargs):
        """What :meth:`fit` and :meth:`fit_subset` train on; by default the structures."""
        return list(images)

    def fit(self, images, valid=None, log=None) -> Potential:  # pragma: no cover
        """Fit to labelled structures (or a dataset from :meth:`make_dataset`)."""
        raise NotImplementedError

    def fit_subset(self, data, idx, log=None) -> Potential:
        """Fit on ``data[idx]`` of a dataset from :meth:`make_dataset`."""
        return self.fit([data[int(i)] for i in idx], log=log)

    def training_summary(self) -> dict:
        """Model-card fields describing the training run (none by default)."""
        return {}

    def state_dict(self) -> dict:  # pragma: no cover - every kind overrides it
        """The fitted weights as a flat ``{name: tensor}`` (what ``model.pt`` holds)."""
        raise NotImplementedError

    def load_state(self, state: dict) -> Potential:  # pragma: no cover
        """Load weights written by :meth:`state_dict`; returns the model."""
        raise NotImplementedError

    def predict(self, images: Sequence[ase.Atoms], forces: bool = False):
        """Energies (eV) of ``images``; with ``forces=True`` also the list of (N, 3) forces.

        A committee predicts its members' mean energy, hence their mean forces.
        """
        from ._predict import predict_images

        out = predict_images(self, images, forces=forces)
        return (out["energy"], out["forces"]) if forces else out["energy"]


def register(cls: type[Potential]) -> type[Potential]:
    """Register a :class:`Potential` subclass under its ``kind`` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Potential)) or not cls.kind:
        raise ParameterError(f"{cls!r} is not a Potential subclass with a kind")
    _REGISTRY[cls.kind] = cls
    return cls


def model_kinds() -> tuple[str, ...]:
    """Names of the known model kinds (built-in first)."""
    return tuple(dict.fromkeys([*_BUILTIN, *_REGISTRY]))


def get_model_class(kind: str) -> type[Potential]:
    """The class of model ``kind``; :class:`ParameterError` for an unknown name."""
    if kind not in _REGISTRY and kind in _BUILTIN:
        module, name = _BUILTIN[kind]
        register(getattr(importlib.import_module(module), name))
    if kind not in _REGISTRY:
        raise ParameterError(f"unknown model {kind!r}; available: {', '.join(model_kinds())}")
    return _REGISTRY[kind]
