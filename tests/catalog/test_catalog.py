import numpy as np
import pandas as pd
import pytest
import zarr

from catalog.reader import Catalog, CatalogNotFoundError, read_window
from catalog.schema import IMAGE_SCHEMA, MASK_SCHEMA
from catalog.writer import consolidate, write_part, write_shard


def image_row(image_id: str, shard_path: str | None, status: str = "kept") -> dict:
    row = {name: None for name in IMAGE_SCHEMA.names}
    row.update(image_id=image_id, dataset="D", case_id=image_id, channel=0, status=status, shard_path=shard_path,
               flags=[], side_pairs=0, side_pairs_disagreeing=[], source_hash="s", config_hash="c")
    return row


def mask_row(image_id: str, value: int) -> dict:
    row = {name: None for name in MASK_SCHEMA.names}
    row.update(mask_id=f"{image_id}__{value:03d}", image_id=image_id, category="liver", status="kept",
               label_value=value, top_component_sizes=[1], bbox_zyx=[0, 0, 0, 1, 1, 1])
    return row


@pytest.fixture()
def catalog_root(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(-1000, 1000, size=(150, 140, 200)).astype(np.int16)
    label = (image > 900).astype(np.uint8)
    write_shard(tmp_path, "shards/D/a.zarr", image, label, {"spacing_xyz": [1.5, 1.5, 1.5]})
    write_part(tmp_path, "D__a", [image_row("a", "shards/D/a.zarr")], [mask_row("a", 1)])
    consolidate(tmp_path)
    return tmp_path, image, label


def test_shards_are_zarr_v3_with_64_cubed_chunks_zstd_and_sharding(catalog_root):
    root, image, _ = catalog_root
    array = zarr.open_group(str(root / "shards/D/a.zarr"), mode="r")["image"]
    assert array.metadata.zarr_format == 3
    assert array.chunks == (64, 64, 64) and array.shards == (128, 128, 128)
    assert "zstd" in str(array.compressors).lower()
    assert np.array_equal(array[:], image)


def test_read_patch_pads_outside_the_image(catalog_root):
    root, image, label = catalog_root
    patch = Catalog(root).read_patch("a", center=(10, 70, 190), size=(32, 32, 32))
    assert patch["image"].shape == (32, 32, 32)
    assert np.array_equal(patch["start"], [-6, 54, 174])
    assert np.array_equal(patch["image"][6:, :, :26], image[0:26, 54:86, 174:200])
    assert not patch["image"][:6].any() and not patch["image"][:, :, 26:].any()
    assert np.array_equal(patch["label"][6:, :, :26], label[0:26, 54:86, 174:200])


def test_read_patch_reads_only_the_shards_it_needs(catalog_root):
    root, image, _ = catalog_root
    shard_files = sorted((root / "shards/D/a.zarr/image/c").rglob("*"))
    for path in shard_files:
        if path.is_file() and path.relative_to(root / "shards/D/a.zarr/image/c").parts != ("0", "0", "0"):
            path.unlink()
    patch = Catalog(root).read_patch("a", center=(40, 40, 40), size=(64, 64, 64), arrays=("image",))
    assert np.array_equal(patch["image"], image[8:72, 8:72, 8:72])


def test_tables_are_pandas_queryable(catalog_root):
    root, _, _ = catalog_root
    masks = pd.read_parquet(root / "masks.parquet")
    assert masks[(masks.category == "liver") & (masks.status == "kept")].mask_id.tolist() == ["a__001"]


def test_rewriting_a_part_replaces_the_rows_of_that_image_only(catalog_root, tmp_path):
    root, image, label = catalog_root
    write_shard(root, "shards/D/b.zarr", image[:10], label[:10], {})
    write_part(root, "D__b", [image_row("b", "shards/D/b.zarr")], [mask_row("b", 1), mask_row("b", 2)])
    assert consolidate(root) == (2, 3)
    write_part(root, "D__b", [image_row("b", None, status="rejected")], [mask_row("b", 1)])
    assert consolidate(root) == (2, 2)
    assert not (root / "shards/D/b.zarr").exists(), "a shard no kept row points to is removed"
    assert (root / "shards/D/a.zarr").exists()


def test_leftovers_of_a_killed_write_are_invisible_and_cleaned(catalog_root):
    root, _, _ = catalog_root
    leftover = root / "shards/D/.tmp-c.zarr-1234abcd"
    leftover.mkdir()
    (root / "_parts").mkdir(exist_ok=True)
    (root / "_parts" / "D__c.masks.parquet").write_bytes(b"half")  # masks part without its images part
    assert Catalog(root).images().image_id.tolist() == ["a"]
    write_part(root, "D__a", [image_row("a", "shards/D/a.zarr")], [mask_row("a", 1)])
    consolidate(root)
    assert not leftover.exists()


def test_a_folder_without_tables_is_not_a_catalog(tmp_path):
    with pytest.raises(CatalogNotFoundError, match="holds no catalog"):
        Catalog(tmp_path)


def test_read_window_entirely_outside_is_all_padding():
    array = np.ones((4, 4, 4))
    assert not read_window(array, np.array([10, 10, 10]), (2, 2, 2), 0).any()
