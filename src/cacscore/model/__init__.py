"""The segmentation model: the paper's 3-D residual U-Net, its plan, ensemble inference.

Torch is imported by this package; import it only where the model is needed.
"""

from __future__ import annotations

from cacscore.model.ensemble import Ensemble, EnsemblePrediction, load_ensemble, score_with_model
from cacscore.model.network import (
    HEAD_CLASSES,
    ResUNet3d,
    count_parameters,
    segmentation_loss,
    soft_dice_loss,
)
from cacscore.model.plan import HEAD_CLASS_CODES, MODEL_DIR_ENV, PLAN_VERSION, Plan, default_model_dir
from cacscore.model.postprocess import majority_artery_per_lesion, remove_small_lesions
from cacscore.model.weights import load_member, save_member

__all__ = [
    "HEAD_CLASSES",
    "HEAD_CLASS_CODES",
    "MODEL_DIR_ENV",
    "PLAN_VERSION",
    "Ensemble",
    "EnsemblePrediction",
    "Plan",
    "ResUNet3d",
    "count_parameters",
    "default_model_dir",
    "load_ensemble",
    "load_member",
    "majority_artery_per_lesion",
    "remove_small_lesions",
    "save_member",
    "score_with_model",
    "segmentation_loss",
    "soft_dice_loss",
]
