"""The voxel grid of a phantom, with the LPS world position of every voxel centre, and shared helpers.

numpy arrays are indexed (z, y, x); SimpleITK sizes, spacings and indices are (x, y, z); world
coordinates are millimetres in LPS (+x = patient's left, +y = posterior, +z = superior).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

LPS_DIRECTION = np.eye(3)
# How SimpleITK reports a NIfTI stored RAS (index i towards the patient's right, j towards
# anterior): the same anatomy, with the array flipped relative to LPS storage.
RAS_ON_DISK_DIRECTION = np.diag([-1.0, -1.0, 1.0])

Seed = int | Sequence[int]


class PhantomGrid:
    """A voxel grid and the LPS world position (mm) of every voxel centre.

    ``world`` is a tuple of three float arrays (world x, y, z), each shaped (z, y, x) like
    the image arrays.
    """

    def __init__(self, size, spacing, direction, fov_centre):
        self.size = tuple(int(n) for n in size)
        self.spacing = tuple(float(s) for s in spacing)
        self.direction = np.asarray(direction, dtype=float).reshape(3, 3)
        if len(self.size) != 3 or len(self.spacing) != 3:
            raise ValueError("size and spacing must have three (x, y, z) entries")
        # Column c of `step` is the world displacement of one voxel along index axis c.
        self._step = self.direction * np.asarray(self.spacing)
        half_extent = self._step @ ((np.asarray(self.size) - 1) / 2.0)
        self.origin = np.asarray(fov_centre, dtype=float) - half_extent
        ix, iy, iz = (np.arange(n, dtype=float) for n in self.size)
        self.shape = self.size[::-1]
        self.world = tuple(
            self.origin[r]
            + self._step[r, 0] * ix[None, None, :]
            + self._step[r, 1] * iy[None, :, None]
            + self._step[r, 2] * iz[:, None, None]
            for r in range(3)
        )

    def ellipsoid(self, centre, semi_axes) -> np.ndarray:
        """Voxels inside a world-axis-aligned ellipsoid; an infinite semi-axis makes a cylinder."""
        total = np.zeros(self.shape)
        for w, c, a in zip(self.world, centre, semi_axes):
            if np.isfinite(a):
                total += ((w - c) / a) ** 2
        return total <= 1.0

    def nearest_index(self, point) -> tuple[int, int, int]:
        """(z, y, x) array index of the voxel nearest a world point; ValueError if outside."""
        continuous = np.linalg.solve(self._step, np.asarray(point, dtype=float) - self.origin)
        ijk = np.rint(continuous).astype(int)
        if np.any(ijk < 0) or np.any(ijk >= np.asarray(self.size)):
            raise ValueError(f"world point {tuple(point)} mm lies outside the field of view")
        return int(ijk[2]), int(ijk[1]), int(ijk[0])

    def centroid(self, mask: np.ndarray) -> list[float]:
        return [round(float(w[mask].mean()), 3) for w in self.world]

    def to_image(self, array: np.ndarray) -> sitk.Image:
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(self.spacing)
        image.SetOrigin(tuple(float(o) for o in self.origin))
        image.SetDirection(tuple(float(d) for d in self.direction.ravel()))
        return image


def side_truth(grid: PhantomGrid, mask: np.ndarray) -> dict:
    return {"centroid_mm": grid.centroid(mask), "voxels": int(mask.sum())}


def jitter(rng: np.random.Generator, centre, semi_axes, shift_mm=3.0, scale=0.08):
    """Per-case variation: centre moved up to ±shift_mm per axis, each semi-axis scaled ±scale."""
    centre = np.asarray(centre, dtype=float) + rng.uniform(-shift_mm, shift_mm, 3)
    semi_axes = np.asarray(semi_axes, dtype=float) * rng.uniform(1 - scale, 1 + scale, 3)
    return centre, semi_axes
