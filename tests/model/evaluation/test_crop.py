import numpy as np
import pytest
import SimpleITK as sitk

from catalog.reader import read_window
from model.evaluation.crop import PatchGrid, paste_back
from pipeline.geometry import Geometry


def rotation(axis, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.radians(degrees)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


ORIENTATIONS = {
    "LPS": np.eye(3),
    "RAS": np.diag([-1.0, -1.0, 1.0]),
    "LAS": np.diag([-1.0, 1.0, 1.0]),
    "oblique": rotation([1.0, 2.0, 0.5], 27.0),
}
BODY_CENTRE = np.array([12.0, -30.0, -150.0])  # LPS mm
BUMP_CENTRE = BODY_CENTRE + [20.0, 0.0, 18.0]


def asymmetric_mask_image(direction: np.ndarray) -> sitk.Image:
    """An ellipsoid with a sphere bulging off one corner, voxelised on an anisotropic grid of `direction`.

    The shape has no mirror symmetry along any world axis, so a flipped or permuted patch cannot
    land on itself.
    """
    size_xyz = np.array([110, 96, 64])
    spacing = np.array([0.9, 1.1, 2.0])
    step = direction * spacing
    origin = BODY_CENTRE + [3.0, -2.0, 5.0] - step @ ((size_xyz - 1) / 2)
    iz, iy, ix = np.meshgrid(*(np.arange(n, dtype=float) for n in size_xyz[::-1]), indexing="ij")
    world = [origin[r] + step[r, 0] * ix + step[r, 1] * iy + step[r, 2] * iz for r in range(3)]
    ellipsoid = sum(((w - c) / a) ** 2 for w, c, a in zip(world, BODY_CENTRE, (25.0, 18.0, 30.0))) <= 1
    bump = sum((w - c) ** 2 for w, c in zip(world, BUMP_CENTRE)) <= 9.0**2
    image = sitk.GetImageFromArray((ellipsoid | bump).astype(np.uint8))
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(origin.tolist())
    image.SetDirection(direction.ravel().tolist())
    return image


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
def test_crop_and_paste_back_reproduce_the_mask_in_its_own_geometry(orientation):
    reference = asymmetric_mask_image(ORIENTATIONS[orientation])
    truth = sitk.GetArrayFromImage(reference).astype(bool)
    # Off the shape's centre on purpose: a patch flipped about its centre would then move the shape.
    grid = PatchGrid.centred_on(BODY_CENTRE + [6.0, -5.0, 4.0], reference.GetDirection())
    patch = grid.sample(reference, sitk.sitkLinear)
    assert patch.shape == (128, 128, 128)

    # The patch holds the shape where it is in the world: centroid and bump in the right places.
    world_truth = Geometry.of(reference).index_zyx_to_world(np.argwhere(truth)).mean(axis=0)
    world_patch = grid.index_zyx_to_world(np.argwhere(patch >= 0.5)).mean(axis=0)
    assert np.linalg.norm(world_patch - world_truth) < 1.0
    tip = BUMP_CENTRE + 5.0 * (BUMP_CENTRE - BODY_CENTRE) / np.linalg.norm(BUMP_CENTRE - BODY_CENTRE)
    bump = np.rint(grid.world_to_index_zyx(tip)).astype(int)  # in the bump, outside the ellipsoid
    mirrored = np.rint(grid.world_to_index_zyx(2 * BODY_CENTRE - tip)).astype(int)
    assert patch[tuple(bump)] == pytest.approx(1.0) and patch[tuple(mirrored)] == pytest.approx(0.0)

    pasted = paste_back(patch, grid, reference)
    assert pasted.GetSize() == reference.GetSize()
    assert pasted.GetOrigin() == reference.GetOrigin() and pasted.GetDirection() == reference.GetDirection()
    assert pasted.GetSpacing() == reference.GetSpacing()
    assert dice(sitk.GetArrayFromImage(pasted).astype(bool), truth) > 0.98


def test_paste_back_of_a_patch_partly_outside_keeps_only_what_it_covers():
    reference = asymmetric_mask_image(ORIENTATIONS["RAS"])
    truth = sitk.GetArrayFromImage(reference).astype(bool)
    far = BODY_CENTRE + [90.0, 0.0, 0.0]  # the patch's far half leaves the image
    grid = PatchGrid.centred_on(far, reference.GetDirection())
    pasted = sitk.GetArrayFromImage(paste_back(grid.sample(reference), grid, reference)).astype(bool)
    world = Geometry.of(reference).index_zyx_to_world(np.argwhere(truth))
    reachable = grid.contains_index(grid.world_to_index_zyx(world))
    assert 0 < reachable.sum() < truth.sum()
    assert pasted.sum() == pytest.approx(reachable.sum(), rel=0.03)
    assert not pasted[tuple(np.argwhere(truth)[~reachable].T)].any()


def test_paste_back_of_a_patch_that_misses_the_image_is_empty():
    reference = asymmetric_mask_image(ORIENTATIONS["LPS"])
    grid = PatchGrid.centred_on(BODY_CENTRE + [1000.0, 0.0, 0.0], reference.GetDirection())
    assert not sitk.GetArrayFromImage(paste_back(np.ones(grid.shape), grid, reference)).any()


def test_a_window_of_the_stored_grid_samples_exactly_the_stored_voxels():
    rng = np.random.default_rng(0)
    array = rng.normal(size=(40, 50, 60)).astype(np.float32)
    stored = Geometry((1.5, 1.5, 1.5), (-20.0, 35.0, 7.0), tuple(np.diag([-1.0, -1.0, 1.0]).ravel()))
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(stored.spacing_xyz)
    image.SetOrigin(stored.origin_xyz)
    image.SetDirection(stored.direction)
    start = np.array([-5, 10, 30])
    grid = PatchGrid.from_window(stored, start, size=32)
    sampled = grid.sample(image, sitk.sitkNearestNeighbor)
    assert np.array_equal(sampled, read_window(array, start, (32, 32, 32), 0))
