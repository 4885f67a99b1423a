"""Where a merged pair that touches across the mid-sagittal plane is cut: along the gap between its
halves where one shows, else along the plane bent smoothly towards the gaps nearby.

Two hemispheres' regions meet at the interhemispheric fissure, which is not flat (the occipital poles
lean to one side by several mm). Along each row of voxels in the array axis closest to world x, a merged
mask that crosses the plane often shows a run of background between its halves: its centre is where the
halves part. Rows where they touch take the smoothed offset of the rows around them (a Gaussian-weighted
mean over the grid of rows), and rows with no gap nearby take the plane itself.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipeline.geometry import Geometry
from pipeline.steps.step2_mask_cleaning import ComponentTable

_WINDOW_MM = 5.0  # gaps farther from the plane than this are sulci, not the fissure
_SIGMA_MM = 4.0  # smoothing of the offsets over the grid of rows
_MIN_WEIGHT = 0.05  # smoothed weight below which a row has no gap nearby: it takes the plane


class CutSurface:
    """The cut x = plane + offset(row) in world mm (LPS). `offset_voxels`: per row of the array axis
    `x_axis`, indexed by the other two axes in (z, y, x) order; None for the flat plane."""

    def __init__(self, geometry: Geometry, plane_x_mm: float, offset_voxels: np.ndarray | None = None):
        self.geometry = geometry
        self.plane_x_mm = plane_x_mm
        self.x_axis = _x_axis(geometry)
        self.offset_voxels = offset_voxels
        self._per_step = _world_x_per_step(geometry)

    def on_left(self, z0: int, z1: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Boolean (dz, dy, dx): voxels of [z0:z1, y0:y1, x0:x1] on the patient's left of the cut."""
        world_x = self.geometry.world_x_of_box(z0, z1, y0, y1, x0, x1)
        if self.offset_voxels is None:
            return world_x > self.plane_x_mm
        box = [(z0, z1), (y0, y1), (x0, x1)]
        rows = tuple(slice(*box[a]) for a in range(3) if a != self.x_axis)
        offset = np.expand_dims(self.offset_voxels[rows], self.x_axis)
        return world_x - self._per_step * offset > self.plane_x_mm


def estimate_cut_surface(
    table: ComponentTable, component_ids: list[int], geometry: Geometry, plane_x_mm: float, shape: tuple
) -> CutSurface:
    """The cut for the components (ids of `table`, a (z, y, x) map of `shape`) of masks being split,
    from the gaps each shows near the plane. Without any gap it is the plane itself."""
    x_axis = _x_axis(geometry)
    per_step = _world_x_per_step(geometry)
    window = max(2, int(np.ceil(_WINDOW_MM / abs(per_step))))
    rows_shape = tuple(n for a, n in enumerate(shape) if a != x_axis)
    weight = np.zeros(rows_shape)
    total = np.zeros(rows_shape)
    for cid in component_ids:
        z0, z1, y0, y1, x0, x1 = (int(v) for v in table.bbox[cid])
        low, high = [z0, y0, x0], [z1 + 1, y1 + 1, x1 + 1]
        crossing = _plane_index(geometry, plane_x_mm, low, high, x_axis)
        low[x_axis] = max(low[x_axis], int(np.floor(crossing.min())) - window)
        high[x_axis] = min(high[x_axis], int(np.ceil(crossing.max())) + window + 1)
        if high[x_axis] - low[x_axis] < 3:
            continue
        block = table.components[low[0] : high[0], low[1] : high[1], low[2] : high[2]] == cid
        block = np.moveaxis(block, x_axis, -1)  # (rows a, rows b, t)
        t = np.arange(low[x_axis], high[x_axis], dtype=float)
        crossing = np.moveaxis(_plane_index(geometry, plane_x_mm, low, high, x_axis), x_axis, -1)
        centre = _gap_centres(block, t[None, None, :] - crossing)
        found = np.isfinite(centre)
        rows = tuple(slice(low[a], high[a]) for a in range(3) if a != x_axis)
        weight[rows] += found
        total[rows] += np.where(found, centre, 0.0)
    if not weight.any():
        return CutSurface(geometry, plane_x_mm)
    sigma = [_SIGMA_MM / s for a, s in enumerate(geometry.spacing_xyz[::-1]) if a != x_axis]
    smooth_weight = ndimage.gaussian_filter(weight, sigma, mode="constant")
    smooth_total = ndimage.gaussian_filter(total, sigma, mode="constant")
    offset = np.where(smooth_weight > _MIN_WEIGHT, smooth_total / np.maximum(smooth_weight, 1e-12), 0.0)
    measured = weight > 0
    offset[measured] = total[measured] / weight[measured]
    return CutSurface(geometry, plane_x_mm, np.clip(offset, -window, window))


def _gap_centres(block: np.ndarray, relative: np.ndarray) -> np.ndarray:
    """Per row of a (A, B, T) boolean block: the centre (in steps from the plane, `relative` (A, B, T))
    of the background run nearest the plane that has mask on both sides; NaN where there is none."""
    before = np.logical_or.accumulate(block, axis=-1)
    after = np.logical_or.accumulate(block[..., ::-1], axis=-1)[..., ::-1]
    gap = ~block & before & after
    distance = np.where(gap, np.abs(relative), np.inf)
    nearest = np.argmin(distance, axis=-1)
    has_gap = np.isfinite(np.take_along_axis(distance, nearest[..., None], axis=-1)[..., 0])
    # The run holding the nearest gap voxel: same run id as it.
    starts = gap & ~np.concatenate([np.zeros_like(gap[..., :1]), gap[..., :-1]], axis=-1)
    run = np.cumsum(starts, axis=-1) * gap
    chosen = np.take_along_axis(run, nearest[..., None], axis=-1)
    in_run = (run == chosen) & gap
    count = in_run.sum(axis=-1)
    centre = np.where(in_run, relative, 0.0).sum(axis=-1) / np.maximum(count, 1)
    return np.where(has_gap, centre, np.nan)


def _x_axis(geometry: Geometry) -> int:
    """The (z, y, x) array axis along which world x changes most."""
    return 2 - int(np.argmax(np.abs(geometry.matrix[0])))


def _world_x_per_step(geometry: Geometry) -> float:
    """World x change (mm) per voxel step along `_x_axis`."""
    return float(geometry.matrix[0, 2 - _x_axis(geometry)])


def _plane_index(geometry: Geometry, plane_x_mm: float, low, high, x_axis: int) -> np.ndarray:
    """Continuous index along `x_axis` where each row of the box [low, high) meets the plane; the array
    has the box's shape with length 1 along `x_axis`."""
    corner = list(low)
    stop = list(high)
    stop[x_axis] = corner[x_axis] + 1
    world_x = geometry.world_x_of_box(corner[0], stop[0], corner[1], stop[1], corner[2], stop[2])
    return corner[x_axis] + (plane_x_mm - world_x) / _world_x_per_step(geometry)
