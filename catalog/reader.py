"""Reading the catalog: the two tables as pandas DataFrames, and patches straight from the Zarr shards."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from catalog.chunk_cache import ChunkCache, prepare_window
from catalog.schema import IMAGE_SCHEMA, IMAGES_TABLE, MASK_SCHEMA
from catalog.store.location import CatalogLocation
from catalog.store.manifest import read_manifest, table_file


class CatalogNotFoundError(Exception):
    """The location holds no catalog (no images table)."""


class Catalog:
    """A curated catalog at `root`: a local folder or an ``s3://bucket/prefix`` URL.

    >>> cat = Catalog("catalog")                                     # doctest: +SKIP
    >>> m = cat.masks()
    >>> m[(m.status == "kept") & (m.modality == "CT") & (m.category == "liver") & (m.split == "train")]
    """

    def __init__(self, root: str | Path | CatalogLocation, chunk_cache_bytes: int = 0):
        """Open the catalog at `root`; `chunk_cache_bytes` > 0 keeps that many bytes of decoded chunks
        (a :class:`~catalog.chunk_cache.ChunkCache`) for :meth:`read_patch`; 0 decodes every read afresh.

        The table files are fixed when the catalog is opened (on S3: the manifest read then), so a run
        publishing meanwhile does not mix two versions into one reader."""
        self.location = CatalogLocation.parse(root)
        # A local catalog's root stays a Path (as before); an S3 catalog's is its URL.
        self.root: Path | str = self.location.local_path if self.location.is_local else self.location.url
        if chunk_cache_bytes < 0:
            raise ValueError(f"chunk_cache_bytes must be >= 0, got {chunk_cache_bytes}")
        if not self.location.is_local:
            self.location.check_access(for_writing=False)
        self._manifest = read_manifest(self.location)
        self._images_file = table_file(self.location, "images", self._manifest)
        self._masks_file = table_file(self.location, "masks", self._manifest)
        if self._images_file is None:
            raise CatalogNotFoundError(
                f"{self.root} holds no catalog: {IMAGES_TABLE} not found (run `sammed3d curate`)"
            )
        self._images: pd.DataFrame | None = None
        self._pid = os.getpid()
        self._shard_cache: dict[str, zarr.Group] = {}
        # Opening an array of a group reads its metadata (about 0.6 ms); a patch reader asks again and again.
        self._array_cache: dict[tuple[str, str], zarr.Array] = {}
        self.chunk_cache = ChunkCache(chunk_cache_bytes) if chunk_cache_bytes else None

    def images(self) -> pd.DataFrame:
        if self._images is None:
            self._images = self._read(self._images_file, IMAGE_SCHEMA)
        return self._images

    def masks(self) -> pd.DataFrame:
        if self._masks_file is None:
            return MASK_SCHEMA.empty_table().to_pandas()
        return self._read(self._masks_file, MASK_SCHEMA)

    def table(self, name: str, schema=None) -> pd.DataFrame | None:
        """Any other published table of the catalog (e.g. "duplicates") as a DataFrame, read with `schema` when
        given; None when absent. Of the version the catalog was opened at, like the images and masks."""
        relative = table_file(self.location, name, self._manifest)
        return None if relative is None else self._read(relative, schema)

    def _read(self, relative: str, schema) -> pd.DataFrame:
        return pd.read_parquet(self.location.path(relative), filesystem=self.location.fs, schema=schema)

    def shard(self, image_id: str) -> zarr.Group:
        """The image's Zarr group (arrays `image`, `label`; attrs with the stored geometry)."""
        self._reopen_after_fork()
        if image_id not in self._shard_cache:
            rows = self.images()
            row = rows[rows.image_id == image_id]
            if row.empty:
                raise KeyError(f"image {image_id!r} is not in the catalog")
            if row.iloc[0].status != "kept":
                raise KeyError(f"image {image_id!r} was rejected: {row.iloc[0].reason}")
            store = self.location.zarr_store(row.iloc[0].shard_path, read_only=True)
            self._shard_cache[image_id] = zarr.open_group(store=store, mode="r")
        return self._shard_cache[image_id]

    def array(self, image_id: str, name: str) -> zarr.Array:
        """The image's stored Zarr array `name` ("image" or "label"), opened once per catalog object."""
        key = (image_id, name)
        self._reopen_after_fork()
        if key not in self._array_cache:
            self._array_cache[key] = self.shard(image_id)[name]
        return self._array_cache[key]

    def _reopen_after_fork(self) -> None:
        """In a forked child, forget the parent's opened stores: an S3 store's connections and event loop
        belong to the parent process (they fail in the child with "attached to a different loop")."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._shard_cache.clear()
            self._array_cache.clear()

    def read_patch(
        self,
        image_id: str,
        center: tuple[int, int, int],
        size: tuple[int, int, int] = (128, 128, 128),
        arrays: tuple[str, ...] = ("image", "label"),
        pad_value: float = 0,
        out: dict[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Read a (z, y, x) patch of `size` centred on stored voxel `center`, zero-padded outside the image.

        Only the Zarr chunks that overlap the patch are read (and, with a chunk cache, only those not
        decoded before). The patch's first voxel is at stored index `center - size // 2` (returned under
        "start" as a (3,) int array). `out` may give, per array name, a buffer of `size` and the array's
        dtype to write the patch into (reused buffers spare a reader the page faults of fresh memory).
        """
        start = np.asarray(center, dtype=int) - np.asarray(size, dtype=int) // 2
        result: dict[str, np.ndarray] = {"start": start}
        for name in arrays:
            array = self.array(image_id, name)
            fill = pad_value if name == "image" else 0
            buffer = (out or {}).get(name)
            if self.chunk_cache is None:
                result[name] = read_window(array, start, size, fill, buffer)
            else:
                result[name] = self.chunk_cache.window(f"{image_id}/{name}", array, start, size, fill, buffer)
        return result


def read_window(
    array, start: np.ndarray, size: tuple[int, int, int], pad_value: float, out: np.ndarray | None = None
) -> np.ndarray:
    """`array[start : start + size]` for any start, with `pad_value` where the window leaves the array;
    written into `out` (shape `size`, the array's dtype) when given."""
    start = np.asarray(start, dtype=int)
    low, high, out = prepare_window(array, start, size, pad_value, out)
    if np.all(high > low):
        source = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
        target = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(low, high, start))
        out[target] = array[source]
    return out

