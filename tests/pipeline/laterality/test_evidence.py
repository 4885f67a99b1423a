"""Bilateral evidence of SYNTHETIC masks about a known plane, in several orientations."""

import numpy as np
import pytest

from pipeline.geometry import Geometry
from pipeline.laterality.evidence import bilateral_evidence
from pipeline.phantoms import LPS_DIRECTION, RAS_ON_DISK_DIRECTION
from pipeline.steps.step2_mask_cleaning import find_components

SHAPE = (30, 40, 60)  # (z, y, x)


def ball(centre_zyx, radius) -> np.ndarray:
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    return (z - centre_zyx[0]) ** 2 + (y - centre_zyx[1]) ** 2 + (x - centre_zyx[2]) ** 2 <= radius**2


def evidence_of(mask: np.ndarray, direction):
    geometry = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), direction)
    plane_x = float(geometry.index_zyx_to_world(np.array([0.0, 0.0, 29.5]))[0])  # between x indices 29 and 30
    table = find_components(mask.astype(np.uint8), 26)
    return bilateral_evidence(table, np.arange(1, table.count + 1), geometry, plane_x)


@pytest.mark.parametrize("direction", [LPS_DIRECTION, RAS_ON_DISK_DIRECTION], ids=["LPS", "RAS"])
def test_a_pair_apart_is_bilateral_and_a_midline_ball_is_not(direction):
    pair = evidence_of(ball((15, 20, 15), 6) | ball((15, 20, 44), 6), direction)
    assert pair.balance == pytest.approx(0.5) and pair.symmetry > 0.95
    assert pair.midline_fraction == 0 and pair.dip == 0
    assert pair.is_bilateral(0.2, 0.3, 0.5)
    middle = evidence_of(ball((15, 20, 29.5), 8), direction)
    assert middle.balance == pytest.approx(0.5) and middle.symmetry > 0.95
    assert middle.dip >= 1.0 and middle.midline_fraction > 0.15
    assert not middle.is_bilateral(0.2, 0.3, 0.5)


def test_touching_halves_dip_at_the_plane_and_one_sided_masks_have_no_balance():
    touching = evidence_of(ball((15, 20, 22), 8) | ball((15, 20, 37), 8), LPS_DIRECTION)
    assert touching.balance == pytest.approx(0.5) and touching.dip < 0.5
    one_side = evidence_of(ball((15, 20, 12), 6), LPS_DIRECTION)
    assert one_side.balance == 0 and one_side.symmetry == 0 and not one_side.is_bilateral(0.2, 0.3, 0.5)
    lopsided = evidence_of(ball((15, 20, 12), 6) | ball((8, 10, 47), 3), LPS_DIRECTION)
    assert lopsided.symmetry < 0.3 and not lopsided.is_bilateral(0.2, 0.3, 0.5)
