"""Step 2: one connected-components pass, per-mask statistics, rejection rules."""

import numpy as np
import pytest
from scipy import ndimage

from pipeline.config import CurationConfig
from pipeline.steps.step2_mask_cleaning import find_components, mask_statistics, rejection_reason

FULL_26 = np.ones((3, 3, 3), dtype=bool)


def random_label_map(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    label = np.zeros((24, 20, 22), dtype=np.uint8)
    for value in (1, 2, 3, 7):
        for _ in range(rng.integers(1, 9)):
            z, y, x = rng.integers(0, 18, size=3)
            d = rng.integers(1, 5, size=3)
            label[z : z + d[0], y : y + d[1], x : x + d[2]] = value
    return label


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_statistics_match_a_per_label_scipy_computation(seed):
    label = random_label_map(seed)
    stats = mask_statistics(find_components(label, 26))
    assert set(stats) == set(np.unique(label)) - {0}
    for value, mask_stats in stats.items():
        mask = label == value
        components, count = ndimage.label(mask, structure=FULL_26)
        sizes = sorted(np.bincount(components.ravel())[1:].tolist(), reverse=True)
        assert mask_stats.voxels == mask.sum()
        assert mask_stats.component_sizes.tolist() == sizes
        zs, ys, xs = np.nonzero(mask)
        assert mask_stats.bbox_zyx == (zs.min(), ys.min(), xs.min(), zs.max() + 1, ys.max() + 1, xs.max() + 1)
        box_volume = np.prod(np.array(mask_stats.bbox_zyx[3:]) - mask_stats.bbox_zyx[:3])
        assert mask_stats.bg_fraction_bbox == pytest.approx(1 - mask.sum() / box_volume)
        assert mask_stats.bg_fraction_volume == pytest.approx(1 - mask.sum() / label.size)


def test_rejection_rules():
    config = CurationConfig()
    assert rejection_reason(1000, 0.5, 0.999, 1.0, config) is None
    assert "only 1 voxels" in rejection_reason(1, 0.0, 0.999, 27.0, config)
    assert "volume 9.0 mm³ below 10" in rejection_reason(9, 0.0, 0.999, 1.0, config)
    assert "background fraction 0.9950 over its bbox" in rejection_reason(1000, 0.995, 0.5, 1.0, config)
    whole_volume = CurationConfig(background_region="volume")
    assert rejection_reason(1000, 0.995, 0.5, 1.0, whole_volume) is None
    assert "over its volume" in rejection_reason(1000, 0.5, 0.9999, 1.0, whole_volume)
