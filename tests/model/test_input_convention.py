"""The published input convention against what the published code computed on three real cases
(``../shared/fixtures/published_parity/pipeline_<case>.npz``): the crop, the network's logits, the paste-back.

Prints, per case: intensity correlation with the published crop (inside the image), the logits' worst
|ours - published| / max |published|, and the Dice of our paste-back against the published one.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from model import load_published_checkpoint
from model.evaluation.crop import paste_back
from model.input_convention import crop_start, first_mask_prompt, ras_grid, sample_crop, target_crop
from pipeline.geometry import Geometry
from tests.model.published_fixture import pipeline_case, published_state_dict

CASES = ("ts_mr_liver", "mni152_hippocampus_l", "sct_t2_cord")
CROP_CORRELATION = 0.999
LOGITS_RELATIVE_ERROR = 1e-2
PASTE_BACK_DICE = 0.99


def _unpack(packed: np.ndarray, shape) -> np.ndarray:
    return np.unpackbits(packed)[: int(np.prod(shape))].reshape(tuple(shape)).astype(bool)


@pytest.fixture(scope="module")
def published_model():
    model, _ = load_published_checkpoint({"model_state_dict": published_state_dict()})
    return model.eval()


@pytest.mark.parametrize("case", CASES)
def test_published_crop_logits_and_paste_back(case, raw_data, published_model):
    fixture = pipeline_case(case)
    image = sitk.ReadImage(str(raw_data / str(fixture["image_path"])))
    label = sitk.ReadImage(str(raw_data / str(fixture["label_path"])))
    grid = target_crop(image, label == int(fixture["label_value"]))

    # The crop's place in the world: its RAS affine.
    ras_affine = fixture["roi_affine_ras"]
    flip = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(flip @ grid.geometry.origin_xyz, ras_affine[:3, 3], atol=1e-4)
    axes_ras = flip @ np.asarray(grid.geometry.direction).reshape(3, 3)[:, ::-1] * 1.5  # columns: array axes
    np.testing.assert_allclose(axes_ras, ras_affine[:3, :3], atol=1e-6)
    np.testing.assert_allclose(grid.index_zyx_to_world(fixture["click_roi"].astype(float)),
                               fixture["click_world_lps"], atol=1e-4)

    crop = sample_crop(image, grid)
    published_crop = fixture["roi_image"]
    inside = grid.sample(_ones_like(image), sitk.sitkNearestNeighbor, 0.0) > 0
    correlation = float(np.corrcoef(crop[inside], published_crop[inside])[0, 1])

    with torch.no_grad():
        embedding = published_model.encode(torch.from_numpy(crop)[None, None])
        logits, _ = published_model.decode(
            embedding,
            torch.from_numpy(fixture["click_roi"].astype(np.float32))[None, None],
            torch.ones(1, 1, dtype=torch.long),
            mask_prompt=first_mask_prompt(published_model),
        )
    published_logits = torch.from_numpy(fixture["lowres"])
    logits_error = float((logits - published_logits).abs().max() / published_logits.abs().max())

    target = _unpack(fixture["roi_label"], (128,) * 3)
    pasted = sitk.GetArrayFromImage(paste_back(target.astype(np.float32), grid, image, sitk.sitkNearestNeighbor))
    published_pasted = _unpack(fixture["pasted_roi_label_zyx"], fixture["original_shape_zyx"])
    pasted = pasted.astype(bool)
    dice = 2 * float((pasted & published_pasted).sum()) / float(pasted.sum() + published_pasted.sum())

    print(f"\n{case}: crop correlation {correlation:.6f}, logits relative error {logits_error:.2e}, "
          f"paste-back Dice {dice:.4f}")
    assert correlation >= CROP_CORRELATION
    assert logits_error <= LOGITS_RELATIVE_ERROR
    assert dice >= PASTE_BACK_DICE


def _ones_like(image: sitk.Image) -> sitk.Image:
    ones = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(image)
    return ones


def test_ras_grid_of_an_lps_image_flips_its_first_two_axes():
    source = Geometry((3.0, 3.0, 3.0), (10.0, 20.0, 30.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    grid, shape = ras_grid(source, (4, 6, 2))
    assert shape == (8, 12, 4)  # (R, A, S) counts: ceil(size * 3 / 1.5)
    # Array axis 0 runs towards the patient's right: LPS -x.
    step = grid.index_zyx_to_world([1.0, 0, 0]) - grid.index_zyx_to_world([0.0, 0, 0])
    np.testing.assert_allclose(step, [-1.5, 0, 0])
    # The first voxel is the rightmost, most anterior, lowest voxel centre of the 1.5 mm grid, whose
    # outer faces are the source's: source index (x, y, z) = (-0.25 + 7 * 0.5, -0.25 + 11 * 0.5, -0.25).
    np.testing.assert_allclose(grid.origin_xyz, [19.75, 35.75, 29.25])


def test_crop_start_centres_the_box_rounding_down():
    np.testing.assert_array_equal(crop_start([10, 10, 0], [20, 21, 0]), [15 - 64, 16 - 64, 0 - 64])


def test_ras_view_keeps_every_voxel_where_it_is_in_the_world():
    # A PSR-stored grid (like the spinal cord case): SimpleITK axes i, j, k towards P, S, R.
    from model.evaluation.crop import PatchGrid
    from model.input_convention import ras_view

    geometry = Geometry((1.5, 1.5, 1.5), (5.0, -3.0, 7.0), (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
    grid = PatchGrid(geometry, 8)
    values = np.random.default_rng(0).standard_normal((8, 8, 8)).astype(np.float32)
    (view,), ras = ras_view([values], grid)
    np.testing.assert_allclose(ras.index_zyx_to_world([1.0, 0, 0]) - ras.index_zyx_to_world([0.0, 0, 0]), [-1.5, 0, 0])
    np.testing.assert_allclose(ras.index_zyx_to_world([0, 1.0, 0]) - ras.index_zyx_to_world([0, 0.0, 0]), [0, -1.5, 0])
    np.testing.assert_allclose(ras.index_zyx_to_world([0, 0, 1.0]) - ras.index_zyx_to_world([0, 0, 0.0]), [0, 0, 1.5])
    for index in np.random.default_rng(1).integers(0, 8, size=(20, 3)):
        source = np.rint(grid.world_to_index_zyx(ras.index_zyx_to_world(index.astype(float)))).astype(int)
        assert view[tuple(index)] == values[tuple(source)]
