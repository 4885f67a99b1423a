"""Per-sample intensity normalisation: clipping, foreground moments, slabs, flipped views, narrow outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.intensity import normalize_intensity, normalize_into


def _exact(patch: np.ndarray, modality: str) -> np.ndarray:
    values = patch.astype(np.float64)
    if modality == "CT":
        values = np.clip(values, -1000, 1000)
    reference = values[values > 0] if (values > 0).any() else values.ravel()
    return (values - reference.mean()) / (reference.std() or 1.0)


def test_ct_is_clipped_before_the_z_score():
    patch = np.array([-3000, -1000, 0, 200, 400, 5000], dtype=np.int16).reshape(1, 2, 3)
    out = normalize_intensity(patch, "CT")
    foreground = np.array([200.0, 400.0, 1000.0])
    expected = (np.clip(patch.astype(np.float64), -1000, 1000) - foreground.mean()) / foreground.std()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_mr_is_not_clipped_and_uses_voxels_above_zero():
    patch = np.array([0, 0, 10, 3000], dtype=np.float32).reshape(1, 1, 4)
    out = normalize_intensity(patch, "MR")
    foreground = np.array([10.0, 3000.0])
    np.testing.assert_allclose(out, (patch - foreground.mean()) / foreground.std(), rtol=1e-6)


def test_normalisation_falls_back_to_all_voxels_and_guards_zero_spread():
    negative = np.array([-5.0, -3.0, -1.0]).reshape(1, 1, 3)
    np.testing.assert_allclose(normalize_intensity(negative, "MR"), (negative + 3) / np.std([-5, -3, -1]), rtol=1e-6)
    flat = np.full((2, 2, 2), 7.0)
    assert np.array_equal(normalize_intensity(flat, "MR"), np.zeros((2, 2, 2), np.float32))


def test_slab_by_slab_moments_match_float64_on_a_128_cube():
    rng = np.random.default_rng(0)
    ct = rng.normal(40, 300, size=(128, 128, 128)).astype(np.int16)
    mr = rng.gamma(2.0, 150.0, size=(128, 128, 128)).astype(np.float32) * (rng.random((128, 128, 128)) < 0.6)
    for patch, modality in ((ct, "CT"), (mr, "MR")):
        np.testing.assert_allclose(normalize_intensity(patch, modality), _exact(patch, modality), atol=2e-5)


def test_a_foreground_the_subsample_misses_is_still_normalised_exactly():
    # Bright voxels only off the 4x-strided grid the reference level is taken from, with a small spread
    # far from that level: summed around the level, the variance would drown in cancellation.
    patch = np.full((16, 16, 16), -900, dtype=np.int16)
    patch[1::4, 1::4, 1::4] = 700 + np.arange(64).reshape(4, 4, 4) % 3
    np.testing.assert_allclose(normalize_intensity(patch, "CT"), _exact(patch, "CT"), rtol=1e-5, atol=1e-5)


def test_a_flipped_view_is_normalised_as_the_flipped_patch_and_narrow_outputs_round_the_float32_result():
    patch = np.random.default_rng(1).normal(100, 50, size=(20, 24, 28)).astype(np.float32)
    view = np.flip(patch, (0, 2))
    assert np.array_equal(normalize_intensity(view, "MR"), np.flip(normalize_intensity(patch, "MR"), (0, 2)))
    full = normalize_intensity(patch, "MR")
    for dtype in (torch.float16, torch.bfloat16):
        out = normalize_into(patch, "MR", torch.empty(patch.shape, dtype=dtype))
        assert torch.equal(out, torch.from_numpy(full).to(dtype))


def test_an_output_of_the_wrong_shape_or_kind_is_refused():
    patch = np.zeros((4, 4, 4), dtype=np.int16)
    with pytest.raises(ValueError, match="of its shape"):
        normalize_into(patch, "CT", torch.empty((4, 4, 5)))
    with pytest.raises(ValueError, match="floating-point"):
        normalize_into(patch, "CT", torch.empty((4, 4, 4), dtype=torch.int16))
