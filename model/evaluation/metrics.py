"""Segmentation scores: Dice, normalised surface Dice (NSD), and their area under the click curve.

Masks are boolean (z, y, x) arrays on one grid; spacings are in mm and in the same (z, y, x) order
as the arrays (a SimpleITK spacing, which is (x, y, z), must be reversed first).

Conventions for degenerate cases, the same for both scores: an empty prediction of an empty
target scores 1, and exactly one empty mask scores 0.

Area under the click curve (the CVPR 2025 interactive challenge's DSC AUC and NSD AUC): with
scores s_1..s_K after clicks 1..K, the trapezoidal area over click numbers 1..K divided by its
width K - 1, i.e. ``(s_1/2 + s_2 + ... + s_{K-1} + s_K/2) / (K - 1)``; for K = 1 it is s_1. The
division keeps the value in [0, 1] and comparable across click budgets: a method that is perfect
from the first click scores 1. The challenge's own scoring integrates without dividing (its value
equals ours times K - 1).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from monai.metrics import compute_surface_dice

NSD_TOLERANCE_MM = 2.0


def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred, dtype=bool), np.asarray(target, dtype=bool)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    return pred, target


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    """Dice coefficient 2|P∩T| / (|P| + |T|) of two boolean (z, y, x) masks; 1 when both are empty."""
    pred, target = _pair(pred, target)
    total = int(pred.sum()) + int(target.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, target).sum()) / total


def normalized_surface_dice(
    pred: np.ndarray,
    target: np.ndarray,
    spacing_zyx,
    tolerance_mm: float = NSD_TOLERANCE_MM,
) -> float:
    """Normalised surface Dice of two boolean (z, y, x) masks, computed by MONAI.

    The fraction of boundary voxels of either mask that lie within `tolerance_mm` (Euclidean, in mm
    using `spacing_zyx`) of the other mask's boundary, by ``monai.metrics.compute_surface_dice``.
    MONAI's boundary voxels are the mask voxels that one binary erosion (6-neighbourhood) removes.

    Args:
        pred, target (ndarray): (D, H, W) bool.
        spacing_zyx (sequence of 3 floats): voxel size in mm along (z, y, x).
        tolerance_mm (float): accepted boundary deviation in mm (2 mm in the CVPR 2025 challenge).
    """
    pred, target = _pair(pred, target)
    has_pred, has_target = bool(pred.any()), bool(target.any())
    if not (has_pred and has_target):
        return 1.0 if has_pred == has_target else 0.0
    with warnings.catch_warnings():
        # MONAI 1.6 passes a deprecated argument to its own edge finder; nothing for callers to change.
        warnings.simplefilter("ignore", FutureWarning)
        value = compute_surface_dice(
            torch.from_numpy(pred)[None, None].float(),
            torch.from_numpy(target)[None, None].float(),
            class_thresholds=[float(tolerance_mm)],
            include_background=True,
            spacing=[float(s) for s in spacing_zyx],
        )
    return float(value.reshape(-1)[0])


def click_curve_auc(scores) -> float:
    """Normalised area under a score-vs-click curve (see the module docstring).

    Args:
        scores (sequence of float): score after click 1, 2, ..., K (K >= 1).
    """
    values = np.asarray(scores, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("need one score per click, at least one click")
    if values.size == 1:
        return float(values[0])
    return float((values[:-1] + values[1:]).sum() / 2.0 / (values.size - 1))
