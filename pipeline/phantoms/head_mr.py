"""A two-channel (T1, FLAIR) head MR phantom: brain, sided lateral ventricles, a tumour in one
hemisphere with oedema around it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import SimpleITK as sitk

from pipeline.phantoms.grid import LPS_DIRECTION, PhantomGrid, Seed, jitter, side_truth

# Label values are positions in this list (background 0).
MR_LABELS = {name: value for value, name in enumerate((
    "background", "brain", "lateral_ventricle_left", "lateral_ventricle_right", "tumor", "edema",
))}
MR_SIZE = (80, 96, 80)  # voxels, (x, y, z)
MR_SPACING = (1.2, 1.2, 1.2)  # mm, (x, y, z)

_MR_NOISE = 15.0
_MR_BACKGROUND_NOISE = 8.0


def make_head_mr_case(
    *,
    seed: Seed,
    tumor_side: Literal["left", "right"],
    size: Sequence[int] = MR_SIZE,
    spacing: Sequence[float] = MR_SPACING,
    direction=LPS_DIRECTION,
    fov_centre: Sequence[float] = (0.0, 0.0, 0.0),
) -> tuple[sitk.Image, sitk.Image, sitk.Image, dict]:
    """Build one two-channel head MR phantom in memory.

    Geometry arguments are as in :func:`make_torso_ct_case` ((x, y, z) order, mm, LPS).
    The tumour sits in the ``tumor_side`` hemisphere (left = world x above the midline),
    with oedema around it clipped to the brain.

    Returns:
        (t1, flair, label, truth): float32 MR-like intensities (background ~0, brain
        ~300-800), uint8 label with :data:`MR_LABELS`, all on the same grid.
    """
    rng = np.random.default_rng(seed)
    grid = PhantomGrid(size, spacing, direction, fov_centre)
    head_centre = np.asarray(fov_centre, dtype=float) + rng.uniform([-4, -3, -3], [4, 3, 3])

    t1 = np.zeros(grid.shape)
    flair = np.zeros(grid.shape)
    label = np.zeros(grid.shape, dtype=np.uint8)

    def paint(mask, name, t1_value, flair_value):
        t1[mask] = t1_value
        flair[mask] = flair_value
        if name is not None:
            label[mask] = MR_LABELS[name]

    head_semi = np.array([40.0, 50.0, 40.0]) * rng.uniform(0.97, 1.03, 3)
    head = grid.ellipsoid(head_centre, head_semi)
    paint(head, None, 780, 350)  # scalp
    paint(grid.ellipsoid(head_centre, head_semi - 3.0), None, 60, 40)  # skull
    brain = grid.ellipsoid(head_centre, head_semi - 7.0)
    paint(brain, "brain", 620, 480)

    sign = 1.0 if tumor_side == "left" else -1.0
    tumor_centre = head_centre + [sign * 20.0, 18.0, 10.0] + rng.uniform(-2.0, 2.0, 3)
    tumor_radius = 7.0 * rng.uniform(0.85, 1.2)
    edema_radius = tumor_radius + rng.uniform(5.0, 7.0)
    paint(grid.ellipsoid(tumor_centre, [edema_radius] * 3) & brain, "edema", 520, 880)
    paint(grid.ellipsoid(tumor_centre, [tumor_radius] * 3), "tumor", 420, 700)

    # Painted last so each ventricle stays one intact piece, a few mm off the midline.
    ventricles = {}
    for side, side_sign in (("right", -1.0), ("left", 1.0)):
        centre, semi = jitter(rng, (side_sign * 8.0, -4.0, 6.0), (4.5, 15.0, 7.0), 1.5, 0.1)
        ventricles[side] = grid.ellipsoid(head_centre + centre, semi)
        paint(ventricles[side], f"lateral_ventricle_{side}", 180, 90)

    in_head = head.astype(float)
    # Magnitude images carry Rician-like, strictly non-negative background noise.
    background = np.abs(rng.normal(0.0, _MR_BACKGROUND_NOISE, (2, *grid.shape)))
    t1 = t1 + in_head * rng.normal(0.0, _MR_NOISE, grid.shape) + (1 - in_head) * background[0]
    flair = flair + in_head * rng.normal(0.0, _MR_NOISE, grid.shape) + (1 - in_head) * background[1]

    truth = {
        "body_midline_x_mm": round(float(head_centre[0]), 3),
        "fov_centre_mm": [round(float(c), 3) for c in fov_centre],
        "direction": [float(d) for d in grid.direction.ravel()],
        "tumor_side": tumor_side,
        "paired": {
            "lateral_ventricle": {
                side: side_truth(grid, label == MR_LABELS[f"lateral_ventricle_{side}"])
                for side in ventricles
            }
        },
    }
    return (
        grid.to_image(t1.astype(np.float32)),
        grid.to_image(flair.astype(np.float32)),
        grid.to_image(label),
        truth,
    )
