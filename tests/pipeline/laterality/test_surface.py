"""Cutting a merged pair whose halves touch along a bent boundary (SYNTHETIC)."""

import numpy as np

from pipeline.geometry import Geometry
from pipeline.laterality.surface import CutSurface, estimate_cut_surface
from pipeline.phantoms import RAS_ON_DISK_DIRECTION
from pipeline.steps.step2_mask_cleaning import find_components


def test_the_cut_follows_the_gaps_and_bends_between_them():
    shape = (40, 20, 60)  # (z, y, x), 1 mm voxels, RAS on disk: world x = -x index
    geometry = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), RAS_ON_DISK_DIRECTION)
    boundary = np.where(np.arange(shape[0]) < 20, 30, 33)  # the halves part at x = 30 or 33, by z
    x = np.arange(shape[2])[None, None, :]
    block = np.zeros(shape, dtype=bool)
    block[:, 5:15, 15:45] = True
    truth_high_x = x >= boundary[:, None, None]  # larger x index = world right here
    gap_rows = np.arange(shape[1]) % 2 == 0  # every other row shows a one-voxel gap at the boundary
    gaps = (x == boundary[:, None, None]) & gap_rows[None, :, None]
    merged = block & ~gaps
    table = find_components(merged.astype(np.uint8), 26)
    assert table.count == 1
    plane_x = -31.5  # the flat plane sits between the two boundaries
    flat = CutSurface(geometry, plane_x).on_left(0, shape[0], 0, shape[1], 0, shape[2])
    cut = estimate_cut_surface(table, [1], geometry, plane_x, shape).on_left(0, shape[0], 0, shape[1], 0, shape[2])
    right_truth = merged & truth_high_x
    wrong_flat = np.count_nonzero((merged & ~flat) != right_truth)
    wrong_cut = np.count_nonzero((merged & ~cut) != right_truth)
    assert wrong_flat >= 500
    # Only rows next to the step in z, where the smoothing blends the two offsets, are off.
    assert wrong_cut <= 0.25 * wrong_flat
