"""The curation speed-ups give exactly what the plain computations give."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import pipeline.curate as curate_module
from pipeline.config import CurationConfig
from pipeline.fingerprint import store_and_hash, stored_image_sha256
from pipeline.geometry import Geometry
from pipeline.importers import read_dataset
from pipeline.steps.step5_resample import ScratchOutputs, output_voxels, resample_image, target_grid

GRIDS = [((3.0, 3.0, 3.0), (13, 17, 19)), ((2.5, 0.7, 1.1), (9, 30, 21)), ((1.5, 1.5, 1.5), (5, 6, 7))]


@pytest.mark.parametrize("spacing, shape", GRIDS)
def test_resampling_into_a_reused_buffer_equals_a_fresh_one(spacing, shape):
    source = np.random.default_rng(0).integers(-1000, 1000, size=shape).astype(np.int16)
    grid = target_grid(Geometry(spacing, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)), shape, (1.5, 1.5, 1.5))
    scratch = ScratchOutputs(keep=1)
    expected = resample_image(source, grid)
    for _ in range(2):  # the second call gets the first call's buffer back
        with scratch.buffer(output_voxels(shape, grid)) as buffer:
            assert np.array_equal(resample_image(source, grid, out=buffer), expected)


def test_scratch_outputs_keep_the_largest_buffers_only():
    scratch = ScratchOutputs(keep=2)
    with scratch.buffer(10), scratch.buffer(30), scratch.buffer(20):  # three threads at once, say
        pass
    with scratch.buffer(15) as reused:
        assert reused.numel() == 20, "the smallest buffer that fits is reused"
    with scratch.buffer(25) as other:
        assert other.numel() == 30
    with scratch.buffer(5) as small:
        assert small.numel() == 20, "the 10-voxel buffer was dropped"
    capped = ScratchOutputs(keep=2, max_bytes=4 * 100)
    with capped.buffer(101) as large:
        pass
    with capped.buffer(50) as fresh:
        assert fresh is not large, "a buffer over max_bytes is not kept"


@pytest.mark.parametrize("integer", [True, False])
def test_store_and_hash_equals_the_plain_conversion_and_its_sha256(integer):
    rng = np.random.default_rng(1)
    resampled = (rng.normal(0, 300, size=(37, 20, 25)) if integer else rng.random((37, 20, 25))).astype(np.float32)
    view = resampled[:, 2:18, 1:24]  # a cropped (non-contiguous) view, as resample_image returns
    expected = np.rint(view).astype(np.int16) if integer else view.astype(np.float32)  # values fit int16
    with ThreadPoolExecutor(max_workers=1) as hashing:
        stored, digest = store_and_hash(view.copy(), integer, hashing, slab=8)
        copied, _ = store_and_hash(view, integer, hashing, copy=True)
        assert not np.shares_memory(copied, view)
        assert digest.result() == stored_image_sha256(expected)
    assert stored.dtype == expected.dtype == (np.int16 if integer else np.float32)
    assert np.array_equal(stored, expected)


def test_a_header_grid_that_the_full_read_contradicts_falls_back_to_the_real_grid(raw_data, monkeypatch):
    """Images are resampled speculatively on the grid the label header gives; if the label map read in
    full has another grid, they are resampled again on it and the result is as without speculation."""
    case = next(c for c in read_dataset(raw_data / "Dataset001_TotalSegCT") if c.case_id == "ts_ct_sm")
    config = CurationConfig()
    expected = curate_module.curate_case(case, config)
    header_grid = curate_module._grid_of_header

    def shifted(header, config):
        grid = header_grid(header, config)
        origin = tuple(v + 1.0 for v in grid.geometry.origin_xyz)
        return type(grid)(grid.shape_zyx, type(grid.geometry)(grid.geometry.spacing_xyz, origin, grid.geometry.direction),
                          grid.factors_zyx)

    monkeypatch.setattr(curate_module, "_grid_of_header", shifted)
    result = curate_module.curate_case(case, config)
    assert [i.row for i in result.images] == [i.row for i in expected.images]
    assert result.masks == expected.masks
    assert np.array_equal(result.images[0].image, expected.images[0].image)
    assert np.array_equal(result.images[0].label, expected.images[0].label)
