"""Error and committee criteria, trust windows and the validity checks of selection.

References are independent: errors recomputed with numpy from ``model.predict`` and the EMT
labels, committee spreads from each member's own predictions, overlap messages from curate's
validator run on a curate :class:`~pesdata.frames.Frame`, formulas reduced by ASE.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.units import fs

from pesdata.curate import MinDistanceValidator
from pesdata.descriptors import from_config
from pesdata.errors import InputError, ParameterError
from pesdata.frames import Frame
from pesdata.select.checks import invalid_reasons
from pesdata.select.committee import CommitteeCriterion
from pesdata.select.error import ErrorCriterion, weights_sha256
from pesdata.select.registry import get_criterion
from pesdata.select.trust import DEFAULTS, TrustWindows
from pesdata.testing import CriterionTests
from pesdata.train import Committee, HDNNPotential, save_model

from .conftest import DATA, emt

# Radial terms only: the force backward pass through angular terms would dominate the run time.
DESC = from_config({"descriptor": "acsf", "species": ["Cu"], "r_cut": 4.5, "g4_params": [],
                    "g2_params": [[0.5, 2.5], [1.0, 3.0], [0.3, 4.0], [0.05, 0.0]]})
_MODELS: dict = {}


def undertrained() -> HDNNPotential:
    """An HDNN trained 3 epochs on 6 EMT Cu cells: off by eV/Å on any frame."""
    if "hdnn" not in _MODELS:
        _MODELS["hdnn"] = HDNNPotential(DESC, dtype="float64", hidden=(8,), epochs=3,
                                        force_weight=0.1).fit(emt(6, 1))
    return _MODELS["hdnn"]


def _label(atoms: Atoms) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = EMT()
    e, f = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f)
    return atoms


def md_frames(temperature: float, n: int, seed: int, every: int = 10) -> list[Atoms]:
    """``n`` EMT-labelled snapshots of Langevin MD of 32-atom fcc Cu at ``temperature``."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    atoms.calc = EMT()
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dyn = Langevin(atoms, 5 * fs, temperature_K=temperature, friction=0.02, rng=rng,
                   fixcm=False)
    out = []
    for _ in range(n):
        dyn.run(every)
        out.append(_label(atoms))
    return out


def familiar_and_novel() -> tuple[list, list, list]:
    """Cu 300 K training frames, more 300 K frames, and novel frames (1500 K, vacancy, slab)."""
    if "md" not in _MODELS:
        md300 = md_frames(300, 24, seed=1)
        hot = md_frames(1500, 4, seed=2, every=40)
        vac = []
        for k, atoms in enumerate(md_frames(300, 2, seed=3)):
            del atoms[[k, 17]]  # two vacancies
            vac.append(_label(atoms))
        slab = fcc111("Cu", (2, 2, 4), a=3.61, vacuum=6.0, periodic=True)
        slab.rattle(0.05, seed=4)
        _MODELS["md"] = (md300[:16], md300[16:], [*hot, *vac, _label(slab)])
    return _MODELS["md"]


def committee() -> Committee:
    if "committee" not in _MODELS:
        train, _, _ = familiar_and_novel()
        _MODELS["committee"] = Committee(DESC, n_members=3, dtype="float64", hidden=(8,),
                                         epochs=15, force_weight=0.1).fit(train)
    return _MODELS["committee"]


# -- the shared contract -----------------------------------------------------------------------

class TestErrorContract(CriterionTests):
    criterion_factory = staticmethod(lambda: ErrorCriterion(undertrained()))
    reference_factory = staticmethod(lambda: None)
    candidates_factory = staticmethod(lambda: emt(4, 5))


class TestCommitteeContract(CriterionTests):
    criterion_factory = staticmethod(lambda: CommitteeCriterion(committee()))
    reference_factory = staticmethod(lambda: None)
    candidates_factory = staticmethod(lambda: familiar_and_novel()[1][:3])


