"""Reading the catalog: the two tables as pandas DataFrames, and patches straight from the Zarr shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from catalog.chunk_cache import ChunkCache
from catalog.schema import IMAGE_SCHEMA, IMAGES_TABLE, MASK_SCHEMA, MASKS_TABLE


class CatalogNotFoundError(Exception):
    """The folder holds no catalog (no images.parquet)."""


class Catalog:
    """A curated catalog at `root`.

    >>> cat = Catalog("catalog")                                     # doctest: +SKIP
    >>> m = cat.masks()
    >>> m[(m.status == "kept") & (m.modality == "CT") & (m.category == "liver") & (m.split == "train")]
    """

    def __init__(self, root: str | Path, chunk_cache_bytes: int = 0):
        """Open the catalog at `root`; `chunk_cache_bytes` > 0 keeps that many bytes of decoded chunks
        (a :class:`~catalog.chunk_cache.ChunkCache`) for :meth:`read_patch`; 0 decodes every read afresh."""
        self.root = Path(root)
        if not (self.root / IMAGES_TABLE).is_file():
            raise CatalogNotFoundError(f"{self.root} holds no catalog: {IMAGES_TABLE} not found (run `sammed3d curate`)")
        if chunk_cache_bytes < 0:
            raise ValueError(f"chunk_cache_bytes must be >= 0, got {chunk_cache_bytes}")
        self._images: pd.DataFrame | None = None
        self._shard_cache: dict[str, zarr.Group] = {}
        self.chunk_cache = ChunkCache(chunk_cache_bytes) if chunk_cache_bytes else None

    def images(self) -> pd.DataFrame:
        if self._images is None:
            self._images = pd.read_parquet(self.root / IMAGES_TABLE, schema=IMAGE_SCHEMA)
        return self._images

    def masks(self) -> pd.DataFrame:
        path = self.root / MASKS_TABLE
        return pd.read_parquet(path, schema=MASK_SCHEMA) if path.exists() else MASK_SCHEMA.empty_table().to_pandas()

    def shard(self, image_id: str) -> zarr.Group:
        """The image's Zarr group (arrays `image`, `label`; attrs with the stored geometry)."""
        if image_id not in self._shard_cache:
            rows = self.images()
            row = rows[rows.image_id == image_id]
            if row.empty:
                raise KeyError(f"image {image_id!r} is not in the catalog")
            if row.iloc[0].status != "kept":
                raise KeyError(f"image {image_id!r} was rejected: {row.iloc[0].reason}")
            self._shard_cache[image_id] = zarr.open_group(str(self.root / row.iloc[0].shard_path), mode="r")
        return self._shard_cache[image_id]

    def read_patch(
        self,
        image_id: str,
        center: tuple[int, int, int],
        size: tuple[int, int, int] = (128, 128, 128),
        arrays: tuple[str, ...] = ("image", "label"),
        pad_value: float = 0,
    ) -> dict[str, np.ndarray]:
        """Read a (z, y, x) patch of `size` centred on stored voxel `center`, zero-padded outside the image.

        Only the Zarr chunks that overlap the patch are read (and, with a chunk cache, only those not
        decoded before). The patch's first voxel is at stored index `center - size // 2` (returned under
        "start" as a (3,) int array).
        """
        group = self.shard(image_id)
        start = np.asarray(center, dtype=int) - np.asarray(size, dtype=int) // 2
        result: dict[str, np.ndarray] = {"start": start}
        for name in arrays:
            array = group[name]
            fill = pad_value if name == "image" else 0
            if self.chunk_cache is None:
                result[name] = read_window(array, start, size, fill)
            else:
                result[name] = self.chunk_cache.window(f"{image_id}/{name}", array, start, size, fill)
        return result


def read_window(array, start: np.ndarray, size: tuple[int, int, int], pad_value: float) -> np.ndarray:
    """`array[start : start + size]` for any start, with `pad_value` where the window leaves the array."""
    shape = np.asarray(array.shape)
    start = np.asarray(start, dtype=int)
    stop = start + np.asarray(size)
    low = np.clip(start, 0, shape)
    high = np.clip(stop, 0, shape)
    out = np.full(tuple(size), pad_value, dtype=array.dtype)
    if np.all(high > low):
        source = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
        target = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(low, high, start))
        out[target] = array[source]
    return out

