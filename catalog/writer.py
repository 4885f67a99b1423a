"""Atomic catalog writes.

Order of a run: each image's Zarr shard is written under a temporary name and renamed into place; then
its rows go to a per-case part file (also temp + rename); at the end of the run the parts are folded into
images.parquet / masks.parquet, each replaced atomically. A reader only reads the two tables, so it never
sees a row whose shard is missing, and a run killed at any point leaves the tables as they were; the next
run picks up the finished parts and redoes the rest.
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
import pyarrow.parquet as pq
import zarr
from zarr.codecs import ZstdCodec

from catalog.leaks import apply_group_splits, update_duplicate_pairs
from catalog.schema import (
    CHUNK_SHAPE,
    DUPLICATE_SCHEMA,
    DUPLICATES_TABLE,
    IMAGE_SCHEMA,
    IMAGES_TABLE,
    MASK_SCHEMA,
    MASKS_TABLE,
    PARTS_DIR,
    SHARD_SHAPE,
    SHARDS_DIR,
    table_from_rows,
)

_TMP_PREFIX = ".tmp-"
_OLD_PREFIX = ".old-"


def write_shard(
    root: str | Path,
    shard_path: str,
    image: np.ndarray,
    label: np.ndarray,
    attrs: dict,
) -> Path:
    """Write one image's Zarr v3 group (`image`, `label`: (z, y, x) arrays, 64³ chunks in 128³ shards, zstd).

    `shard_path` is relative to the catalog root (the image row's `shard_path`). `attrs` should carry the
    stored geometry so a patch can be mapped back to world space.
    """
    final = Path(root) / shard_path
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{_TMP_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
    group = zarr.open_group(store=str(tmp), mode="w", zarr_format=3)
    for name, data in (("image", image), ("label", label)):
        group.create_array(
            name,
            data=np.ascontiguousarray(data),
            chunks=tuple(min(c, s) for c, s in zip(CHUNK_SHAPE, data.shape)),
            shards=tuple(_shard_extent(c, s) for c, s in zip(CHUNK_SHAPE, data.shape)),
            compressors=ZstdCodec(level=3),
        )
    group.attrs.update(attrs)
    if final.exists():
        old = final.parent / f"{_OLD_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    return final


def _shard_extent(chunk: int, size: int) -> int:
    """Shard edge: SHARD_SHAPE, or fewer whole chunks for a small axis (a multiple of the chunk edge)."""
    chunk = min(chunk, size)
    return min(SHARD_SHAPE[0], -(-size // chunk) * chunk)


def write_part(root: str | Path, key: str, image_rows: list[dict], mask_rows: list[dict]) -> None:
    """Persist the rows of one finished case; the images part is written last and marks it complete."""
    parts = Path(root) / PARTS_DIR
    parts.mkdir(parents=True, exist_ok=True)
    _atomic_parquet(table_from_rows(mask_rows, MASK_SCHEMA), parts / f"{key}.masks.parquet")
    _atomic_parquet(table_from_rows(image_rows, IMAGE_SCHEMA), parts / f"{key}.images.parquet")


def finished_parts(root: str | Path) -> list[str]:
    parts = Path(root) / PARTS_DIR
    if not parts.is_dir():
        return []
    return sorted(p.name[: -len(".images.parquet")] for p in parts.glob("*.images.parquet"))


def read_part_images(root: str | Path, key: str) -> pd.DataFrame:
    return pq.read_table(Path(root) / PARTS_DIR / f"{key}.images.parquet").to_pandas()


def consolidate(root: str | Path, split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> tuple[int, int]:
    """Fold finished parts into the two tables (rows of the same image replaced), then clean up.

    Returns the number of image and mask rows in the new tables. Also removes temporary files and shards
    left by a killed run and shards no kept row points to. Call it only while holding the catalog's lock
    (catalog.lock), after every writer of the run has finished: any temporary file is then an orphan.
    """
    root = Path(root)
    _remove_temporary_files(root)
    keys = finished_parts(root)
    if not keys and (root / IMAGES_TABLE).exists():
        return pq.read_metadata(root / IMAGES_TABLE).num_rows, _row_count(root / MASKS_TABLE)
    images = _read_table(root / IMAGES_TABLE, IMAGE_SCHEMA)
    masks = _read_table(root / MASKS_TABLE, MASK_SCHEMA)
    # A catalog from before the pairs table (or a first run) gets one full search.
    previous = pq.read_table(root / DUPLICATES_TABLE).to_pandas() if (root / DUPLICATES_TABLE).exists() else None
    changed: set[str] = set()
    if keys:
        new_images = pa.concat_tables([pq.read_table(root / PARTS_DIR / f"{k}.images.parquet") for k in keys])
        new_masks = pa.concat_tables(
            [pq.read_table(root / PARTS_DIR / f"{k}.masks.parquet") for k in keys if _masks_part(root, k).exists()]
        )
        changed = set(new_images.column("image_id").to_pylist())
        replaced = pa.array(sorted(changed))
        images = pa.concat_tables([_without(images, replaced), new_images.cast(IMAGE_SCHEMA)])
        masks = pa.concat_tables([_without(masks, replaced), new_masks.cast(MASK_SCHEMA)])
    pairs = update_duplicate_pairs(images, previous, changed)
    images, masks = apply_group_splits(images, masks, split_fractions, pairs)
    images = images.sort_by("image_id")
    masks = masks.sort_by("mask_id")
    _atomic_parquet(masks, root / MASKS_TABLE)
    _atomic_parquet(images, root / IMAGES_TABLE)
    _atomic_parquet(pa.Table.from_pandas(pairs, schema=DUPLICATE_SCHEMA, preserve_index=False), root / DUPLICATES_TABLE)
    for key in keys:
        _masks_part(root, key).unlink(missing_ok=True)
        (root / PARTS_DIR / f"{key}.images.parquet").unlink(missing_ok=True)
    _remove_stale_shards(root, images)
    return images.num_rows, masks.num_rows


def _row_count(path: Path) -> int:
    return pq.read_metadata(path).num_rows if path.exists() else 0


def _masks_part(root: Path, key: str) -> Path:
    return root / PARTS_DIR / f"{key}.masks.parquet"


def _without(table: pa.Table, image_ids: pa.Array) -> pa.Table:
    if table.num_rows == 0:
        return table
    return table.filter(pc.invert(pc.is_in(table.column("image_id"), value_set=image_ids)))


def _read_table(path: Path, schema: pa.Schema) -> pa.Table:
    if path.exists():
        return pq.read_table(path).cast(schema)
    return schema.empty_table()


def _atomic_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.parent / f"{_TMP_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _remove_temporary_files(root: Path) -> None:
    """Temporary part and table files of a writer killed before its rename (their names match no part)."""
    for folder in (root, root / PARTS_DIR):
        for leftover in folder.glob(f"{_TMP_PREFIX}*.parquet-*"):
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
            if entry.name.startswith((_TMP_PREFIX, _OLD_PREFIX)) or relative not in wanted:
                shutil.rmtree(entry, ignore_errors=True)
        if not any(dataset_dir.iterdir()):
            dataset_dir.rmdir()