def test_registry_finds_both():
    assert get_criterion("error") is ErrorCriterion
    assert get_criterion("committee") is CommitteeCriterion


# -- error criterion ---------------------------------------------------------------------------

def test_error_values_are_model_minus_labels_and_off_frames_are_candidates(tmp_path):
    model = undertrained()
    cands = emt(8, 5)
    scores = ErrorCriterion(model).fit().score(cands)
    e_pred, f_pred = model.predict(cands, forces=True)
    e_ref = np.array([abs(e - a.get_potential_energy()) / len(a)
                      for e, a in zip(e_pred, cands, strict=True)])
    f_ref = np.array([np.linalg.norm(f - a.get_forces(), axis=1).max()
                      for f, a in zip(f_pred, cands, strict=True)])
    np.testing.assert_allclose(scores["energy_error"], e_ref, rtol=1e-12)
    np.testing.assert_allclose(scores["force_error"], f_ref, rtol=1e-12)
    # three frames' worth of rattled EMT Cu is far beyond the default window's lo (0.3 eV/Å)
    assert f_ref.min() > DEFAULTS["error"]["f_lo"] and f_ref.max() < DEFAULTS["error"]["f_hi"]
    judged = ErrorCriterion.judge(scores, ErrorCriterion(model).fit().thresholds_)
    assert (judged["verdict"] == "candidate").all()
    # a window cut through the observed errors: each frame lands where numpy says
    f_lo, f_hi = np.quantile(f_ref, [0.3, 0.7])
    crit = ErrorCriterion(model, trust={"default": {"e_lo": 1.0, "e_hi": None,
                                                    "f_lo": f_lo, "f_hi": f_hi}}).fit()
    judged = ErrorCriterion.judge(scores, crit.thresholds_)
    want = np.where(f_ref >= f_hi, "failed", np.where(f_ref >= f_lo, "candidate", "accurate"))
    assert list(judged["verdict"]) == list(want) and len(set(want)) == 3
    np.testing.assert_allclose(judged["value"], np.maximum(e_ref / 1.0, f_ref / f_lo))
    assert (judged["e_hi"] == math.inf).all() and (judged["trust"] == "default").all()
    k = int(np.argmax(f_ref))
    assert judged["reason"][k] == f"force error {f_ref[k]:.3g} eV/Å ≥ hi {f_hi:g}: unphysical"
    # a model directory: the card's weights hash, which is what hashing the weights gives
    card = save_model(model, tmp_path / "m")
    crit = ErrorCriterion(tmp_path / "m").fit()
    assert crit.model_hash_ == card["weights_sha256"] == weights_sha256(model)
    np.testing.assert_allclose(crit.score(cands)["force_error"], f_ref, rtol=1e-12)
    assert set(crit.score(cands)["model_hash"]) == {card["weights_sha256"]}


