"""Pieces shared by the network models (:class:`HDNNPotential` and its :class:`Committee`).

Checkpoint tensors of a model's :class:`~pesdata.train.hdnn.ElementNets` under a name prefix
(``net.`` for one model, ``member<k>.`` for a committee member), and the summary of a training
history that the model card records.
"""

from __future__ import annotations

from .registry import check_fitted

__all__ = ["history_summary", "load_net", "net_state"]


def net_state(model, prefix: str) -> dict:
    """The tensors of ``model.net_`` on the CPU, each name prefixed ``prefix``.

    Parameters
    ----------
    model : HDNNPotential
        A fitted network model.
    prefix : str
        Prepended to every tensor name.

    Returns
    -------
    dict
        ``{prefix + name: tensor}``.

    Raises
    ------
    ParameterError
        The model is not fitted.
    """
    check_fitted(model.net_ is not None)
    return {prefix + name: t.detach().cpu() for name, t in model.net_.state_dict().items()}


def load_net(model, state: dict, prefix: str) -> None:
    """Build ``model``'s network and load the tensors of ``state`` named ``prefix...`` into it.

    Parameters
    ----------
    model : HDNNPotential
        The model; its ``net_`` is replaced by the loaded network (in eval mode).
    state : dict
        Tensors as :func:`net_state` writes them (other prefixes are ignored).
    prefix : str
        The prefix of this network's tensors.

    Raises
    ------
    RuntimeError, KeyError
        The tensors do not fit the network (``torch``'s ``load_state_dict``);
        :func:`~pesdata.train.load_model` turns this into an ``ArtefactError``.
    """
    net = model.new_net()
    net.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    net.eval()
    model.net_ = net


def history_summary(history: list[dict]) -> dict:
    """What a model card records of one training run.

    Parameters
    ----------
    history : list of dict
        One record per epoch (``epoch``, ``loss``, ``seconds``, ``valid_*`` RMSEs).

    Returns
    -------
    dict
        ``epochs`` run, ``best_epoch`` (lowest loss), ``seconds`` and the best epoch's
        ``valid_*`` values.
    """
    best = min(history, key=lambda r: r["loss"]) if history else {}
    return {"epochs": len(history), "best_epoch": best.get("epoch"),
            "seconds": history[-1]["seconds"] if history else 0.0,
            **{k: v for k, v in best.items() if k.startswith("valid_")}}
