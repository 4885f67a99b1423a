"""Mid-sagittal plane by mirror symmetry, on SYNTHETIC heads placed off-centre in their field of view."""

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.geometry import Geometry
from pipeline.laterality.plane import estimate_plane
from pipeline.phantoms import LPS_DIRECTION, RAS_ON_DISK_DIRECTION

SHAPE = (40, 60, 90)  # (z, y, x); the head's midline is at x index 52, not the centre 44.5
MIDLINE_INDEX = 52.0


def head(direction, spacing=(1.2, 1.0, 1.5)):
    """(image, label map, geometry, true plane x in mm): an ellipsoid head, a pair of blobs (value 1
    left, 2 right), and a tumour (3) on one side only."""
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    dz, dy, dx = (z - 20) / 17, (y - 30) / 26, (x - MIDLINE_INDEX) / 30
    image = np.where(dz**2 + dy**2 + dx**2 <= 1, 100.0, 0.0).astype(np.float32)
    labels = np.zeros(SHAPE, dtype=np.uint8)
    for value, cx in ((1, MIDLINE_INDEX - 14), (2, MIDLINE_INDEX + 14)):
        labels[(z - 20) ** 2 + (y - 30) ** 2 + (x - cx) ** 2 <= 36] = value
    labels[(z - 14) ** 2 + (y - 22) ** 2 + (x - (MIDLINE_INDEX + 22)) ** 2 <= 16] = 3
    sitk_image = sitk.GetImageFromArray(image)
    sitk_image.SetSpacing(spacing)
    sitk_image.SetOrigin((12.0, -30.0, 5.0))
    sitk_image.SetDirection(tuple(float(v) for v in np.ravel(direction)))
    geometry = Geometry.of(sitk_image)
    truth = float(geometry.index_zyx_to_world(np.array([20.0, 30.0, MIDLINE_INDEX]))[0])
    return sitk_image, labels, geometry, truth


@pytest.mark.parametrize("direction", [LPS_DIRECTION, RAS_ON_DISK_DIRECTION], ids=["LPS", "RAS"])
def test_the_plane_is_the_head_midline_not_the_field_of_view_centre(direction):
    image, labels, geometry, truth = head(direction)
    pair_is_one_class = np.array([0, 1, 1, 2])  # "x left" and "x right" share a class; the tumour its own
    plane = estimate_plane(labels, geometry, pair_is_one_class, image, "MR")
    assert plane.source == "symmetry" and plane.score > 0.8
    assert abs(plane.x_mm - truth) <= 1.0
    centre = geometry.index_zyx_to_world((np.asarray(SHAPE, dtype=float) - 1) / 2)[0]
    assert abs(centre - truth) > 8  # 7.5 voxels of 1.2 mm


def test_the_body_anchors_the_plane_when_the_labels_are_one_sided():
    image, labels, geometry, truth = head(LPS_DIRECTION)
    tumour_only = np.where(labels == 3, 3, 0).astype(np.uint8)
    classes = np.array([0, 1, 1, 2])
    with_body = estimate_plane(tumour_only, geometry, classes, image, "MR")
    assert abs(with_body.x_mm - truth) <= 1.0
    without_body = estimate_plane(tumour_only, geometry, classes, None, "MR")
    # A tumour alone is symmetric about itself (or too small to go on): why the body counts.
    assert abs(without_body.x_mm - truth) > 5


def test_too_little_to_go_on_falls_back_to_the_field_of_view():
    _, labels, geometry, _ = head(LPS_DIRECTION)
    speck = np.zeros_like(labels)
    speck[20, 30, 10] = 1
    plane = estimate_plane(speck, geometry, np.array([0, 1]), None, "MR")
    assert plane.source == "field of view" and plane.score is None
