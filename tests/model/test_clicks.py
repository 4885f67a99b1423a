"""Click simulation: training, paper and challenge rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.clicks import challenge_click, device_training_clicks, paper_click, training_clicks

# The host loop (CPU tensors) and the sync-free rule used for tensors on a GPU, run here on CPU tensors.
RULES = pytest.mark.parametrize("rule", [training_clicks, device_training_clicks], ids=["host", "device"])


def _box(shape, low, high) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(a, b) for a, b in zip(low, high))] = True
    return mask


def _generators(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@RULES
def test_training_clicks_fall_in_the_error_region_with_the_right_sign(rule):
    target = torch.from_numpy(_box((16, 16, 16), (2, 2, 2), (10, 10, 10)))
    pred = torch.from_numpy(_box((16, 16, 16), (6, 6, 6), (14, 14, 14)))
    fn, fp = target & ~pred, pred & ~target
    batch_pred, batch_target = pred[None, None].repeat(64, 1, 1, 1, 1), target[None, None].repeat(64, 1, 1, 1, 1)
    points, labels = rule(batch_pred, batch_target, _generators(range(64)))
    assert points.shape == (64, 1, 3) and points.dtype == torch.float32
    assert labels.shape == (64, 1) and labels.dtype == torch.int64
    signs = set()
    for point, label in zip(points[:, 0].long(), labels[:, 0]):
        z, y, x = point.tolist()
        assert bool(fn[z, y, x]) or bool(fp[z, y, x])
        assert int(label) == (1 if bool(fn[z, y, x]) else 0)
        signs.add(int(label))
    assert signs == {0, 1}


@RULES
def test_training_clicks_without_error_click_the_target_and_on_empty_targets_click_negative(rule):
    target = torch.from_numpy(_box((8, 8, 8), (2, 3, 4), (4, 5, 6)))
    empty = torch.zeros(8, 8, 8, dtype=torch.bool)
    pred = torch.stack([target, empty])[:, None]
    truth = torch.stack([target, empty])[:, None]
    points, labels = rule(pred, truth, _generators([0, 1]))
    z, y, x = points[0, 0].long().tolist()
    assert bool(target[z, y, x]) and labels[0, 0] == 1
    assert labels[1, 0] == 0 and bool((points[1, 0] >= 0).all()) and bool((points[1, 0] < 8).all())


@RULES
def test_training_clicks_do_not_depend_on_batch_position(rule):
    rng = np.random.default_rng(0)
    preds = torch.from_numpy(rng.random((3, 1, 12, 12, 12)) > 0.5)
    targets = torch.from_numpy(rng.random((3, 1, 12, 12, 12)) > 0.5)
    whole, whole_labels = rule(preds, targets, _generators([10, 11, 12]))
    last, last_labels = rule(preds[2:], targets[2:], _generators([12]))
    assert torch.equal(whole[2:], last) and torch.equal(whole_labels[2:], last_labels)
    again, _ = rule(preds, targets, _generators([10, 11, 12]))
    assert torch.equal(whole, again)


def test_device_rule_draws_uniformly_from_the_error_region():
    target = torch.from_numpy(_box((10, 10, 10), (2, 2, 2), (7, 7, 7)))
    pred = torch.from_numpy(_box((10, 10, 10), (4, 4, 4), (9, 9, 9)))
    errors = int((target ^ pred).sum())
    hits = torch.zeros(10, 10, 10)
    for seed in range(3 * errors):
        points, _ = device_training_clicks(pred[None, None], target[None, None], _generators([seed]))
        z, y, x = points[0, 0].long().tolist()
        hits[z, y, x] += 1
    assert not hits[~(target ^ pred)].any()
    # 3 draws per voxel: about 95% of the voxels are drawn at least once under a uniform choice.
    assert (hits[target ^ pred] > 0).float().mean() > 0.9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_training_clicks_use_the_device_rule_and_stay_there():
    rng = np.random.default_rng(1)
    preds = torch.from_numpy(rng.random((4, 1, 16, 16, 16)) > 0.5)
    targets = torch.from_numpy(rng.random((4, 1, 16, 16, 16)) > 0.6)
    points, labels = training_clicks(preds.cuda(), targets.cuda(), _generators(range(4)))
    expected_points, expected_labels = device_training_clicks(preds, targets, _generators(range(4)))
    assert points.is_cuda and labels.is_cuda
    assert torch.equal(points.cpu(), expected_points) and torch.equal(labels.cpu(), expected_labels)


def test_training_clicks_reject_mismatched_inputs():
    with pytest.raises(ValueError, match="one generator per sample"):
        training_clicks(torch.zeros(2, 1, 4, 4, 4, dtype=torch.bool), torch.zeros(2, 1, 4, 4, 4, dtype=torch.bool), _generators([0]))


def test_paper_click_first_inside_the_target_then_in_the_errors():
    target = _box((20, 20, 20), (5, 5, 5), (12, 12, 12))
    rng = np.random.default_rng(3)
    firsts = [paper_click(None, target, rng) for _ in range(50)]
    assert all(label == 1 and target[tuple(point.astype(int))] for point, label in firsts)
    assert len({tuple(p) for p, _ in firsts}) > 10
    pred = _box((20, 20, 20), (8, 8, 8), (16, 16, 16))
    labels = set()
    for _ in range(100):
        point, label = paper_click(pred, target, rng)
        index = tuple(point.astype(int))
        assert pred[index] != target[index]
        assert label == int(target[index])
        labels.add(label)
    assert labels == {0, 1}


def test_paper_click_is_seeded_and_refuses_empty_targets():
    target = _box((10, 10, 10), (2, 2, 2), (7, 7, 7))
    a = paper_click(None, target, np.random.default_rng(5))
    b = paper_click(None, target, np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    with pytest.raises(ValueError, match="empty"):
        paper_click(None, np.zeros((4, 4, 4), bool), np.random.default_rng(0))


def test_challenge_first_click_is_the_centre_of_the_largest_target_component():
    target = _box((30, 30, 30), (2, 2, 2), (5, 5, 5)) | _box((30, 30, 30), (10, 12, 14), (21, 23, 25))
    point, label = challenge_click(None, target)
    assert label == 1
    assert np.array_equal(point, [15, 17, 19])


def test_challenge_click_picks_the_largest_error_component_and_its_sign():
    target = _box((30, 30, 30), (5, 5, 5), (25, 25, 25))
    # A big over-segmentation slab outside the target and a small hole inside it.
    pred = target.copy()
    pred[5:25, 5:25, 25:30] = True
    pred[14:16, 14:16, 14:16] = False
    point, label = challenge_click(pred, target)
    assert label == 0
    z, y, x = point.astype(int)
    assert 25 <= x < 30 and pred[z, y, x] and not target[z, y, x]
    # The volume edge counts as border: the click sits mid-slab (x = 27), not on the last slice (x = 29).
    assert x == 27
    # Fill the slab: now the hole (a miss) is the only error.
    pred[5:25, 5:25, 25:30] = False
    point, label = challenge_click(pred, target)
    assert label == 1 and target[tuple(point.astype(int))] and not pred[tuple(point.astype(int))]


def test_challenge_click_keeps_misses_and_overshoots_in_separate_components():
    target = _box((20, 20, 20), (2, 2, 2), (10, 10, 10))
    # A 640-voxel overshoot touching a 512-voxel miss: merged, they would make one mostly-miss component.
    pred = _box((20, 20, 20), (2, 2, 10), (10, 10, 20))
    point, label = challenge_click(pred, target)
    index = tuple(point.astype(int))
    assert label == 0 and pred[index] and not target[index]


def test_challenge_click_without_error_clicks_the_target_centre():
    target = _box((12, 12, 12), (3, 3, 3), (8, 8, 8))
    point, label = challenge_click(target.copy(), target)
    assert label == 1 and np.array_equal(point, [5, 5, 5])
