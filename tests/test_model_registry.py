"""Model kinds through one registry: lookup, one shared predict, checkpoints of the format
written before the registry (built by hand here) still load, early stopping and the weight
average as objects checked against hand computations."""

import hashlib
import io
import json
import math

import numpy as np
import pytest
import torch

from pesdata.descriptors import from_config
from pesdata.errors import ArtefactError, ParameterError
from pesdata.train import (
    Committee,
    EarlyStopping,
    HDNNPotential,
    LinearPotential,
    Potential,
    WeightAverage,
    get_model_class,
    load_model,
    make_model,
    model_kinds,
    save_model,
)

from .conftest import CU_ACSF_SMALL_CONFIG, emt

DESC = from_config(CU_ACSF_SMALL_CONFIG)


def test_kinds_are_found_by_name():
    assert model_kinds()[:3] == ("hdnn", "linear", "committee")
    assert get_model_class("hdnn") is HDNNPotential
    assert get_model_class("linear") is LinearPotential
    assert get_model_class("committee") is Committee
    with pytest.raises(ParameterError, match="unknown model 'gap'; available: hdnn, linear"):
        get_model_class("gap")
    assert isinstance(make_model("linear", DESC, alpha=0.5, device="cpu"), LinearPotential)
    with pytest.raises(ParameterError, match="the hdnn model takes no n_members"):
        make_model("hdnn", DESC, n_members=2)
    with pytest.raises(ParameterError, match="the linear model takes no epochs"):
        make_model("linear", DESC, epochs=3)
    with pytest.raises(ParameterError, match="bad committee parameters"):
        make_model("committee", DESC, colour="red")


@pytest.mark.parametrize("kind", ["hdnn", "linear", "committee"])
def test_an_unfitted_model_is_one_usage_error_for_every_kind(kind, tmp_path):
    model = make_model(kind, DESC)
    message = "the model is not fitted; call fit() first"
    with pytest.raises(ParameterError) as info:
        model.predict(emt(1, 0))
    assert str(info.value) == message
    with pytest.raises(ParameterError) as info:
        model.state_dict()
    assert str(info.value) == message
    with pytest.raises(ParameterError, match="not fitted"):
        save_model(model, tmp_path / "m")
    assert not (tmp_path / "m").exists()


class PerElementMean(Potential):
    """A registered kind of its own: E = Σ_i b_{Z_i}, the least-squares per-element energies."""

    kind = "per-element-mean"

    def __init__(self, descriptor, ridge: float = 0.0):
        self.descriptor, self.ridge = descriptor, ridge

    def params(self):
        return {"ridge": self.ridge}

    def fit(self, images, valid=None, log=None):
        counts = np.array([[np.sum(a.numbers == z) for z in self.descriptor.species]
                           for a in images], float)
        energy = np.array([a.get_potential_energy() for a in images])
        self.b_ = np.linalg.lstsq(counts, energy, rcond=None)[0]
        return self

    def state_dict(self):
        return {"b": torch.as_tensor(self.b_)}

    def load_state(self, state):
        self.b_ = state["b"].numpy()
        return self

    def energy(self, g, types, structure, n_structures):
        per_atom = torch.as_tensor(self.b_, dtype=torch.float64)[types] + 0 * g.sum(1)
        return torch.zeros(n_structures, dtype=torch.float64).index_add(0, structure, per_atom)


def test_a_registered_kind_trains_saves_and_loads(tmp_path):
    from pesdata.train import register, save_model

    register(PerElementMean)
    assert "per-element-mean" in model_kinds()
    model = make_model("per-element-mean", DESC).fit(emt(4, 5))
    save_model(model, tmp_path / "m")
    loaded, card = load_model(tmp_path / "m")
    assert isinstance(loaded, PerElementMean) and card["params"] == {"ridge": 0.0}
    test = emt(2, 6)
    np.testing.assert_array_equal(loaded.predict(test), model.predict(test))
    assert loaded.predict(test)[0] == pytest.approx(32 * model.b_[0])


def test_predict_is_written_once():
    for cls in (HDNNPotential, LinearPotential, Committee):
        assert issubclass(cls, Potential) and cls.predict is Potential.predict


def _linear_state(lin):
    return {"coef": torch.as_tensor(lin.coef_), "scale": torch.as_tensor(lin.scale_)}


def _write_old_checkpoint(path, kind, state, params, descriptor):
    """A model directory exactly as the pre-registry save_model wrote it."""
    path.mkdir()
    buf = io.BytesIO()
    torch.save(state, buf)
    weights = buf.getvalue()
    (path / "model.pt").write_bytes(weights)
    card = {"kind": kind, "descriptor": descriptor.config(),
            "descriptor_hash": descriptor.config_hash,
            "n_weights": int(sum(t.numel() for t in state.values())),
            "weights_sha256": hashlib.sha256(weights).hexdigest(), "params": params,
            "created": "2026-11-01T00:00:00+00:00", "version": 2, "split": None,
            "fold": None, "n_train": 8, "metrics_on": "train",
            "metrics": {"n_structures": 8, "energy_mae": 1.0, "energy_rmse": 1.0,
                        "force_mae": None, "force_rmse": None}}
    (path / "model_card.json").write_text(json.dumps(card, indent=2))


