import numpy as np
import pytest

from model.evaluation.metrics import click_curve_auc, dice, normalized_surface_dice


def test_dice_by_hand():
    pred = np.zeros((1, 1, 20), dtype=bool)
    target = np.zeros_like(pred)
    pred[0, 0, 0:10] = True  # 10 voxels
    target[0, 0, 6:12] = True  # 6 voxels, 4 of them shared
    assert dice(pred, target) == pytest.approx(2 * 4 / (10 + 6))
    assert dice(target, target) == 1.0
    assert dice(np.zeros_like(pred), np.zeros_like(pred)) == 1.0
    assert dice(pred, np.zeros_like(pred)) == 0.0


def two_plates() -> tuple[np.ndarray, np.ndarray]:
    """A: a one-voxel plate at z=5. B: the same plate, its half x<10 moved to z=6.

    Every voxel is a boundary voxel. With spacing (3, 1, 1) mm along (z, y, x) and tolerance 2 mm:
    A's voxels at x >= 10 touch B (0 mm), at x = 8, 9 lie 2 and 1 mm from B's voxel at x = 10, at
    x = 5..7 are 3 mm or more away; B's voxels at z=6 are 3 mm from A, those at z=5 are in A.
    NSD = (A within: 50 + 2*10, B within: 50) / (100 + 100) = 0.6.
    """
    a = np.zeros((12, 20, 20), dtype=bool)
    b = np.zeros_like(a)
    a[5, 5:15, 5:15] = True
    b[6, 5:15, 5:10] = True
    b[5, 5:15, 10:15] = True
    return a, b


def test_nsd_by_hand_with_anisotropic_spacing_in_zyx_order():
    a, b = two_plates()
    assert normalized_surface_dice(a, b, (3.0, 1.0, 1.0), 2.0) == pytest.approx(0.6)
    # The 1-voxel shift along z is 1 mm here, within tolerance everywhere.
    assert normalized_surface_dice(a, b, (1.0, 1.0, 3.0), 2.0) == pytest.approx(1.0)
    # A larger tolerance accepts the 3 mm steps too.
    assert normalized_surface_dice(a, b, (3.0, 1.0, 1.0), 3.0) == pytest.approx(1.0)


def test_nsd_of_identical_disjoint_and_empty_masks():
    a = np.zeros((30, 30, 30), dtype=bool)
    a[5:15, 5:15, 5:15] = True
    far = np.roll(a, 12, axis=2)  # 12 voxels away, no boundary within 2 mm
    assert normalized_surface_dice(a, a, (1.5, 1.5, 1.5)) == pytest.approx(1.0)
    assert normalized_surface_dice(a, far, (1.5, 1.5, 1.5)) == pytest.approx(0.0)
    assert normalized_surface_dice(np.zeros_like(a), np.zeros_like(a), (1, 1, 1)) == 1.0
    assert normalized_surface_dice(a, np.zeros_like(a), (1, 1, 1)) == 0.0


def test_click_curve_auc_is_the_normalised_trapezoid():
    assert click_curve_auc([0.2, 0.4, 0.6]) == pytest.approx((0.1 + 0.4 + 0.3) / 2)
    assert click_curve_auc([0.0, 1.0]) == pytest.approx(0.5)
    assert click_curve_auc([1.0] * 5) == pytest.approx(1.0)
    assert click_curve_auc([0.7]) == pytest.approx(0.7)
    with pytest.raises(ValueError):
        click_curve_auc([])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        dice(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))
