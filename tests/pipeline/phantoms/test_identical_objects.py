"""The identical-objects phantom: spheres alike in all but position, each its own label."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.phantoms.identical_objects import (
    OBJECTS_DATASET,
    every_object_dice,
    make_identical_objects_case,
    write_identical_objects_dataset,
)


def test_objects_are_identical_separate_spheres_packed_for_one_patch():
    image, label = make_identical_objects_case([0, 1], n_objects=4)
    assert image.dtype == np.int16 and label.dtype == np.uint8 and image.shape == label.shape
    sizes = [int((label == k).sum()) for k in range(1, 5)]
    assert max(sizes) - min(sizes) <= 0.02 * max(sizes)  # one radius: the same shape up to voxelisation
    means = [float(image[label == k].mean()) for k in range(1, 5)]
    assert max(means) - min(means) < 5  # one density (25 HU noise averaged over > 10,000 voxels)
    centres = np.array([np.argwhere(label == k).mean(axis=0) for k in range(1, 5)])
    spread = centres.max(axis=0) - centres.min(axis=0)
    radius = (3 * sizes[0] / (4 * np.pi)) ** (1 / 3)
    assert 14 <= radius <= 18.5
    assert spread.max() + 2 * radius < 128  # all four fit in one 128³ patch
    assert every_object_dice(label, 1) == pytest.approx(2 * sizes[0] / (sizes[0] + sum(sizes)))
    again, _ = make_identical_objects_case([0, 1], n_objects=4)
    assert np.array_equal(image, again)
    with pytest.raises(ValueError, match="n_objects"):
        make_identical_objects_case(0, n_objects=1)


def test_the_dataset_is_labelled_synthetic_in_the_nnunet_layout(tmp_path):
    folder = write_identical_objects_dataset(tmp_path, n_cases=2, n_objects=3)
    assert folder.name == OBJECTS_DATASET and "Synthetic" in folder.name
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["synthetic"] is True and meta["description"].startswith("SYNTHETIC")
    assert meta["labels"] == {"background": 0, "object_1": 1, "object_2": 2, "object_3": 3}
    label = sitk.ReadImage(str(folder / "labelsTr" / "phantom_objects_001.nii.gz"))
    assert label.GetSpacing() == (1.5, 1.5, 1.5)
    assert sorted(np.unique(sitk.GetArrayViewFromImage(label))) == [0, 1, 2, 3]
    assert len(list((folder / "imagesTr").glob("*_0000.nii.gz"))) == 2
