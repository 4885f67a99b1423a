"""Prompt sensitivity: does a method segment what was clicked, or whatever looks like a target?

Dice alone cannot tell a model that follows its clicks from one that marks every bright structure in the
crop and is scored on the one that happened to be clicked. So where a crop holds other labelled targets
besides the clicked one (other kept masks of the same image, in the stored label map), each method gets:

* one click at the centre of the clicked target (:func:`model.clicks.challenge_click` on the target):
  ``on_target`` and ``on_others`` are the fractions of its predicted voxels inside the clicked target and
  inside the other targets;
* the same single click moved to the centre of the largest other target in the crop, from a fresh start:
  ``moved_follow`` is the Dice of that prediction against the other target (1: the prediction moved with
  the click), ``moved_change`` is 1 - Dice between the two predictions (0: the click did not matter).

A method that ignores the click scores ``moved_change`` near 0 and ``on_others`` near the others' share
of the targets; one that follows it scores ``on_others`` near 0 and ``moved_follow`` near its Dice.
Arrays are (z, y, x) patch voxels.
"""

from __future__ import annotations

import numpy as np

from model.clicks import POSITIVE, challenge_click
from model.evaluation.metrics import dice

# Other targets must hold at least this many voxels in the crop to be clicked on.
MIN_OTHER_VOXELS = 100
SENSITIVITY_COLUMNS = ("on_target", "on_others", "moved_follow", "moved_change")


def other_targets(labels: np.ndarray, target_value: int) -> np.ndarray | None:
    """Boolean map of the other labelled targets in a crop, or None when none has MIN_OTHER_VOXELS voxels.

    Args:
        labels (ndarray): (D, H, W) stored label values of the crop (0 background).
        target_value (int): the clicked target's label value.
    """
    others = (labels != 0) & (labels != target_value)
    return others if int(others.sum()) >= MIN_OTHER_VOXELS else None


def _single_click(method, patch: np.ndarray, mask: np.ndarray) -> np.ndarray:
    point, _ = challenge_click(None, mask)
    method.start(patch)
    return method.step(point[None].astype(np.float32), np.array([POSITIVE], dtype=np.int64)) >= 0.5


def prompt_sensitivity(method, patch: np.ndarray, target: np.ndarray, labels: np.ndarray, target_value: int):
    """The four scores of the module docstring for one crop, or None when it holds no other target.

    Args:
        method: object with ``start(patch)`` and ``step(points, labels) -> probabilities`` (the protocol's
            methods: the network or the baseline).
        patch (ndarray): (D, H, W) float32 normalised intensities.
        target (ndarray): (D, H, W) bool, the clicked target.
        labels (ndarray): (D, H, W) stored label values of the crop.
        target_value (int): the target's label value in ``labels``.

    Returns:
        dict with SENSITIVITY_COLUMNS (floats), or None.
    """
    others = other_targets(labels, target_value)
    if others is None:
        return None
    values, counts = np.unique(labels[others], return_counts=True)
    other = labels == values[int(np.argmax(counts))]
    clicked = _single_click(method, patch, target)
    moved = _single_click(method, patch, other)
    predicted = max(int(clicked.sum()), 1)
    return {
        "on_target": float((clicked & target).sum() / predicted),
        "on_others": float((clicked & others).sum() / predicted),
        "moved_follow": dice(moved, other),
        "moved_change": 1.0 - dice(clicked, moved),
    }
