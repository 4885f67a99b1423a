"""Training and evaluation targets: which catalog masks, and where their 128³ patch starts.

Used by the trainer (`model.training`) and the evaluation (`model.evaluation`) alike. Patch starts are
stored-grid (z, y, x) voxel indices.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from catalog.reader import Catalog


def select_masks(
    catalog_root: str | Path,
    *,
    categories: Iterable[str] | None = None,
    groups: Iterable[str] | None = None,
    modalities: Iterable[str] | None = None,
    datasets: Iterable[str] | None = None,
    splits: Iterable[str] | None = None,
    cases: Iterable[str] | None = None,
    exclude_cases: Iterable[str] | None = None,
    status: str | None = "kept",
    min_stored_voxels: int = 1000,
) -> pd.DataFrame:
    """Masks of the catalog to train on: a pandas filter on masks.parquet.

    Every filter left at None selects everything; lists match any of their values. Masks whose image is
    not kept are never returned (they have no shard).

    Args:
        catalog_root (str | Path): catalog folder or s3:// URL.
        categories, groups, modalities, datasets, splits (iterables of str | None): allowed values.
        cases (iterable of str | None): only these cases, as "dataset/case_id".
        exclude_cases (iterable of str | None): never these cases, nor any case found to be the same scan
            as one of them (the image's ``duplicate_group``, see ``catalog.leaks``): a held-out case
            stays held out under another name.
        status (str | None): mask status ("kept"); None for any.
        min_stored_voxels (int): smallest mask, counted on the stored grid.

    Returns:
        DataFrame, one row per mask, sorted by mask_id, index reset: the masks.parquet columns plus
        ``shard_path`` and ``stored_shape_zyx`` of the image.
    """
    catalog = Catalog(catalog_root)
    masks = catalog.masks()
    keep = masks.stored_voxels.fillna(0) >= min_stored_voxels
    if status is not None:
        keep &= masks.status == status
    for column, allowed in (
        ("category", categories),
        ("group", groups),
        ("modality", modalities),
        ("dataset", datasets),
        ("split", splits),
    ):
        if allowed is not None:
            keep &= masks[column].isin(list(allowed))
    images = catalog.images()
    case_names = images.dataset + "/" + images.case_id
    for wanted, include in ((cases, True), (exclude_cases, False)):
        if wanted is None:
            continue
        wanted = set(wanted)
        unknown = sorted(wanted - set(case_names))
        if unknown:
            raise ValueError(f"no such case in the catalog: {', '.join(unknown)} (give them as dataset/case_id)")
        hit = case_names.isin(wanted)
        if not include:
            groups_hit = set(images.duplicate_group[hit].dropna())
            hit |= images.duplicate_group.isin(groups_hit)
        chosen = set(images.image_id[hit])
        keep &= masks.image_id.isin(chosen) if include else ~masks.image_id.isin(chosen)
    images = images[images.status == "kept"][["image_id", "shard_path", "stored_shape_zyx"]]
    selected = masks[keep].merge(images, on="image_id", how="inner")
    return selected.sort_values("mask_id").reset_index(drop=True)


def patch_start(
    bbox_zyx: np.ndarray, patch_size: int, rng: np.random.Generator | None
) -> np.ndarray:
    """Stored-grid (z, y, x) index of a patch's first voxel for a mask's bounding box.

    Args:
        bbox_zyx (ndarray): (6,) int, z0, y0, x0, z1, y1, x1 with exclusive ends.
        patch_size (int): patch edge P.
        rng (np.random.Generator | None): None centres the box (no jitter). Otherwise, per axis, the start is
            uniform over the positions that keep the box inside the patch when it fits, else the patch
            centre is a uniform voxel inside the box.

    Returns:
        ndarray (3,) int64.
    """
    bbox = np.asarray(bbox_zyx, dtype=np.int64)
    low, high = bbox[:3], bbox[3:]
    if rng is None:
        return (low + high) // 2 - patch_size // 2
    start = np.empty(3, dtype=np.int64)
    for axis in range(3):
        if high[axis] - low[axis] <= patch_size:
            start[axis] = rng.integers(high[axis] - patch_size, low[axis] + 1)
        else:
            start[axis] = rng.integers(low[axis], high[axis]) - patch_size // 2
    return start
