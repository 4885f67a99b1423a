"""Training samples from the catalog: mask selection, per-sample intensity normalisation, 128³ patches.

A sample is one catalog mask: a P³ patch of its image at the stored spacing (1.5 mm by default) that holds
the mask's bounding box at a random position (jittered, not centred), zero-padded where it leaves the image,
randomly flipped, with the binary target of that mask. Arrays are (z, y, x); patch starts are stored-grid
voxel indices.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from catalog.reader import Catalog

CT_WINDOW_HU = (-1000.0, 1000.0)

# Columns a PatchDataset needs from a mask table (select_masks returns them).
SAMPLE_COLUMNS = ("mask_id", "image_id", "modality", "label_value", "bbox_zyx")


def normalize_intensity(patch: np.ndarray, modality: str) -> np.ndarray:
    """Z-score one sample's intensities, as the network expects them.

    CT is first clipped to [-1000, 1000] HU. Mean and standard deviation are taken over the voxels above 0
    (the foreground of MR, and of CT tissue denser than water); over all voxels when none is above 0. Never
    over a batch: each sample is normalised on its own.

    Args:
        patch (ndarray): (D, H, W) raw stored intensities (CT in HU).
        modality (str): the catalog's modality of the image ("CT", "MR", ...).

    Returns:
        ndarray (D, H, W) float32.
    """
    values = np.array(patch, dtype=np.float32, order="C")
    if modality == "CT":
        np.clip(values, *CT_WINDOW_HU, out=values)
    foreground = values[values > 0]
    reference = foreground if foreground.size else values.reshape(-1)
    # In place and with one pass per moment: this runs once per sample on a DataLoader worker.
    mean = float(reference.sum(dtype=np.float64)) / reference.size
    centred = reference - np.float32(mean)
    std = (float(np.dot(centred, centred)) / reference.size) ** 0.5
    values -= np.float32(mean)
    values *= np.float32(1.0 / (std if std > 0 else 1.0))
    return values


def select_masks(
    catalog_root: str | Path,
    *,
    categories: Iterable[str] | None = None,
    groups: Iterable[str] | None = None,
    modalities: Iterable[str] | None = None,
    datasets: Iterable[str] | None = None,
    splits: Iterable[str] | None = None,
    status: str | None = "kept",
    min_stored_voxels: int = 1000,
) -> pd.DataFrame:
    """Masks of the catalog to train on: a pandas filter on masks.parquet.

    Every filter left at None selects everything; lists match any of their values. Masks whose image is
    not kept are never returned (they have no shard).

    Args:
        catalog_root (str | Path): catalog folder.
        categories, groups, modalities, datasets, splits (iterables of str | None): allowed values.
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


