"""Voxel grid geometry: index (z, y, x) <-> world (x, y, z) in mm, LPS, as SimpleITK defines it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class Geometry:
    """A voxel grid. `spacing_xyz`/`origin_xyz` in mm, `direction` 3×3 row-major cosines (columns = axes)."""

    spacing_xyz: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> "Geometry":
        return cls(
            spacing_xyz=tuple(float(v) for v in image.GetSpacing()),
            origin_xyz=tuple(float(v) for v in image.GetOrigin()),
            direction=tuple(float(v) for v in image.GetDirection()),
        )

    @property
    def matrix(self) -> np.ndarray:
        """(3, 3) matrix M with world_xyz = origin + M @ index_xyz (direction times spacing)."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3) * np.asarray(self.spacing_xyz)[None, :]

    def index_zyx_to_world(self, index_zyx: np.ndarray) -> np.ndarray:
        """(..., 3) continuous (z, y, x) indices -> (..., 3) world (x, y, z) mm."""
        index_xyz = np.asarray(index_zyx, dtype=float)[..., ::-1]
        return index_xyz @ self.matrix.T + np.asarray(self.origin_xyz)

    def world_to_index_zyx(self, world_xyz: np.ndarray) -> np.ndarray:
        """(..., 3) world (x, y, z) mm -> (..., 3) continuous (z, y, x) indices."""
        offset = np.asarray(world_xyz, dtype=float) - np.asarray(self.origin_xyz)
        index_xyz = offset @ np.linalg.inv(self.matrix).T
        return index_xyz[..., ::-1]

    def world_x_of_box(self, z0: int, z1: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """World x (mm, LPS: larger = patient's left) of every voxel in [z0:z1, y0:y1, x0:x1], shape (dz, dy, dx)."""
        row = self.matrix[0]  # world x depends on index x, y, z through the first row of M
        zs = np.arange(z0, z1, dtype=float)[:, None, None] * row[2]
        ys = np.arange(y0, y1, dtype=float)[None, :, None] * row[1]
        xs = np.arange(x0, x1, dtype=float)[None, None, :] * row[0]
        return self.origin_xyz[0] + zs + ys + xs
