"""Early stopping and the exponential moving average of the weights, as named objects.

:class:`WeightAverage` keeps an exponential moving average (EMA) of a module's parameters, as
MACE and NequIP train; :class:`EarlyStopping` watches a validation loss, remembers the state
at its best value and says when ``patience`` epochs have passed without improvement. The HDNN
training loop validates the average, early-stops on it and keeps its best state.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import torch

from .._params import check_float, check_int

__all__ = ["EarlyStopping", "WeightAverage"]


class EarlyStopping:
    """Stop after ``patience`` epochs without a lower validation loss; keep the best state.

    Parameters
    ----------
    patience : int
        Epochs without improvement after which :attr:`should_stop` becomes true (≥ 1).
    initial_state : mapping of tensors, optional
        The state to restore if no epoch ever improves (e.g. every loss is NaN).

    Examples
    --------
    >>> stop = EarlyStopping(patience=2)
    >>> [stop.step(loss, {}) for loss in (3.0, 2.0, 2.5, 2.1)]
    [True, True, False, False]
    >>> stop.best, stop.best_epoch, stop.should_stop
    (2.0, 2, True)
    """

    def __init__(self, patience: int, initial_state: Mapping | None = None) -> None:
        self.patience = check_int("patience", patience)
        self.best = math.inf
        self.best_epoch: int | None = None
        self.best_state = None if initial_state is None else copy.deepcopy(dict(initial_state))
        self.stale = 0
        self.epoch = 0

    def step(self, loss: float, state: Mapping) -> bool:
        """Record one epoch's validation ``loss``; copy ``state`` when it is the best so far.

        Returns whether the loss improved (a NaN loss never does).
        """
        self.epoch += 1
        if loss < self.best:
            self.best, self.best_epoch, self.stale = float(loss), self.epoch, 0
            self.best_state = copy.deepcopy(dict(state))
            return True
        self.stale += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` epochs in a row have not improved."""
        return self.stale >= self.patience

    def restore(self, module: torch.nn.Module) -> torch.nn.Module:
        """Load the best state (or the initial one) into ``module``; returns it."""
        if self.best_state is not None:
            module.load_state_dict(self.best_state)
        return module


class WeightAverage:
    """Exponential moving average of a module's parameters.

    After step t the average moves towards the current weights w as
    ``avg ← d·avg + (1 − d)·w`` with ``d = min(decay, (1 + t) / (10 + t))`` — the decay ramps up
    over the first steps, as TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``.
    Buffers (standardisation statistics, reference energies) are copied once, when the
    average is made, and not averaged.

    Parameters
    ----------
    module : torch.nn.Module
        The module being trained; :attr:`module` is a deep copy holding the average.
    decay : float
        The decay d in [0, 1); 0 keeps a copy of the current weights.

    Examples
    --------
    >>> net = torch.nn.Linear(1, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.fill_(1.0)
    >>> ema = WeightAverage(net, decay=0.9)
    >>> with torch.no_grad():
    ...     _ = net.weight.fill_(3.0)
    >>> ema.update(net)                        # d = min(0.9, 2/11)
    >>> round(float(ema.module.weight), 6) == round(2 / 11 * 1 + 9 / 11 * 3, 6)
    True
    """

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.decay = check_float("ema_decay", decay, low=0, high=1, high_open=True,
                                 what="a finite number in [0, 1)")
        self.module = copy.deepcopy(module)
        self.steps = 0

    def current_decay(self) -> float:
        """The decay the next :meth:`update` uses."""
        t = self.steps + 1
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        """Move the average one step towards ``module``'s current parameters."""
        decay = self.current_decay()
        for avg, now in zip(self.module.parameters(), module.parameters(), strict=True):
            avg.lerp_(now, 1 - decay)
        self.steps += 1

    def state_dict(self) -> dict:
        """The averaged module's state dict."""
        return self.module.state_dict()
