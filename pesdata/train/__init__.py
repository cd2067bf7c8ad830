"""Models trained on store versions: HDNN, linear baseline, committee; fit, CV, calculator."""

from ._evaluate import evaluate, read_target
from ._fit import cross_validate, cv_summary, make_model, predict_metrics, train
from ._predict import predict_images
from .calculator import PesdataCalculator
from .checkpoint import load_model, save_model
from .committee import Committee
from .data import StructureDataset, collate
from .early_stopping import EarlyStopping, WeightAverage
from .hdnn import HDNNPotential
from .linear import LinearPotential
from .metrics import error_metrics
from .registry import Potential, get_model_class, model_kinds, register

__all__ = [
    "Committee",
    "EarlyStopping",
    "HDNNPotential",
    "LinearPotential",
    "PesdataCalculator",
    "Potential",
    "StructureDataset",
    "collate",
    "cross_validate",
    "cv_summary",
    "error_metrics",
    "evaluate",
    "get_model_class",
    "load_model",
    "make_model",
    "model_kinds",
    "predict_images",
    "predict_metrics",
    "read_target",
    "register",
    "save_model",
    "train",
    "WeightAverage",
]
