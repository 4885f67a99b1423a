"""Step 3: label quality. Keep the k largest connected components of each mask (paper: k = 5, 26-connected)."""

from __future__ import annotations

import numpy as np

from pipeline.steps.step2_mask_cleaning import ComponentTable, MaskStatistics, find_components, mask_statistics


def largest_component_ids(stats: MaskStatistics, k: int) -> np.ndarray:
    """Ids of the k largest components of one mask (ties broken by component id, so deterministic)."""
    return stats.component_ids[:k]


def keep_largest_components(label_map: np.ndarray, k: int = 5, connectivity: int = 26) -> np.ndarray:
    """Return a copy of a (z, y, x) label map where each value keeps only its k largest components.

    >>> m = np.zeros((1, 1, 5), np.uint8); m[0, 0, [0, 2, 3]] = 1
    >>> keep_largest_components(m, k=1)[0, 0].tolist()
    [0, 0, 1, 1, 0]
    """
    table = find_components(label_map, connectivity)
    return apply_component_selection(table, kept_components(table, k))


def kept_components(table: ComponentTable, k: int) -> np.ndarray:
    """(N+1,) bool: True for components among the k largest of their label value."""
    keep = np.zeros(table.count + 1, dtype=bool)
    for stats in mask_statistics(table).values():
        keep[largest_component_ids(stats, k)] = True
    return keep


def apply_component_selection(table: ComponentTable, keep: np.ndarray) -> np.ndarray:
    lut = np.where(keep, table.label_of, 0).astype(table.label_of.dtype)
    return lut[table.components]
