"""Models trained on store versions: HDNN, linear baseline, committee; fit, CV, calculator."""

from ._fit import cross_validate, cv_summary, evaluate, make_model, predict_metrics, train
from ._predict import predict_images
from .calculator import PesdataCalculator
from .checkpoint import load_model, save_model
from .committee import Committee
from .data import StructureDataset, collate
from .hdnn import HDNNPotential
from .linear import LinearPotential
from .metrics import error_metrics

__all__ = [
    "Committee",
    "HDNNPotential",
    "LinearPotential",
    "PesdataCalculator",
    "StructureDataset",
    "collate",
    "cross_validate",
    "cv_summary",
    "error_metrics",
    "evaluate",
    "load_model",
    "make_model",
    "predict_images",
    "predict_metrics",
    "save_model",
    "train",
]
