"""An S3 catalog read in forked and spawned processes (training's DataLoader workers, Dask workers)."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from catalog.reader import Catalog
from catalog.writer import consolidate, write_part, write_shard
from tests.catalog.test_catalog import image_row, mask_row


def _patch(catalog: Catalog | str, image_id: str) -> np.ndarray:
    catalog = catalog if isinstance(catalog, Catalog) else Catalog(catalog, chunk_cache_bytes=8 << 20)
    return catalog.read_patch(image_id, (10, 12, 14), (16, 16, 16))["image"]


def _patch_from_inherited(image_id: str) -> np.ndarray:
    return _patch(_INHERITED[0], image_id)


_INHERITED: list[Catalog] = []


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_catalog_opened_before_a_fork_and_one_opened_in_a_spawned_process_read_the_same(s3_catalog_url, method):
    image = np.arange(24 * 26 * 28, dtype=np.int16).reshape(24, 26, 28)
    write_shard(s3_catalog_url, "shards/D/a-1.zarr", image, (image > 10).astype(np.uint8), {})
    write_part(s3_catalog_url, "D__a", [image_row("a", "shards/D/a-1.zarr")], [mask_row("a", 1)])
    consolidate(s3_catalog_url)
    # No chunk cache in the parent: the forked child must read through the store (and the file system and
    # event loop) that the parent opened and used before the fork.
    parent = Catalog(s3_catalog_url)
    expected = _patch(parent, "a")
    _INHERITED[:] = [parent]
    context = multiprocessing.get_context(method)
    with context.Pool(1) as pool:
        if method == "fork":
            got = pool.apply(_patch_from_inherited, ("a",))
        else:
            got = pool.apply(_patch, (s3_catalog_url, "a"))
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(expected, image[2:18, 4:20, 6:22])
