"""Step 2: split a label map into one mask per label value, with component statistics, and reject
masks that are empty, too small, or scattered noise.

One connected-components pass over the whole multi-label map (cc3d never joins voxels of different
values), instead of one scipy call per label.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np

from pipeline.config import CurationConfig


@dataclass(frozen=True)
class ComponentTable:
    """Connected components of a label map. Index 0 is the background.

    components: (z, y, x) component ids; label_of, voxels: (N+1,);
    bbox: (N+1, 6) inclusive [z0, z1, y0, y1, x0, x1]; centroid_zyx: (N+1, 3) voxel indices.
    """

    components: np.ndarray
    label_of: np.ndarray
    voxels: np.ndarray
    bbox: np.ndarray
    centroid_zyx: np.ndarray

    @property
    def count(self) -> int:
        return len(self.voxels) - 1


def find_components(label_map: np.ndarray, connectivity: int = 26) -> ComponentTable:
    """Label connected components of every value of a (z, y, x) integer label map in one pass."""
    components = cc3d.connected_components(label_map, connectivity=connectivity)
    stats = cc3d.statistics(components, no_slice_conversion=True)
    label_of = np.zeros(len(stats["voxel_counts"]), dtype=np.int64)
    label_of[components.ravel()] = label_map.ravel()
    label_of[0] = 0
    return ComponentTable(
        components=components,
        label_of=label_of,
        voxels=stats["voxel_counts"].astype(np.int64),
        bbox=stats["bounding_boxes"].astype(np.int64),
        centroid_zyx=np.asarray(stats["centroids"], dtype=float),
    )


@dataclass(frozen=True)
class MaskStatistics:
    """One label value's mask before cleanup. `component_ids` are sorted by size, largest first.

    bbox_zyx: (z0, y0, x0, z1, y1, x1), exclusive ends, in the source voxel grid.
    """

    label_value: int
    voxels: int
    component_ids: np.ndarray
    component_sizes: np.ndarray
    bbox_zyx: tuple[int, int, int, int, int, int]
    bg_fraction_bbox: float
    bg_fraction_volume: float

    def top_sizes(self, k: int) -> list[int]:
        return [int(v) for v in self.component_sizes[:k]]

    def other_voxels(self, k: int) -> int:
        return int(self.component_sizes[k:].sum())


def mask_statistics(table: ComponentTable) -> dict[int, MaskStatistics]:
    """Statistics of every label value present in the table, keyed by label value."""
    total = int(table.components.size)
    ids = np.arange(1, table.count + 1)
    order = ids[np.lexsort((-table.voxels[ids], table.label_of[ids]))]
    labels = table.label_of[order]
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]]) if len(order) else np.array([], int)
    result = {}
    for start, end in zip(starts, np.r_[starts[1:], len(order)]):
        members = order[start:end]
        boxes = table.bbox[members]
        z0, y0, x0 = boxes[:, 0].min(), boxes[:, 2].min(), boxes[:, 4].min()
        z1, y1, x1 = boxes[:, 1].max() + 1, boxes[:, 3].max() + 1, boxes[:, 5].max() + 1
        voxels = int(table.voxels[members].sum())
        box_volume = int((z1 - z0) * (y1 - y0) * (x1 - x0))
        value = int(labels[start])
        result[value] = MaskStatistics(
            label_value=value,
            voxels=voxels,
            component_ids=members,
            component_sizes=table.voxels[members],
            bbox_zyx=(int(z0), int(y0), int(x0), int(z1), int(y1), int(x1)),
            bg_fraction_bbox=1.0 - voxels / box_volume,
            bg_fraction_volume=1.0 - voxels / total,
        )
    return result


def rejection_reason(
    voxels: int, bg_fraction_bbox: float, bg_fraction_volume: float, voxel_volume_mm3: float, config: CurationConfig
) -> str | None:
    """Why a mask is dropped at step 2, or None when it is kept."""
    volume_mm3 = voxels * voxel_volume_mm3
    if voxels < config.min_mask_voxels:
        return f"only {voxels} voxels (minimum {config.min_mask_voxels}): no shape to learn"
    if volume_mm3 < config.min_mask_volume_mm3:
        return f"volume {volume_mm3:.1f} mm³ below {config.min_mask_volume_mm3:g} mm³"
    fraction = bg_fraction_bbox if config.background_region == "bbox" else bg_fraction_volume
    if fraction > config.max_background_fraction:
        return (
            f"background fraction {fraction:.4f} over its {config.background_region} "
            f"exceeds {config.max_background_fraction:g}"
        )
    return None
