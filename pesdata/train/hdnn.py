"""Behler–Parrinello high-dimensional neural-network potential (HDNN) in torch.

E = Σ_i [ E_ref(Z_i) + s · NN_{Z_i}((G_i − μ_{Z_i}) / σ_{Z_i}) ]: one MLP per element on
ACSF or PTSD features standardised with per-element statistics of the training part, plus
per-element reference energies fitted by least squares on the training energies; ``s`` is the
spread of the training energies per atom after that reference. Forces are −∂E/∂r by autograd
through the descriptors (at training time through their stored pair Jacobian, the same
derivative computed once). Loss: w_E · MSE(E/atom) + w_F · MSE(F) in eV and eV/Å. Adam with
the learning rate halved when the validation loss stalls; an exponential moving average of the
weights (as MACE and NequIP train) is what is validated, early-stopped and kept — its best
validation state is the fitted model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import ase
import numpy as np
import torch

from .._params import check_float, check_int
from ..descriptors import Descriptor, check_device
from ..errors import ParameterError
from ._nets import history_summary, load_net, net_state
from .data import StructureDataset, collate
from .early_stopping import EarlyStopping, WeightAverage
from .registry import Potential, check_fitted, register

__all__ = ["HDNNPotential", "ElementNets"]

ACTIVATIONS = {"tanh": torch.nn.Tanh, "silu": torch.nn.SiLU, "softplus": torch.nn.Softplus}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class ElementNets(torch.nn.Module):
    """One MLP per element plus the standardisation and reference-energy buffers."""

    def __init__(
        self, n_species: int, n_features: int, hidden: Sequence[int], activation: str
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ParameterError(
                f"unknown activation {activation!r}; one of {sorted(ACTIVATIONS)}")
        widths = [n_features, *[int(h) for h in hidden]]
        nets = []
        for _ in range(n_species):
            layers: list[torch.nn.Module] = []
            for a, b in zip(widths[:-1], widths[1:], strict=True):
                layers += [torch.nn.Linear(a, b), ACTIVATIONS[activation]()]
            layers.append(torch.nn.Linear(widths[-1], 1))
            nets.append(torch.nn.Sequential(*layers))
        self.nets = torch.nn.ModuleList(nets)
        self.register_buffer("mean", torch.zeros(n_species, n_features))
        self.register_buffer("std", torch.ones(n_species, n_features))
        self.register_buffer("ref", torch.zeros(n_species, dtype=torch.float64))
        self.register_buffer("scale", torch.ones((), dtype=torch.float64))

    def atomic(self, g: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        """Network part of the atomic energies, s · NN(x), in the model dtype (N,)."""
        x = (g - self.mean[types]) / self.std[types]
        if len(self.nets) == 1:
            out = self.nets[0](x)[:, 0]
        else:
            out = torch.zeros(len(g), dtype=x.dtype, device=x.device)
            for e, net in enumerate(self.nets):
                idx = torch.nonzero(types == e)[:, 0]
                if idx.numel():
                    out = out.index_put((idx,), net(x[idx])[:, 0])
        return out * self.scale.to(out.dtype)

    def forward(
        self, g: torch.Tensor, types: torch.Tensor, structure: torch.Tensor, n_structures: int
    ) -> torch.Tensor:
        """Total energies (S,), float64."""
        per_atom = self.atomic(g.to(self.mean.dtype), types).to(torch.float64) + self.ref[types]
        out = torch.zeros(n_structures, dtype=torch.float64, device=g.device)
        return out.index_add(0, structure, per_atom)


def _batch_errors(net: ElementNets, batch: dict, use_forces: bool, create_graph: bool):
    """Squared errors of a collated batch: (Σ (ΔE/n)², n_structures, Σ ΔF², n_components)."""
    g = batch["g"]
    if use_forces:
        g = g.detach().requires_grad_(True)
    e_net = net.atomic(g, batch["types"])
    n_s = len(batch["energy"])
    ref = net.ref[batch["types"]]
    energy = torch.zeros(n_s, dtype=torch.float64, device=g.device).index_add(
        0, batch["structure"], e_net.to(torch.float64) + ref
    )
    de = (energy - batch["energy"]) / batch["n_atoms"]
    out = [(de**2).sum(), n_s, torch.zeros((), dtype=torch.float64), 0]
    if use_forces:
        (dedg,) = torch.autograd.grad(e_net.sum(), g, create_graph=create_graph)
        i, j = batch["pairs"]
        c = torch.einsum("pf,pfk->pk", dedg[i], batch["jac"])
        forces = torch.zeros_like(batch["forces"]).index_add(0, i, c).index_add(0, j, -c)
        mask = batch["force_mask"]
        df = (forces - batch["forces"])[mask]
        out[2], out[3] = (df.to(torch.float64) ** 2).sum(), df.numel()
    return out


@register
class HDNNPotential(Potential):
    """Behler–Parrinello HDNN (sklearn-style ``fit`` / ``predict``).

    Parameters
    ----------
    descriptor : Descriptor
        ACSF or PTSD; its species are the model's elements.
    hidden : sequence of int
        Hidden-layer widths of every element's MLP.
    activation : {"silu", "tanh", "softplus"}
        SiLU by default: on the mlearn Si split (5-min budget, weight average on) it gave
        test energy MAE 5.7 meV/atom against 6.2 with tanh, and lower force errors too.
    energy_weight, force_weight : float
        w_E and w_F of the loss (energies per atom in eV, forces in eV/Å); ``force_weight=0``
        trains on energies only (no Jacobian is computed then).
    epochs : int
        Maximum number of epochs.
    batch_size : int
        Structures per optimiser step.
    lr, lr_min : float
        Initial learning rate; training stops once the decayed rate falls below ``lr_min``.
    lr_patience : int
        Epochs without validation improvement before the learning rate is halved (the
        defaults 40 / 150 with the weight average: Si test energy MAE 5.1 meV/atom against
        5.7 with 20 / 60).
    patience : int
        Epochs without validation improvement before early stopping.
    valid_fraction : float
        Part of the training structures held out for early stopping when ``fit`` gets no
        validation set.
    seed : int
        Seeds the weights, the validation draw and the batch order.
    dtype : {"float32", "float64"}
    device : str
        "cpu" or "cuda[:k]"; the descriptor runs where it was built.
    max_seconds : float, optional
        Wall-clock budget for the epochs (the best state so far is kept).
    ema_decay : float
        Decay of the exponential moving average of the weights, updated after every step
        (ramped up as (1 + t) / (10 + t) over the first steps); the average is validated and
        kept. 0 keeps the raw weights.
    """

    kind = "hdnn"

    def __init__(
        self,
        descriptor: Descriptor,
        hidden: Sequence[int] = (64, 64),
        activation: str = "silu",
        energy_weight: float = 1.0,
        force_weight: float = 0.01,
        epochs: int = 1000,
        batch_size: int = 8,
        lr: float = 2e-3,
        lr_min: float = 1e-5,
        lr_patience: int = 40,
        patience: int = 150,
        valid_fraction: float = 0.1,
        seed: int = 0,
        dtype: str = "float32",
        device: str = "cpu",
        max_seconds: float | None = None,
        ema_decay: float = 0.99,
    ) -> None:
        if dtype not in DTYPES:
            raise ParameterError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if activation not in ACTIVATIONS:
            raise ParameterError(
                f"unknown activation {activation!r}; one of {sorted(ACTIVATIONS)}")
        check_device(device)
        energy_weight = check_float("energy_weight", energy_weight, low=0)
        force_weight = check_float("force_weight", force_weight, low=0)
        if energy_weight + force_weight == 0:
            raise ParameterError("loss weights must be ≥ 0 and not both 0, got energy_weight "
                                 "0 and force_weight 0")
        for name, value in (("ema_decay", ema_decay), ("valid_fraction", valid_fraction)):
            check_float(name, value, low=0, high=1, high_open=True,
                        what="a finite number in [0, 1)")
        for name, value in (("epochs", epochs), ("batch_size", batch_size),
                            ("patience", patience), *(("hidden width", h) for h in hidden)):
            check_int(name, value)
        check_int("lr_patience", lr_patience, 0)
        check_int("seed", seed, 0)
        check_float("lr", lr, low=0, low_open=True, what="finite and > 0")
        check_float("lr_min", lr_min, low=0, what="finite and ≥ 0")
        if max_seconds is not None:
            check_float("max_seconds", max_seconds, low=0, low_open=True,
                        what="finite and positive")
        self.descriptor = descriptor
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.energy_weight, self.force_weight = float(energy_weight), float(force_weight)
        self.epochs, self.batch_size = int(epochs), int(batch_size)
        self.lr, self.lr_min, self.lr_patience = float(lr), float(lr_min), int(lr_patience)
        self.patience, self.valid_fraction = int(patience), float(valid_fraction)
        self.seed, self.dtype, self.device = int(seed), dtype, device
        self.max_seconds = None if max_seconds is None else float(max_seconds)
        self.ema_decay = float(ema_decay)
        self.net_: ElementNets | None = None
        self.history_: list[dict] = []

    def params(self) -> dict:
        """Hyperparameters (JSON types), as recorded in the model card."""
        keys = ("hidden", "activation", "energy_weight", "force_weight", "epochs",
                "batch_size", "lr", "lr_min", "lr_patience", "patience", "valid_fraction",
                "seed", "dtype", "max_seconds", "ema_decay")
        out = {k: getattr(self, k) for k in keys}
        out["hidden"] = list(self.hidden)
        return out

    def new_net(self) -> ElementNets:
        """An untrained network of this configuration, in the model dtype."""
        torch.manual_seed(self.seed)
        net = ElementNets(len(self.descriptor.species), self.descriptor.n_features,
                          self.hidden, self.activation)
        return net.to(DTYPES[self.dtype]).to(self.device)

    # -- fitting -------------------------------------------------------------------------------
    def make_dataset(self, images: Sequence[ase.Atoms], **kwargs) -> StructureDataset:
        """The training dataset for ``images`` (Jacobian included when training on forces)."""
        return StructureDataset(images, self.descriptor, jacobian=self.force_weight > 0,
                                dtype=DTYPES[self.dtype], **kwargs)

    def fit(
        self,
        images: Sequence[ase.Atoms] | StructureDataset,
        valid: Sequence[ase.Atoms] | StructureDataset | None = None,
        log: Callable[[dict], None] | None = None,
    ) -> HDNNPotential:
        """Train on labelled structures (or a prepared dataset); ``valid`` for early stopping.

        Without ``valid``, ``valid_fraction`` of the structures is held out at random.
        ``log`` is called with each epoch's record (also kept in ``history_``).
        """
        data = images if isinstance(images, StructureDataset) else self.make_dataset(images)
        if valid is None:
            return self.fit_subset(data, np.arange(len(data)), log=log)
        vdata = valid if isinstance(valid, StructureDataset) else self.make_dataset(valid)
        return self.fit_indices(data, np.arange(len(data)), None, valid_data=vdata, log=log)

    def fit_subset(self, data: StructureDataset, idx, log=None) -> HDNNPotential:
        """Train on ``data[idx]``, holding ``valid_fraction`` of it out (drawn with ``seed``)
        for early stopping."""
        idx = np.asarray(idx, dtype=np.int64)
        order = np.random.default_rng(self.seed).permutation(idx)
        n_valid = int(round(self.valid_fraction * len(idx))) if len(idx) > 4 else 0
        return self.fit_indices(data, np.sort(order[n_valid:]), np.sort(order[:n_valid]), log=log)

    def fit_indices(self, data, train_idx, valid_idx, valid_data=None, log=None):
        """Train on ``data[train_idx]``, early-stopping on ``data[valid_idx]`` (or
        ``valid_data``); datasets are shared, so a committee computes descriptors once."""
        use_f = self.force_weight > 0 and data.has_jacobian and bool(data.force_mask.any())
        if self.force_weight > 0 and not data.has_jacobian:
            raise ParameterError("force training needs a dataset built with jacobian=True")
        train = torch.utils.data.Subset(data, list(map(int, train_idx)))
        if valid_data is not None:
            valid = valid_data
        elif valid_idx is not None and len(valid_idx):
            valid = torch.utils.data.Subset(data, list(map(int, valid_idx)))
        else:
            valid = None
        net = self.new_net()
        self._set_stats(net, data, train_idx)
        gen = torch.Generator().manual_seed(self.seed)
        loader = torch.utils.data.DataLoader(
            train, batch_size=self.batch_size, shuffle=True, collate_fn=collate, generator=gen
        )
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=0.5, patience=self.lr_patience
        )
        ema = WeightAverage(net, self.ema_decay)  # validated, early-stopped and kept
        stop = EarlyStopping(self.patience, initial_state=net.state_dict())
        t0 = time.monotonic()
        self.history_ = []
        for epoch in range(1, self.epochs + 1):
            net.train()
            sums = np.zeros(4)
            for batch in loader:
                batch = _to(batch, self.device)
                se, ne, sf, nf = _batch_errors(net, batch, use_f, create_graph=True)
                loss = self.energy_weight * se / ne
                if use_f and nf:
                    loss = loss + self.force_weight * sf / nf
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                ema.update(net)
                sums += [float(se.detach()), ne, float(sf.detach()), nf]
            record = {"epoch": epoch, "lr": opt.param_groups[0]["lr"],
                      **_rmse("train", sums)}
            vsums = self._errors(ema.module, valid, use_f) if valid is not None else sums
            if valid is not None:
                record.update(_rmse("valid", vsums))
            vloss = self.energy_weight * vsums[0] / max(vsums[1], 1) + (
                self.force_weight * vsums[2] / vsums[3] if use_f and vsums[3] else 0.0
            )
            record["loss"] = float(vloss)
            record["seconds"] = time.monotonic() - t0
            stop.step(vloss, ema.state_dict())
            record["best"] = float(stop.best)
            self.history_.append(record)
            if log is not None:
                log(record)
            sched.step(vloss)
            out_of_time = self.max_seconds is not None and record["seconds"] > self.max_seconds
            if stop.should_stop or opt.param_groups[0]["lr"] < self.lr_min or out_of_time:
                break
        stop.restore(net)
        net.eval()
        self.net_ = net
        return self

    def _set_stats(self, net: ElementNets, data: StructureDataset, train_idx) -> None:
        stats = data.stats(train_idx)
        with torch.no_grad():
            net.mean.copy_(stats["mean"])
            net.std.copy_(stats["std"])
            net.ref.copy_(stats["ref"])
            net.scale.fill_(max(stats["scale"], 1e-3))

    def _errors(self, net, dataset, use_f) -> np.ndarray:
        loader = torch.utils.data.DataLoader(dataset, batch_size=32, collate_fn=collate)
        sums = np.zeros(4)
        with torch.set_grad_enabled(use_f):
            for batch in loader:
                se, ne, sf, nf = _batch_errors(net, _to(batch, self.device), use_f, False)
                sums += [float(se.detach()), ne, float(sf.detach()), nf]
        return sums

    # -- prediction ----------------------------------------------------------------------------
    def energy(
        self, g: torch.Tensor, types: torch.Tensor, structure: torch.Tensor, n_structures: int
    ) -> torch.Tensor:
        """Total energies (S,) of a flat batch from its descriptors (differentiable)."""
        check_fitted(self.net_ is not None)
        return self.net_(g.to(self.device), types.to(self.device), structure.to(self.device),
                         n_structures).to(g.device)

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The fitted network's tensors, each name prefixed ``net.``."""
        return net_state(self, "net.")

    def load_state(self, state: dict) -> HDNNPotential:
        """Load tensors written by :meth:`state_dict`; returns the model."""
        load_net(self, state, "net.")
        return self

    def training_summary(self) -> dict:
        """``{"training": [one record]}``: epochs run, best epoch, its validation RMSEs, time."""
        return {"training": [history_summary(self.history_)]}


def _to(batch: dict, device: str) -> dict:
    if device == "cpu":
        return batch
    return {k: v.to(device) for k, v in batch.items()}


def _rmse(prefix: str, sums: np.ndarray) -> dict:
    out = {f"{prefix}_energy_rmse": 1000 * float(np.sqrt(sums[0] / max(sums[1], 1)))}
    if sums[3]:
        out[f"{prefix}_force_rmse"] = float(np.sqrt(sums[2] / sums[3]))
    return out
