from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.fingerprint import store_and_hash
from pipeline.geometry import Geometry
from pipeline.steps.step5_resample import resample, resample_labels, resample_labels_with_statistics, target_grid


def make_image(array, spacing, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), origin=(10.0, -20.0, 5.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetDirection([float(d) for d in direction])
    image.SetOrigin(origin)
    return image


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, -1, 0, 0, 0, 1)])
def test_the_resampled_grid_covers_the_same_physical_box(direction):
    image = make_image(np.zeros((10, 20, 30), np.int16), (3.0, 3.0, 3.0), direction)
    grid = target_grid(Geometry.of(image), (10, 20, 30), (1.5, 1.5, 1.5))
    geometry = grid.geometry
    assert grid.shape_zyx == (20, 40, 60)
    # The outer corner of the first voxel is the same point in both grids.
    old_corner = Geometry.of(image).index_zyx_to_world(np.array([-0.5, -0.5, -0.5]))
    new_corner = geometry.index_zyx_to_world(np.array([-0.5, -0.5, -0.5]))
    assert np.allclose(old_corner, new_corner)


def test_labels_are_resampled_by_nearest_neighbour():
    label = np.zeros((8, 8, 8), np.uint8)
    label[2:6, 2:6, 2:6] = 3
    label[0, 0, 0] = 7
    out = sitk.GetArrayFromImage(resample(make_image(label, (2.0, 2.0, 2.0)), (1.0, 1.0, 1.0), is_label=True))
    assert set(np.unique(out)) == {0, 3, 7}
    assert (out == 3).sum() == 8 * (label == 3).sum()


def as_stored(array, source_is_integer):
    with ThreadPoolExecutor(max_workers=1) as hashing:
        return store_and_hash(array, source_is_integer, hashing)[0]


def test_ct_stays_int16_and_floats_stay_float():
    ct = make_image(np.full((6, 6, 6), -1000, np.int16), (1.0, 1.0, 1.0))
    stored = as_stored(sitk.GetArrayFromImage(resample(ct, (1.5, 1.5, 1.5), is_label=False)), True)
    assert stored.dtype == np.int16 and (stored == -1000).all()
    mr = make_image(np.random.default_rng(0).random((6, 6, 6)).astype(np.float32), (1.0, 1.0, 1.0))
    assert as_stored(sitk.GetArrayFromImage(resample(mr, (1.5, 1.5, 1.5), is_label=False)), False).dtype == np.float32
    huge = np.full((4, 4, 4), 40000.0, np.float32)
    assert as_stored(huge, True).dtype == np.float32, "integers beyond int16 stay float32"


@pytest.mark.parametrize(
    "spacing, direction",
    [
        ((3.0, 3.0, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)),
        ((0.8, 1.1, 3.3), (-1, 0, 0, 0, -1, 0, 0, 0, 1)),
        ((1.0, 1.0, 1.0), (0, 0, -1, 1, 0, 0, 0, 1, 0)),
        ((0.5, 0.5, 7.5), (1, 0, 0, 0, 0.9998, -0.02, 0, 0.02, 0.9998)),
    ],
)
def test_separable_resampling_matches_itk(spacing, direction):
    """Our per-axis resampling gives ITK's values on the same grid (ITK being the reference)."""
    rng = np.random.default_rng(0)
    array = rng.normal(size=(13, 17, 19)).astype(np.float32)
    labels = rng.integers(0, 5, size=(13, 17, 19)).astype(np.uint8)
    image = make_image(array, spacing, direction)
    grid = target_grid(Geometry.of(image), array.shape, (1.5, 1.5, 1.5))
    size, geometry = grid.shape_zyx[::-1], grid.geometry
    for source, is_label, interpolator in ((image, False, sitk.sitkLinear), (make_image(labels, spacing, direction), True, sitk.sitkNearestNeighbor)):
        ours = sitk.GetArrayFromImage(resample(source, (1.5, 1.5, 1.5), is_label=is_label))
        itk = sitk.GetArrayFromImage(
            sitk.Resample(source, size, sitk.Transform(), interpolator, geometry.origin_xyz, geometry.spacing_xyz,
                          geometry.direction, 0.0, source.GetPixelID() if is_label else sitk.sitkFloat32)
        )
        # ITK treats samples past the last voxel's outer face as outside; ours repeats the edge there.
        inside = itk != 0 if not is_label else np.ones_like(itk, bool)
        inner = (slice(0, -1),) * 3
        if is_label:
            assert np.mean(ours[inner] == itk[inner]) > 0.999
        else:
            assert np.allclose(ours[inner][inside[inner]], itk[inner][inside[inner]], atol=1e-4)


@pytest.mark.parametrize("spacing", [(3.0, 3.0, 3.0), (0.8, 1.1, 3.3), (0.5, 0.5, 7.5), (1.5, 1.5, 1.5)])
def test_statistics_of_the_resampled_labels_are_exact(spacing):
    """Counts and boxes computed on the source grid equal those of the resampled map itself."""
    import cc3d

    rng = np.random.default_rng(1)
    labels = np.zeros((23, 27, 31), np.uint8)
    for value in range(1, 6):
        z, y, x = rng.integers(0, 20, 3)
        labels[z : z + rng.integers(1, 4), y : y + rng.integers(1, 6), x : x + rng.integers(1, 9)] = value
    grid = target_grid(Geometry(spacing, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)), labels.shape, (1.5, 1.5, 1.5))
    stored, counts, boxes = resample_labels_with_statistics(labels, grid, 6)
    assert np.array_equal(stored, resample_labels(labels, grid))
    expected = cc3d.statistics(stored, no_slice_conversion=True)
    n = len(expected["voxel_counts"])
    assert np.array_equal(counts[:n], expected["voxel_counts"]) and not counts[n:].any()
    for value in range(1, n):
        if expected["voxel_counts"][value]:
            assert np.array_equal(boxes[value], expected["bounding_boxes"][value])
