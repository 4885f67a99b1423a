import numpy as np
import pytest

from model.evaluation.baseline import RegionGrowingBaseline, noise_sigma
from model.evaluation.metrics import dice
from model.intensity import normalize_intensity

SHAPE = (96, 96, 96)


def ball(centre, radius) -> np.ndarray:
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


def ct_patch(bright: np.ndarray, seed: int = 0) -> np.ndarray:
    """Soft tissue (40 HU) with a bright (200 HU) object, 10 HU noise, normalised like the network's input."""
    rng = np.random.default_rng(seed)
    hu = np.where(bright, 200.0, 40.0) + rng.normal(0.0, 10.0, SHAPE)
    return normalize_intensity(hu, "CT")


def test_one_click_segments_a_bright_sphere():
    sphere = ball((48, 44, 50), 15)
    method = RegionGrowingBaseline()
    method.start(ct_patch(sphere))
    mask = method.step(np.array([[50.0, 46.0, 47.0]]), np.array([1]))
    assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0}
    assert dice(mask > 0.5, sphere) > 0.9


def test_no_positive_click_gives_an_empty_mask():
    method = RegionGrowingBaseline()
    method.start(ct_patch(ball((48, 48, 48), 10)))
    assert not method.step(np.array([[48.0, 48.0, 48.0]]), np.array([0])).any()


def test_a_negative_click_cuts_off_the_part_it_hits():
    left, right = ball((48, 48, 25), 12), ball((48, 48, 71), 12)
    bar = np.zeros(SHAPE, dtype=bool)
    bar[45:52, 45:52, 25:71] = True
    dumbbell = left | right | bar
    method = RegionGrowingBaseline()
    method.start(ct_patch(dumbbell))
    positive = np.array([[48.0, 48.0, 25.0]])
    grown = method.step(positive, np.array([1])) > 0.5
    assert dice(grown, dumbbell) > 0.9, "the bar carries the growth into the second ball"
    cut = method.step(np.vstack([positive, [[48.0, 48.0, 71.0]]]), np.array([1, 0])) > 0.5
    assert cut[48, 48, 25] and not cut[48, 48, 71]
    assert not (cut & right).any()
    assert dice(cut, left) > dice(grown, left) + 0.2


def test_step_before_start_is_an_error():
    with pytest.raises(RuntimeError, match="start"):
        RegionGrowingBaseline().step(np.zeros((1, 3)), np.ones(1))


def test_noise_sigma_ignores_edges_and_flat_padding():
    rng = np.random.default_rng(1)
    image = np.where(ball((48, 48, 48), 20), 50.0, 0.0) + rng.normal(0.0, 2.0, SHAPE)
    image[:, :, :20] = -7.0  # flat padding contributes no differences
    assert noise_sigma(image) == pytest.approx(2.0, rel=0.05)
    assert noise_sigma(np.zeros(SHAPE)) == 0.0
