"""The catalog's table schemas. Columns ending in `_xyz` are in SimpleITK (x, y, z) order; `_zyx` in array order.

World coordinates are mm in the LPS frame; directions are 9 row-major cosines; bboxes are stored-grid voxel
indices (z0, y0, x0, z1, y1, x1) with exclusive ends. `_spl` columns are in the patient axis order
(superior, posterior, left) of `pipeline.fingerprint`.

Duplicates (`catalog.leaks`): `stored_sha256` and `similarity_signature` (flattened (n_S, 4, 4) float32)
fingerprint each kept image. `split` is assigned over the whole catalog at every consolidation
(`catalog.splits`): per dataset, and equal for every case of a `duplicate_group` (null for an image with
no duplicate).

Left/right (`pipeline.steps.step4_symmetry_split`): a mask's `side_source` is "dataset" (the side is in
its name), "name", "data" or "both" (split into sides because its name is a known paired structure, its
data say bilateral, or both), or null (no side). `side_balance`, `side_symmetry`, `side_midline_fraction`
and `side_dip` are its evidence about the image's mid-sagittal plane x = `midline_x_mm` (world, LPS;
`midline_source` says how it was found), null where no one looked.
"""


from __future__ import annotations

import pyarrow as pa

# side_source values of masks made by the left/right split (mirrors pipeline.steps.step4_symmetry_split).
SPLIT_SIDE_SOURCES = ("name", "data", "both")

_floats = pa.list_(pa.float64())
_floats32 = pa.list_(pa.float32())
_ints = pa.list_(pa.int64())
_strings = pa.list_(pa.string())

IMAGE_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("dataset", pa.string()),
        ("case_id", pa.string()),
        ("channel", pa.int64()),
        ("channel_name", pa.string()),
        ("modality", pa.string()),
        ("synthetic", pa.bool_()),
        ("image_path", pa.string()),
        ("label_path", pa.string()),
        ("image_sha256", pa.string()),
        ("label_sha256", pa.string()),
        ("source_hash", pa.string()),
        ("original_size_xyz", _ints),
        ("original_spacing_xyz", _floats),
        ("original_origin_xyz", _floats),
        ("original_direction", _floats),
        ("orientation", pa.string()),
        ("extent_mm_xyz", _floats),
        ("volume_cm3", pa.float64()),
        ("pixel_type", pa.string()),
        ("stored_shape_zyx", _ints),
        ("stored_spacing_xyz", _floats),
        ("stored_origin_xyz", _floats),
        ("stored_direction", _floats),
        ("stored_dtype", pa.string()),
        ("stored_sha256", pa.string()),
        ("similarity_signature", _floats32),
        ("canonical_shape_spl", _ints),
        ("shard_path", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("flags", _strings),
        ("side_pairs", pa.int64()),
        ("side_pairs_disagreeing", _strings),
        ("midline_x_mm", pa.float64()),
        ("midline_source", pa.string()),
        ("midline_score", pa.float64()),
        ("masks_total", pa.int64()),
        ("masks_kept", pa.int64()),
        ("split", pa.string()),
        ("duplicate_group", pa.string()),
        ("pipeline_version", pa.string()),
        ("config_hash", pa.string()),
    ]
)

MASK_SCHEMA = pa.schema(
    [
        ("mask_id", pa.string()),
        ("image_id", pa.string()),
        ("dataset", pa.string()),
        ("case_id", pa.string()),
        ("modality", pa.string()),
        ("category", pa.string()),
        ("base_category", pa.string()),
        ("group", pa.string()),
        ("side", pa.string()),
        ("side_source", pa.string()),
        ("side_balance", pa.float64()),
        ("side_symmetry", pa.float64()),
        ("side_midline_fraction", pa.float64()),
        ("side_dip", pa.float64()),
        ("source_label", pa.int64()),
        ("source_name", pa.string()),
        ("label_value", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("source_voxels", pa.int64()),
        ("voxels", pa.int64()),
        ("volume_ml", pa.float64()),
        ("removed_voxels", pa.int64()),
        ("n_components", pa.int64()),
        ("top_component_sizes", _ints),
        ("other_components_voxels", pa.int64()),
        ("bg_fraction_bbox", pa.float64()),
        ("bg_fraction_volume", pa.float64()),
        ("centroid_world_xyz", _floats),
        ("stored_voxels", pa.int64()),
        ("bbox_zyx", _ints),
        ("split", pa.string()),
        ("config_hash", pa.string()),
    ]
)

# Duplicate pairs among the kept images (`catalog.leaks`), kept so that a consolidation searches only the
# images written since the last one: image_a < image_b; kind "exact" (equal stored arrays) or "near".
DUPLICATE_SCHEMA = pa.schema(
    [
        ("image_a", pa.string()),
        ("image_b", pa.string()),
        ("dataset_a", pa.string()),
        ("case_a", pa.string()),
        ("dataset_b", pa.string()),
        ("case_b", pa.string()),
        ("kind", pa.string()),
        ("correlation", pa.float64()),
        ("shift_slices", pa.int64()),
        ("overlap_slices", pa.int64()),
        ("header_offset_mm", pa.float64()),
    ]
)

IMAGES_TABLE = "images.parquet"
MASKS_TABLE = "masks.parquet"
DUPLICATES = "duplicates"  # table name (a manifest key on S3)
DUPLICATES_TABLE = f"{DUPLICATES}.parquet"  # its file in a local catalog
SHARDS_DIR = "shards"
PARTS_DIR = "_parts"
CHUNK_SHAPE = (64, 64, 64)
SHARD_SHAPE = (128, 128, 128)


def table_from_rows(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows (dicts with exactly the schema's columns) -> a table; an extra or missing key is an error."""
    names = set(schema.names)
    for row in rows:
        if set(row) != names:
            raise ValueError(f"row keys differ from the schema: {sorted(set(row) ^ names)}")
    return pa.Table.from_pylist(rows, schema=schema)
