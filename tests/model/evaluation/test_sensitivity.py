"""Prompt sensitivity tells a method that follows its click from one that marks every target."""

import numpy as np
import pytest

from model.evaluation.sensitivity import MIN_OTHER_VOXELS, other_targets, prompt_sensitivity

SHAPE = (40, 40, 40)


def _crop_with_three_cubes():
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[5:15, 5:15, 5:15] = 1
    labels[25:35, 5:15, 5:15] = 2
    labels[5:15, 25:35, 25:35] = 3
    return np.zeros(SHAPE, dtype=np.float32), labels


class _ClickedComponent:
    """Oracle that follows the click: the labelled structure under the (last) positive click."""

    def __init__(self, labels):
        self.labels = labels

    def start(self, patch):
        self.patch = patch

    def step(self, points, labels):
        z, y, x = (int(v) for v in points[-1])
        return (self.labels == self.labels[z, y, x]).astype(np.float32)


class _EveryTarget:
    """Ignores the click: marks every labelled structure."""

    def __init__(self, labels):
        self.labels = labels

    def start(self, patch):
        pass

    def step(self, points, labels):
        return (self.labels > 0).astype(np.float32)


def test_a_method_that_follows_the_click():
    patch, labels = _crop_with_three_cubes()
    scores = prompt_sensitivity(_ClickedComponent(labels), patch, labels == 2, labels, 2)
    assert scores == {"on_target": 1.0, "on_others": 0.0, "moved_follow": 1.0, "moved_change": 1.0}


def test_a_method_that_ignores_the_click():
    patch, labels = _crop_with_three_cubes()
    scores = prompt_sensitivity(_EveryTarget(labels), patch, labels == 2, labels, 2)
    assert scores["on_target"] == pytest.approx(1 / 3)
    assert scores["on_others"] == pytest.approx(2 / 3)
    assert scores["moved_change"] == 0.0
    assert scores["moved_follow"] == pytest.approx(2 * 1000 / (1000 + 3000))


def test_the_largest_other_target_is_the_one_clicked_after_the_move():
    patch, labels = _crop_with_three_cubes()
    labels[5:15, 25:35, 25:38] = 3  # now larger than cube 1
    scores = prompt_sensitivity(_ClickedComponent(labels), patch, labels == 1, labels, 1)
    assert scores["moved_follow"] == 1.0


def test_crops_without_another_target_are_not_measured():
    patch, labels = _crop_with_three_cubes()
    alone = np.where(labels == 2, 2, 0).astype(np.uint8)
    assert prompt_sensitivity(_EveryTarget(alone), patch, alone == 2, alone, 2) is None
    tiny = alone.copy()
    tiny.reshape(-1)[: MIN_OTHER_VOXELS - 1] = 5  # the first rows, away from the cube
    assert other_targets(tiny, 2) is None
    tiny.reshape(-1)[MIN_OTHER_VOXELS - 1] = 5
    assert other_targets(tiny, 2).sum() == MIN_OTHER_VOXELS