def test_missing_and_non_finite_labels_and_predictions():
    model = undertrained()
    good, nan_e, nan_f, none, e_only = emt(5, 6)
    nan_e.calc.results["energy"] = float("nan")
    nan_f.calc.results["forces"][3, 1] = np.inf
    none.calc = None
    e_only.calc = SinglePointCalculator(e_only, energy=e_only.get_potential_energy())
    he = Atoms("CuH", positions=[[0, 0, 0], [1.5, 0, 0]], cell=[8, 8, 8], pbc=True)
    he.calc = SinglePointCalculator(he, energy=-1.0, forces=np.zeros((2, 3)))
    frames = [good, nan_e, nan_f, none, e_only, he]
    crit = ErrorCriterion(model).fit()
    scores = crit.score(frames)
    judged = ErrorCriterion.judge(scores, crit.thresholds_)
    assert list(judged["verdict"]) == ["candidate", "failed", "failed", None, "candidate", None]
    assert "energy error is not finite" in judged["reason"][1]
    assert "force error is not finite" in judged["reason"][2]
    assert judged["reason"][3] == "not judged: no label"
    assert np.isnan(scores["force_error"][4]) and np.isfinite(scores["energy_error"][4])
    assert scores["model_hash"][5] is None and "not applied" in judged["reason"][5]
    word = emt(1, 9)[0]
    word.calc.results["energy"] = "n/a"  # a label that is not a number fails, never crashes
    assert ErrorCriterion.judge(crit.score([word]), crit.thresholds_)["verdict"][0] == "failed"
    # a model whose prediction is NaN fails every frame, labelled or not, with the reason
    broken = copy.deepcopy(model)
    with torch.no_grad():
        next(broken.net_.parameters()).fill_(float("nan"))
    crit = ErrorCriterion(broken).fit()
    judged = ErrorCriterion.judge(crit.score([good, e_only, none]), crit.thresholds_)
    assert list(judged["verdict"]) == ["failed", "failed", "failed"]
    assert "not finite" in judged["reason"][0] and "not finite" in judged["reason"][2]
    # NaN positions never reach the model: the frame fails
    bad = good.copy()
    bad.calc = SinglePointCalculator(bad, **good.calc.results)
    bad.positions[2] = np.nan
    crit = ErrorCriterion(model).fit()
    assert ErrorCriterion.judge(crit.score([bad]), crit.thresholds_)["verdict"][0] == "failed"


def test_permuting_atoms_keeps_the_scores():
    frames = emt(3, 8)
    rng = np.random.default_rng(0)
    permuted = []
    for atoms in frames:
        order = rng.permutation(len(atoms))
        p = atoms[order]
        p.calc = SinglePointCalculator(p, energy=atoms.get_potential_energy(),
                                       forces=atoms.get_forces()[order])
        permuted.append(p)
    for crit in (ErrorCriterion(undertrained()), CommitteeCriterion(committee())):
        crit.fit()
        a, b = crit.score(frames), crit.score(permuted)
        for col in crit.columns[:2]:
            np.testing.assert_allclose(a[col], b[col], rtol=1e-9)


def test_unfitted_and_wrong_models_are_refused():
    with pytest.raises(ParameterError, match="not fitted"):
        ErrorCriterion(undertrained()).score(emt(1, 0))
    with pytest.raises(ParameterError, match="expected a committee model"):
        CommitteeCriterion(undertrained()).fit()
    with pytest.raises(ParameterError, match="model must be"):
        ErrorCriterion(42).fit()
    with pytest.raises(ParameterError):  # an unfitted HDNN has no weights to hash or use
        ErrorCriterion(HDNNPotential(DESC)).fit()


# -- committee ---------------------------------------------------------------------------------

def test_committee_disagrees_more_on_novel_frames():
    com = committee()
    _, familiar, novel = familiar_and_novel()
    crit = CommitteeCriterion(com).fit()
    fam, nov = crit.score(familiar), crit.score(novel)
    # independent reference: each member's own predictions, spread computed with numpy
    runs = [m.predict(novel, forces=True) for m in com.members]
    n = np.array([len(a) for a in novel])
    e_ref = np.std([e / n for e, _ in runs], axis=0)
    f_ref = [np.sqrt(np.stack([f[s] for _, f in runs]).var(0).sum(1)).max()
             for s in range(len(novel))]
    np.testing.assert_allclose(nov["energy_std"], e_ref, rtol=1e-9)
    np.testing.assert_allclose(nov["force_std"], f_ref, rtol=1e-9)
    assert nov["force_std"].mean() > fam["force_std"].mean()
    assert nov["energy_std"].mean() > fam["energy_std"].mean()
    # frame by frame: every novel frame stands further beyond its window than any familiar one
    judged = CommitteeCriterion.judge(nov, crit.thresholds_)
    assert judged["value"].min() > CommitteeCriterion.judge(fam, crit.thresholds_)["value"].max()
    assert all(" spread " in r for r in judged["reason"])
    assert crit.thresholds_["default"] == DEFAULTS["committee"]