class PatchDataset(Dataset):
    """One training sample per catalog mask.

    Args:
        catalog_root (str | Path): catalog folder.
        masks (DataFrame): rows from :func:`select_masks` (needs SAMPLE_COLUMNS).
        patch_size (int): patch edge P in stored voxels (128 for the network).
        jitter (bool): place the mask's box at a random position in the patch; False centres it.
        flips (bool): flip each axis with probability 0.5.
        min_voxels (int): a crop holding fewer mask voxels is drawn again (when the mask is larger
            than the patch), up to max_tries times; then the try with the most mask voxels is used.
        seed (int): with the epoch and the index, fixes every random choice of a sample.
        max_tries (int): crops drawn at most per sample.
        cache_mb (int): MiB of decoded Zarr chunks each process keeps (:class:`catalog.chunk_cache.ChunkCache`),
            so the masks of one image share its decoding; 0 decodes every patch afresh. Each DataLoader
            worker holds its own cache.

    Item ``i`` is a dict:
        image (FloatTensor): (1, P, P, P) intensities normalised by :func:`normalize_intensity`.
        label (ByteTensor): (1, P, P, P) uint8, 1 inside the mask, 0 elsewhere (a quarter of float32's bytes
            to pass from a DataLoader worker; the trainer converts it on the device).
        mask_id (str): the catalog mask.
        start (LongTensor): (3,) stored (z, y, x) index of the patch's first voxel, before flips.
        flipped (BoolTensor): (3,) whether the z, y, x axes were flipped.
        epoch (int), index (int): which draw this is.

    ``dataset[(epoch, i)]`` draws sample i of that epoch whatever :meth:`set_epoch` said, so one
    DataLoader, its workers started once, can run over many epochs.

    Shards are opened lazily, once per process, so DataLoader workers each hold their own handles.
    ``dataset[i]`` uses the epoch of :meth:`set_epoch` (workers get a copy when the iterator starts).
    """

    def __init__(
        self,
        catalog_root: str | Path,
        masks: pd.DataFrame,
        *,
        patch_size: int = 128,
        jitter: bool = True,
        flips: bool = True,
        min_voxels: int = 1000,
        seed: int = 0,
        max_tries: int = 10,
        cache_mb: int = 512,
    ) -> None:
        missing = [c for c in SAMPLE_COLUMNS if c not in masks.columns]
        if missing:
            raise ValueError(f"mask table lacks columns {missing}; build it with select_masks")
        if max_tries < 1:
            raise ValueError(f"max_tries must be at least 1, got {max_tries}")
        if cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0, got {cache_mb}")
        self.catalog_root = Path(catalog_root)
        self.mask_ids = [str(v) for v in masks.mask_id]
        self.image_ids = [str(v) for v in masks.image_id]
        self.modalities = [str(v) for v in masks.modality]
        self.label_values = [int(v) for v in masks.label_value]
        self.bboxes = [np.asarray(v, dtype=np.int64) for v in masks.bbox_zyx]
        self.patch_size = int(patch_size)
        self.jitter = jitter
        self.flips = flips
        self.min_voxels = int(min_voxels)
        self.seed = int(seed)
        self.max_tries = int(max_tries)
        self.cache_mb = int(cache_mb)
        self.epoch = 0
        self._catalog: Catalog | None = None
        self._catalog_pid: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Draw the crops and flips of epoch ``epoch`` from now on."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.mask_ids)

    def __getstate__(self) -> dict:
        # Zarr handles stay in the process that opened them; a worker opens its own.
        state = dict(self.__dict__)
        state["_catalog"] = None
        state["_catalog_pid"] = None
        return state

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None or self._catalog_pid != os.getpid():
            self._catalog = Catalog(self.catalog_root, chunk_cache_bytes=self.cache_mb << 20)
            self._catalog_pid = os.getpid()
        return self._catalog

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (self.epoch, int(key))
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        rng = np.random.default_rng([self.seed, epoch, index])
        size = (self.patch_size,) * 3
        image_id, value = self.image_ids[index], self.label_values[index]
        best_start, best_label, best_count = None, None, -1
        for _ in range(self.max_tries):
            start = patch_start(self.bboxes[index], self.patch_size, rng if self.jitter else None)
            center = tuple(int(v) for v in start + self.patch_size // 2)
            label = self.catalog.read_patch(image_id, center, size, arrays=("label",))["label"] == value
            count = int(label.sum())
            if count > best_count:
                best_start, best_label, best_count = start, label, count
            if count >= self.min_voxels or not self.jitter:
                break
        center = tuple(int(v) for v in best_start + self.patch_size // 2)
        image = self.catalog.read_patch(image_id, center, size, arrays=("image",))["image"]
        flipped = rng.random(3) < 0.5 if self.flips else np.zeros(3, dtype=bool)
        axes = tuple(int(a) for a in np.flatnonzero(flipped))
        if axes:
            # Flipped views: the float32 conversions below make the contiguous copies.
            image, best_label = np.flip(image, axes), np.flip(best_label, axes)
        image = normalize_intensity(image, self.modalities[index])
        return {
            "image": torch.from_numpy(image)[None],
            "label": torch.from_numpy(np.array(best_label, dtype=np.uint8, order="C"))[None],
            "mask_id": self.mask_ids[index],
            "start": torch.from_numpy(best_start.astype(np.int64)),
            "flipped": torch.from_numpy(flipped),
            "epoch": epoch,
            "index": index,
        }
