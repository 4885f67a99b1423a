"""A CT-like torso phantom (HU): liver, spleen, paired kidneys and lungs, vertebrae, aorta, a liver
lesion and sided adrenal glands, placed relative to the body centre in LPS world coordinates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import SimpleITK as sitk

from pipeline.phantoms.grid import LPS_DIRECTION, PhantomGrid, Seed, jitter, side_truth

# Label values are positions in this list (background 0).
CT_LABELS = {name: value for value, name in enumerate((
    "background", "liver", "spleen", "kidney", "lung", "vertebrae", "aorta", "liver_lesion",
    "adrenal_gland_left", "adrenal_gland_right",
))}
CT_SIZE = (96, 96, 64)  # voxels, (x, y, z)
CT_SPACING = (2.5, 2.5, 3.0)  # mm, (x, y, z)

_AIR_HU = -1000
_CT_NOISE_HU = 8.0


def make_torso_ct_case(
    *,
    seed: Seed,
    size: Sequence[int] = CT_SIZE,
    spacing: Sequence[float] = CT_SPACING,
    direction=LPS_DIRECTION,
    fov_centre: Sequence[float] = (0.0, 0.0, 0.0),
    body_offset_x: float | None = None,
    kidneys: Literal["both", "right"] = "both",
) -> tuple[sitk.Image, sitk.Image, dict]:
    """Build one CT-like torso phantom in memory.

    Args:
        seed: anything ``numpy.random.default_rng`` accepts (an int or a sequence of ints).
        size: voxels along index axes (x, y, z), SimpleITK order.
        spacing: mm along index axes (x, y, z).
        direction: any non-singular 3x3 direction matrix (nested rows or 9 values row-major,
            SimpleITK's layout); column c is the world direction of index axis c.
        fov_centre: LPS world position (mm) of the centre of the voxel grid.
        body_offset_x: world x (mm) of the body centre minus that of the FOV centre; by
            default ±(28..34) mm drawn from the seed, large enough that a left/right split
            at the FOV centre cuts through a lung and a kidney.
        kidneys: "right" leaves out the left kidney.

    Returns:
        (image, label, truth). image is int16 HU, label uint8 with :data:`CT_LABELS`, both on
        the same grid. truth is the per-case record described in :func:`phantom_truth`.
    """
    rng = np.random.default_rng(seed)
    grid = PhantomGrid(size, spacing, direction, fov_centre)
    if body_offset_x is None:
        body_offset_x = float(rng.choice([-1.0, 1.0]) * rng.uniform(28.0, 34.0))
    # The body is a cylinder along world z, so its centre z is arbitrary: use the FOV's.
    body_centre = np.asarray(fov_centre, dtype=float) + [body_offset_x, 0.0, 0.0]

    image = np.full(grid.shape, _AIR_HU, dtype=float)
    label = np.zeros(grid.shape, dtype=np.uint8)

    def organ(offset, semi_axes):
        centre, semi = jitter(rng, offset, semi_axes)
        return grid.ellipsoid(body_centre + centre, semi)

    def paint(mask, name, hu):
        # Later organs overwrite earlier ones: the order below resolves the small overlaps
        # that per-case jitter can create without splitting any organ into pieces.
        image[mask] = hu
        if name is not None:
            label[mask] = CT_LABELS[name]

    body_semi = np.array([82.0, 62.0, np.inf]) * [*rng.uniform(0.97, 1.03, 2), 1.0]
    body = grid.ellipsoid(body_centre, body_semi)
    fat_mm = 8.0
    inner = grid.ellipsoid(body_centre, body_semi - [fat_mm, fat_mm, 0.0])
    paint(body, None, -100)
    paint(inner, None, 40)

    liver_centre, liver_semi = jitter(rng, (-36.0, -12.0, -18.0), (34.0, 36.0, 30.0))
    paint(grid.ellipsoid(body_centre + liver_centre, liver_semi) & inner, "liver", 60)
    # Tied to the liver's own centre and size so the lesion always stays inside it.
    lesion_centre = liver_centre + np.array([-8.0, -4.0, -2.0]) * (liver_semi / [34.0, 36.0, 30.0])
    lesion_radius = 7.0 * rng.uniform(0.8, 1.2)
    paint(grid.ellipsoid(body_centre + lesion_centre, [lesion_radius] * 3), "liver_lesion", 10)

    paint(organ((54.0, 5.0, -6.0), (14.0, 20.0, 20.0)) & inner, "spleen", 50)

    kidney_sides = {"right": -1.0} if kidneys == "right" else {"right": -1.0, "left": 1.0}
    kidney_masks = {
        side: organ((sign * 42.0, 26.0, -42.0), (13.0, 11.0, 24.0)) & inner
        for side, sign in kidney_sides.items()
    }
    for mask in kidney_masks.values():
        paint(mask, "kidney", 35)
    for side, sign in (("right", -1.0), ("left", 1.0)):
        paint(organ((sign * 32.0, 22.0, -12.0), (4.0, 6.0, 8.0)), f"adrenal_gland_{side}", 30)

    lung_masks = {
        side: organ((sign * 46.0, 2.0, 50.0), (25.0, 38.0, 36.0)) & inner
        for side, sign in (("right", -1.0), ("left", 1.0))
    }
    for mask in lung_masks.values():
        paint(mask, "lung", -850)

    # Vertebral body plus spinous process, continuous along z so the spine is one piece.
    spine = grid.ellipsoid(body_centre + [0.0, 34.0, 0.0], [15.0, 13.0, np.inf])
    spine |= grid.ellipsoid(body_centre + [0.0, 50.0, 0.0], [5.0, 8.0, np.inf])
    paint(spine, "vertebrae", 700)
    aorta_centre = np.array([6.0, 10.0, 0.0]) + [*rng.uniform(-1.0, 1.0, 2), 0.0]
    paint(grid.ellipsoid(body_centre + aorta_centre, [8.0, 8.0, np.inf]), "aorta", 200)

    # A stray liver-labelled speck in the left anterior abdominal wall: the kind of
    # annotation fragment that cleanup must drop. Image intensities stay soft tissue.
    z, y, x = grid.nearest_index(body_centre + [30.0, -40.0, -50.0])
    label[z, y, x : x + 2] = CT_LABELS["liver"]

    image += rng.normal(0.0, _CT_NOISE_HU, grid.shape)
    hu = np.clip(np.rint(image), -1024, 3071).astype(np.int16)

    kidney_label = label == CT_LABELS["kidney"]
    lung_label = label == CT_LABELS["lung"]
    truth = {
        "body_midline_x_mm": round(float(body_centre[0]), 3),
        "fov_centre_mm": [round(float(c), 3) for c in fov_centre],
        "direction": [float(d) for d in grid.direction.ravel()],
        "paired": {
            "kidney": {s: side_truth(grid, m & kidney_label) for s, m in kidney_masks.items()},
            "lung": {s: side_truth(grid, m & lung_label) for s, m in lung_masks.items()},
        },
    }
    return grid.to_image(hu), grid.to_image(label), truth


def write_torso_ct_case(path_image, path_label, **kwargs) -> dict:
    """Write one torso CT phantom (image and label, compressed NIfTI) and return its truth.

    Takes the keyword arguments of :func:`make_torso_ct_case` (``seed`` is required).
    """
    image, label, truth = make_torso_ct_case(**kwargs)
    sitk.WriteImage(image, str(path_image), useCompression=True)
    sitk.WriteImage(label, str(path_label), useCompression=True)
    return truth
