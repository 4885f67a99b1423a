"""Atomic catalog writes, in a local folder or under an S3 prefix (`catalog.store.CatalogLocation`).

Order of a run: each image's Zarr shard is written under its own content-addressed name
(`shards/<dataset>/<image_id>-<content key>.zarr`, see pipeline.catalog_rows.shard_path); then its rows go
to a per-case part file; at the end of the run the parts are folded into the images and masks tables, published at once
(`catalog.store.manifest`). A reader only reads the published tables, so it never sees a row whose shard is
missing, and a run killed at any point leaves the tables as they were; the next run picks up the finished
parts and redoes the rest.

Locally a shard is written under a temporary name and renamed into place, and a part or table by temporary
file + rename. On S3 a shard is a set of objects under a prefix that no published table names until the
run publishes; a part is one PUT (atomic), the images part last, marking the case complete.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import zarr
from zarr.codecs import ZstdCodec
from zarr.storage import MemoryStore

from catalog.leaks import apply_group_splits, pairs_table, previous_pairs, update_duplicate_pairs
from catalog.schema import (
    CHUNK_SHAPE,
    DUPLICATES,
    IMAGE_SCHEMA,
    MASK_SCHEMA,
    PARTS_DIR,
    SHARD_SHAPE,
    SHARDS_DIR,
    table_from_rows,
)
from catalog.store.location import TMP_PREFIX, CatalogLocation
from catalog.store.manifest import publish_tables, read_manifest, table_file

_OLD_PREFIX = ".old-"
_IMAGES_PART = ".images.parquet"  # a case's images part, written last: marks the case complete


def write_shard(
    root: str | Path | CatalogLocation,
    shard_path: str,
    image: np.ndarray,
    label: np.ndarray,
    attrs: dict,
) -> str:
    """Write one image's Zarr v3 group (`image`, `label`: (z, y, x) arrays, 64³ chunks in 128³ shards, zstd).

    `shard_path` is relative to the catalog root (the image row's `shard_path`). `attrs` should carry the
    stored geometry so a patch can be mapped back to world space. Returns the shard's path or URL.
    """
    location = CatalogLocation.parse(root)
    if not location.is_local:
        # Encoded in memory, then one batch of PUTs: no object of the prefix is ever deleted, so a prefix a
        # published table names (same name = same content, see pipeline.curate) is at worst rewritten with
        # the same bytes, and a prefix left half-written by a killed run is completed.
        objects: dict = {}
        _fill_group(zarr.open_group(store=MemoryStore(objects), mode="w", zarr_format=3), image, label, attrs)
        location.fs.pipe({location.path(f"{shard_path}/{key}"): value.to_bytes() for key, value in objects.items()})
        return location.url_of(shard_path)
    final = location.local_path / shard_path
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{TMP_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
    _fill_group(zarr.open_group(store=str(tmp), mode="w", zarr_format=3), image, label, attrs)
    if final.exists():
        old = final.parent / f"{_OLD_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    return str(final)


def _fill_group(group: zarr.Group, image: np.ndarray, label: np.ndarray, attrs: dict) -> None:
    for name, data in (("image", image), ("label", label)):
        group.create_array(
            name,
            data=np.ascontiguousarray(data),
            chunks=tuple(min(c, s) for c, s in zip(CHUNK_SHAPE, data.shape)),
            shards=tuple(_shard_extent(c, s) for c, s in zip(CHUNK_SHAPE, data.shape)),
            compressors=ZstdCodec(level=3),
        )
    group.attrs.update(attrs)


def _shard_extent(chunk: int, size: int) -> int:
    """Shard edge: SHARD_SHAPE, or fewer whole chunks for a small axis (a multiple of the chunk edge)."""
    chunk = min(chunk, size)
    return min(SHARD_SHAPE[0], -(-size // chunk) * chunk)


def write_part(root: str | Path | CatalogLocation, key: str, image_rows: list[dict], mask_rows: list[dict]) -> None:
    """Persist the rows of one finished case; the images part is written last and marks it complete."""
    location = CatalogLocation.parse(root)
    location.write_parquet(table_from_rows(mask_rows, MASK_SCHEMA), _masks_part(key))
    location.write_parquet(table_from_rows(image_rows, IMAGE_SCHEMA), _images_part(key))


def finished_parts(root: str | Path | CatalogLocation) -> list[str]:
    location = CatalogLocation.parse(root)
    return sorted(name[: -len(_IMAGES_PART)] for name in location.list(PARTS_DIR) if name.endswith(_IMAGES_PART))


def read_part_images(root: str | Path | CatalogLocation, key: str) -> pd.DataFrame:
    return CatalogLocation.parse(root).read_parquet(_images_part(key)).to_pandas()


def consolidate(
    root: str | Path | CatalogLocation, split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> tuple[int, int]:
    """Fold finished parts into the two tables (rows of the same image replaced), publish them, clean up.

    Returns the number of image and mask rows in the new tables. Locally it also removes temporary files
    and shards left by a killed run and shards no kept row points to; on S3 it removes nothing but the
    folded parts (a reader of the previous manifest may still read the old shards: `sammed3d catalog gc`
    removes them). Call it only while holding the catalog's lock (catalog.store.locking), after every
    writer of the run has finished: any temporary file is then an orphan.
    """
    location = CatalogLocation.parse(root)
    if location.is_local:
        _remove_temporary_files(location.local_path)
    keys = finished_parts(location)
    manifest = read_manifest(location)
    images_file, masks_file = table_file(location, "images", manifest), table_file(location, "masks", manifest)
    if not keys and images_file is not None:
        return location.parquet_rows(images_file), location.parquet_rows(masks_file) if masks_file else 0
    images = _read_table(location, images_file, IMAGE_SCHEMA)
    masks = _read_table(location, masks_file, MASK_SCHEMA)
    # A catalog from before the pairs table (or a first run) gets one full search.
    pairs_file = table_file(location, DUPLICATES, manifest)
    # Pairs stored under another rule (MIN_CORRELATION...) are searched anew.
    previous = previous_pairs(None if pairs_file is None else location.read_parquet(pairs_file))
    changed: set[str] = set()
    if keys:
        new_images = pa.concat_tables([location.read_parquet(_images_part(k)) for k in keys])
        new_masks = pa.concat_tables(
            [location.read_parquet(_masks_part(k)) for k in keys if location.exists(_masks_part(k))]
        )
        changed = set(new_images.column("image_id").to_pylist())
        replaced = pa.array(sorted(changed))
        images = pa.concat_tables([_without(images, replaced), new_images.cast(IMAGE_SCHEMA)])
        masks = pa.concat_tables([_without(masks, replaced), new_masks.cast(MASK_SCHEMA)])
    pairs = update_duplicate_pairs(images, previous, changed)
    images, masks = apply_group_splits(images, masks, split_fractions, pairs)
    images = images.sort_by("image_id")
    masks = masks.sort_by("mask_id")
    duplicates = pairs_table(pairs)
    # Images last: locally each table is replaced in this order, and image rows point at the others.
    publish_tables(location, {"masks": masks, DUPLICATES: duplicates, "images": images})
    for key in keys:
        location.remove(_masks_part(key))
        location.remove(_images_part(key))
    if location.is_local:
        _remove_stale_shards(location.local_path, images)
    return images.num_rows, masks.num_rows


def _images_part(key: str) -> str:
    return f"{PARTS_DIR}/{key}{_IMAGES_PART}"


def _masks_part(key: str) -> str:
    return f"{PARTS_DIR}/{key}.masks.parquet"


def _without(table: pa.Table, image_ids: pa.Array) -> pa.Table:
    if table.num_rows == 0:
        return table
    return table.filter(pc.invert(pc.is_in(table.column("image_id"), value_set=image_ids)))


def _read_table(location: CatalogLocation, relative: str | None, schema: pa.Schema) -> pa.Table:
    if relative is not None:
        return location.read_parquet(relative).cast(schema)
    return schema.empty_table()


def _remove_temporary_files(root: Path) -> None:
    """Temporary part and table files of a writer killed before its rename (their names match no part)."""
    for folder in (root, root / PARTS_DIR):
        for leftover in folder.glob(f"{TMP_PREFIX}*.parquet-*"):
            leftover.unlink(missing_ok=True)


def _remove_stale_shards(root: Path, images: pa.Table) -> None:
    shards = root / SHARDS_DIR
    if not shards.is_dir():
        return
    status = images.column("status").to_pylist()
    wanted = {p for p, s in zip(images.column("shard_path").to_pylist(), status) if p and s == "kept"}
    for dataset_dir in shards.iterdir():
        for entry in dataset_dir.iterdir():
            relative = f"{SHARDS_DIR}/{dataset_dir.name}/{entry.name}"
            if entry.name.startswith((TMP_PREFIX, _OLD_PREFIX)) or relative not in wanted:
                shutil.rmtree(entry, ignore_errors=True)
        if not any(dataset_dir.iterdir()):
            dataset_dir.rmdir()
