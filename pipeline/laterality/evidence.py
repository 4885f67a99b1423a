"""Is one mask bilateral? Evidence from the mask itself about the mid-sagittal plane x = c (world mm, LPS).

- balance: the smaller of its two sides' shares of the mask (0: all on one side, 0.5: even);
- symmetry: the fraction of its voxels whose mirror image about the plane is in the mask too;
- midline fraction: the share of its voxels within a band around the plane (a voxel or 1.5 mm wide);
- dip: its density per mm in that band over the lower of the two sides' peak densities per mm. A merged
  pair has a gap or a dip at the plane (< 1); a midline structure (brain stem, vermis, aorta, bladder) is
  densest there (>= 1).

Computed on voxels sampled at full resolution along the array axis closest to world x and strided along
the other two, at most about `_MAX_SAMPLES` per mask, so a large mask costs no more than a small one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.geometry import Geometry
from pipeline.steps.step2_mask_cleaning import ComponentTable

_MAX_SAMPLES = 2000
_MIN_BAND_MM = 1.5


@dataclass(frozen=True)
class BilateralEvidence:
    """Evidence of one mask about the plane; see the module docstring. `samples`: voxels looked at."""

    balance: float
    symmetry: float
    midline_fraction: float
    dip: float
    samples: int

    def is_bilateral(self, min_balance: float, min_symmetry: float, max_dip: float) -> bool:
        return self.balance >= min_balance and self.symmetry >= min_symmetry and self.dip <= max_dip


def bilateral_evidence(
    table: ComponentTable, component_ids: np.ndarray, geometry: Geometry, plane_x_mm: float
) -> BilateralEvidence:
    """Evidence of the mask made of `component_ids` of `table` (a (z, y, x) component map on `geometry`)."""
    member = np.zeros(table.count + 1, dtype=bool)
    member[component_ids] = True
    total = int(table.voxels[component_ids].sum())
    # The array axis along which world x changes most is sampled at full resolution (the profile needs it).
    x_axis = 2 - int(np.argmax(np.abs(geometry.matrix[0])))
    stride = max(1, math.ceil(math.sqrt(total / _MAX_SAMPLES)))
    steps = [stride, stride, stride]
    steps[x_axis] = 1
    points = []
    for cid in component_ids:
        z0, z1, y0, y1, x0, x1 = (int(v) for v in table.bbox[cid])
        starts = (z0, y0, x0)
        box = table.components[z0 : z1 + 1 : steps[0], y0 : y1 + 1 : steps[1], x0 : x1 + 1 : steps[2]]
        found = np.argwhere(box == cid)
        points.append(found * np.asarray(steps) + np.asarray(starts))
    points = np.concatenate(points) if points else np.zeros((0, 3), dtype=np.int64)
    if len(points) == 0:
        return BilateralEvidence(0.0, 0.0, 0.0, math.inf, 0)
    offset = geometry.index_zyx_to_world(points)[:, 0] - plane_x_mm
    n = len(points)
    left = int(np.count_nonzero(offset > 0))
    balance = min(left, n - left) / n

    step_zyx = np.linalg.inv(geometry.matrix)[:, 0][::-1]
    mirrored = np.rint(points - (2.0 * offset)[:, None] * step_zyx[None, :]).astype(np.int64)
    inside = np.all((mirrored >= 0) & (mirrored < np.asarray(table.components.shape)), axis=1)
    hits = mirrored[inside]
    symmetry = int(np.count_nonzero(member[table.components[hits[:, 0], hits[:, 1], hits[:, 2]]])) / n

    band = max(_MIN_BAND_MM, float(np.abs(geometry.matrix[0]).max()))
    in_band = int(np.count_nonzero(np.abs(offset) <= band))
    midline_density = in_band / (2 * band)
    peaks = []
    for side in (offset[offset > band], -offset[offset < -band]):
        if len(side) == 0:
            peaks.append(0.0)
            continue
        counts = np.bincount(((side - band) // (2 * band)).astype(np.int64))
        peaks.append(counts.max() / (2 * band))
    lower_peak = min(peaks)
    dip = midline_density / lower_peak if lower_peak > 0 else math.inf
    return BilateralEvidence(balance, symmetry, in_band / n, dip, n)