# -- trust windows -----------------------------------------------------------------------------

def test_trust_window_precedence_and_partial_overrides():
    trust = TrustWindows({"f_lo": 0.2}, config_type={"slab": {"f_hi": 0.9}},
                         formula={"Ti8O16": {"e_lo": 0.02, "f_lo": 0.4}})
    base = {**DEFAULTS["error"], "f_lo": 0.2}
    assert trust.window() == ("default", base)
    assert trust.window(None, "Ti2O4") == ("formula=O2Ti", {**base, "e_lo": 0.02, "f_lo": 0.4})
    assert trust.window("slab", "TiO2") == ("config_type=slab", {**base, "f_hi": 0.9})
    assert trust.window("bulk", "Cu32") == ("default", base)
    # the judge reads each row's window from its config_type / formula columns
    scores = pd.DataFrame({"energy_error": [0.015, 0.015, 0.0], "force_error": [0.3, 0.3, 0.95],
                           "model_hash": ["h"] * 3, "config_type": [None, None, "slab"],
                           "formula": ["Cu32", "O32Ti16", "O2Ti"]})
    th = {**trust.to_dict(), "columns": {"energy": "energy_error", "force": "force_error"}}
    judged = ErrorCriterion.judge(scores, th)
    assert list(judged["trust"]) == ["default", "formula=O2Ti", "config_type=slab"]
    assert list(judged["verdict"]) == ["candidate", "accurate", "failed"]
    assert list(judged["f_lo"]) == [0.2, 0.4, 0.2] and judged["f_hi"][2] == 0.9
    with pytest.raises(ParameterError, match="'config_type' column"):
        ErrorCriterion.judge(scores.drop(columns="config_type"), th)


def test_judge_boundaries_lo_inclusive_hi_failed():
    th = {"default": {"e_lo": 0.01, "e_hi": 0.1, "f_lo": 0.5, "f_hi": 1.0},
          "columns": {"energy": "energy_error", "force": "force_error"}}
    scores = pd.DataFrame({"energy_error": [0.0, 0.01, 0.1, np.nan, np.nan],
                           "force_error": [0.49, 0.2, 0.2, 3.2, np.nan],
                           "model_hash": ["h"] * 5})
    judged = ErrorCriterion.judge(scores, th)
    assert list(judged["verdict"]) == ["accurate", "candidate", "failed", "failed", None]
    assert judged["reason"][3] == "force error 3.2 eV/Å ≥ hi 1: unphysical"
    assert judged["reason"][0] == ("energy error 0 eV/atom < lo 0.01; "
                                   "force error 0.49 eV/Å < lo 0.5")


def test_update_thresholds_changes_the_default_window():
    crit = ErrorCriterion(undertrained(), trust={"config_type": {"md": {"f_lo": 0.6}}}).fit()
    new = ErrorCriterion.update_thresholds(crit.thresholds_, f_lo=0.05, e_hi=None)
    assert new["default"] == {**DEFAULTS["error"], "f_lo": 0.05, "e_hi": None}
    assert new["config_type"] == {"md": {"f_lo": 0.6}} and new["columns"] == crit.thresholds_[
        "columns"]
    with pytest.raises(ParameterError, match="no threshold"):
        ErrorCriterion.update_thresholds(crit.thresholds_, novelty=1.0)
    with pytest.raises(ParameterError, match="f_lo .* must be below f_hi"):
        ErrorCriterion.update_thresholds(crit.thresholds_, f_lo=9.0)
    with pytest.raises(ParameterError, match="e_lo must be a finite number ≥ 0, got nan"):
        ErrorCriterion.update_thresholds(crit.thresholds_, e_lo=float("nan"))