def test_checkpoints_of_the_old_format_still_load(tmp_path):
    train, test = emt(8, 1), emt(2, 2)
    lin = LinearPotential(DESC, force_weight=0.1).fit(train)
    _write_old_checkpoint(tmp_path / "lin", "linear",
                          _linear_state(lin),
                          {"alpha": lin.alpha, "force_weight": lin.force_weight}, DESC)
    hd = HDNNPotential(DESC, hidden=(4,), epochs=2, dtype="float64").fit(train)
    _write_old_checkpoint(tmp_path / "hd", "hdnn",
                          {"net." + k: v for k, v in hd.net_.state_dict().items()},
                          hd.params(), DESC)
    com = Committee(DESC, n_members=2, hidden=(4,), epochs=2, dtype="float64").fit(train)
    _write_old_checkpoint(tmp_path / "com", "committee",
                          {f"member{k}.{n}": v for k, m in enumerate(com.members)
                           for n, v in m.net_.state_dict().items()},
                          {**com.members[0].params(), "n_members": 2}, DESC)
    for name, model in (("lin", lin), ("hd", hd), ("com", com)):
        loaded, card = load_model(tmp_path / name)
        assert type(loaded) is type(model) and card["kind"] == model.kind
        e, f = loaded.predict(test, forces=True)
        e0, f0 = model.predict(test, forces=True)
        np.testing.assert_array_equal(e, e0)
        np.testing.assert_array_equal(np.concatenate(f), np.concatenate(f0))
    # a committee's prediction is its members' mean
    members = np.mean([m.predict(test) for m in com.members], axis=0)
    np.testing.assert_allclose(com.predict(test), members, rtol=1e-12)


def test_a_card_naming_an_unknown_kind_is_refused(tmp_path):
    lin = LinearPotential(DESC).fit(emt(4, 3))
    _write_old_checkpoint(tmp_path / "m", "gap",
                          _linear_state(lin),
                          {"alpha": lin.alpha, "force_weight": 0.0}, DESC)
    with pytest.raises(ArtefactError, match="unknown model kind 'gap'"):
        load_model(tmp_path / "m")


def test_early_stopping_patience_and_best_state():
    net = torch.nn.Linear(2, 1)
    stop = EarlyStopping(patience=3, initial_state=net.state_dict())
    losses = [5.0, 4.0, 4.5, 3.0, 3.1, 3.2, 3.0, 2.0]
    best_weights = None
    for epoch, loss in enumerate(losses, 1):
        with torch.no_grad():
            net.weight.fill_(float(epoch))  # a state that names its epoch
        if stop.step(loss, net.state_dict()):
            best_weights = float(epoch)
        if stop.should_stop:
            break
    # 3.0 at epoch 4, then 3.1, 3.2 and 3.0 (not lower): stopped after epoch 7
    assert epoch == 7 and stop.best == 3.0 and stop.best_epoch == 4 and stop.stale == 3
    assert best_weights == 4.0
    stop.restore(net)
    assert torch.all(net.weight == 4.0)


def test_early_stopping_without_improvement_restores_the_initial_state():
    net = torch.nn.Linear(1, 1)
    with torch.no_grad():
        net.weight.fill_(7.0)
    stop = EarlyStopping(patience=2, initial_state=net.state_dict())
    with torch.no_grad():
        net.weight.fill_(-1.0)
    assert not stop.step(math.nan, net.state_dict())  # NaN never improves
    assert not stop.step(math.nan, net.state_dict()) and stop.should_stop
    stop.restore(net)
    assert float(net.weight.detach()) == 7.0 and stop.best_epoch is None
    with pytest.raises(ParameterError, match="patience must be a positive integer, got 0"):
        EarlyStopping(0)


def test_weight_average_against_a_hand_computation():
    net = torch.nn.Linear(3, 1, bias=False, dtype=torch.float64)
    rng = np.random.default_rng(0)
    values = rng.normal(size=(6, 3))
    with torch.no_grad():
        net.weight.copy_(torch.as_tensor(values[0])[None])
    ema = WeightAverage(net, decay=0.3)
    expected = values[0].copy()
    for t, w in enumerate(values[1:], 1):
        with torch.no_grad():
            net.weight.copy_(torch.as_tensor(w)[None])
        d = min(0.3, (1 + t) / (10 + t))  # 2/11, 3/12, then the cap 0.3
        assert ema.current_decay() == pytest.approx(d)
        ema.update(net)
        expected = d * expected + (1 - d) * w
        np.testing.assert_allclose(ema.module.weight.detach().numpy()[0], expected, rtol=1e-14)
    assert ema.steps == 5 and ema.current_decay() == 0.3
    raw = WeightAverage(net, decay=0.0)  # 0: the average is the current weights
    with torch.no_grad():
        net.weight.mul_(3.0)
    raw.update(net)
    assert torch.equal(raw.module.weight, net.weight)
    for bad in (1.0, -0.1, math.nan):
        with pytest.raises(ParameterError, match="ema_decay must be a finite number in"):
            WeightAverage(net, bad)
