import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.geometry import Geometry
from pipeline.resample import resample, storage_array, target_grid


def make_image(array, spacing, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), origin=(10.0, -20.0, 5.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetDirection([float(d) for d in direction])
    image.SetOrigin(origin)
    return image


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, -1, 0, 0, 0, 1)])
def test_the_resampled_grid_covers_the_same_physical_box(direction):
    image = make_image(np.zeros((10, 20, 30), np.int16), (3.0, 3.0, 3.0), direction)
    size, geometry = target_grid(image, (1.5, 1.5, 1.5))
    assert size == (60, 40, 20)
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


def test_ct_stays_int16_and_floats_stay_float():
    ct = make_image(np.full((6, 6, 6), -1000, np.int16), (1.0, 1.0, 1.0))
    assert storage_array(resample(ct, (1.5, 1.5, 1.5), is_label=False), True).dtype == np.int16
    mr = make_image(np.random.default_rng(0).random((6, 6, 6)).astype(np.float32), (1.0, 1.0, 1.0))
    assert storage_array(resample(mr, (1.5, 1.5, 1.5), is_label=False), False).dtype == np.float32