def test_trust_files_json_round_trip_and_errors(tmp_path):
    yml = tmp_path / "trust.yaml"
    yml.write_text("default: {f_lo: 0.1, f_hi: .inf}\nconfig_type:\n  slab: {f_hi: 0.6}\n"
                   "formula:\n  H4O2: {e_lo: 0.002}\n")
    trust = TrustWindows.from_file(yml, kind="committee")
    assert trust.default == {**DEFAULTS["committee"], "f_lo": 0.1, "f_hi": None}
    assert trust.formula == {"H2O": {"e_lo": 0.002}}
    doc = json.loads(json.dumps(trust.to_dict(), allow_nan=False))
    assert TrustWindows.from_dict(doc) == trust
    js = tmp_path / "trust.json"
    js.write_text(json.dumps(doc))
    assert TrustWindows.from_file(js) == trust
    assert TrustWindows.from_options(f_lo=0.2, f_hi=math.inf).default == {
        **DEFAULTS["error"], "f_lo": 0.2, "f_hi": None}
    cases = [
        ('{"default": {"f_lo": -1}}', "default/f_lo", "minimum"),
        ('{"config_type": {"slab": {"f_top": 1}}}', "config_type/slab", "f_top"),
        ('{"defaults": {}}', None, "defaults"),
        ('{"config_type": {"slab": {"f_lo": 2.0, "f_hi": 1.0}}}', "config_type/slab",
         "f_lo .* must be below f_hi"),
        ('{"formula": {"Xq2": {"f_lo": 1.0}}}', "formula/Xq2", "not a chemical formula"),
        ('{"default": ', None, "not valid JSON"),
        ("[1, 2]", None, "holds a mapping"),
    ]
    for k, (text, field, message) in enumerate(cases):
        path = tmp_path / f"bad{k}.json"
        path.write_text(text)
        with pytest.raises(InputError, match=message) as info:
            TrustWindows.from_file(path)
        assert info.value.path == str(path) and info.value.field == field, (text, info.value)
    with pytest.raises(InputError, match="cannot read"):
        TrustWindows.from_file(tmp_path / "missing.yaml")


# -- validity checks ---------------------------------------------------------------------------

def test_invalid_reasons_name_atoms_and_values():
    ok = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    ok.rattle(0.05, seed=1)
    close = ok.copy()
    close.positions[5] = close.positions[0] + [0.3, 0.0, 0.0]
    nan_pos = ok.copy()
    nan_pos.positions[3, 0] = np.nan
    inf_cell = ok.copy()
    inf_cell.cell[1, 1] = np.inf
    flat = ok.copy()
    flat.cell[2] = [0.0, 0.0, 0.0]
    singular = ok.copy()
    singular.cell[2] = singular.cell[1]
    molecule = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    reasons = invalid_reasons([ok, close, nan_pos, inf_cell, flat, singular, molecule,
                               Atoms()])
    assert reasons[0] is None and reasons[6] is None
    # the overlap message is curate's own, from its validator on a curate Frame
    issue = MinDistanceValidator().check(Frame.from_atoms(close))[0]
    assert reasons[1] == f"overlap: {issue.message}"
    assert "atoms 0 and 5 are 0.300 Å apart" in reasons[1]
    assert reasons[2].startswith("non_finite: positions of atom(s) 3 are not finite")
    assert "nan" in reasons[2]
    assert reasons[3].startswith("non_finite: cell vector(s) b are not finite")
    assert reasons[4] == "cell: periodic cell vector(s) [2] have zero length"
    assert reasons[5].startswith("cell: cell is near-singular")
    assert reasons[7] == "shape: frame has no atoms"
    # the factor is curate's: 0 turns the check off, a larger one is stricter
    assert invalid_reasons([close], overlap=0)[0] is None
    assert invalid_reasons([ok], overlap=0.95)[0].startswith("overlap: ")
    with pytest.raises(ParameterError, match="overlap must be .* got -1"):
        invalid_reasons([ok], overlap=-1)


def test_invalid_reasons_pass_real_dft_frames():
    frames = read(DATA / "mlearn" / "Si_training.extxyz", "::4")
    assert invalid_reasons(frames) == [None] * len(frames)
