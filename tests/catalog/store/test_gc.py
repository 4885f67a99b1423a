"""`sammed3d catalog gc`: exactly the shard prefixes and table files that no published table names."""

from __future__ import annotations

import numpy as np

from catalog.store.gc import collect_garbage, find_garbage
from catalog.store.location import CatalogLocation
from catalog.writer import consolidate, write_part, write_shard
from flows.cli import main
from tests.catalog.test_catalog import image_row, mask_row

IMAGE = np.arange(20 * 24 * 28, dtype=np.int16).reshape(20, 24, 28)


def _catalog(root) -> None:
    write_shard(root, "shards/D/a-1.zarr", IMAGE, (IMAGE > 100).astype(np.uint8), {})
    write_part(root, "D__a", [image_row("a", "shards/D/a-1.zarr")], [mask_row("a", 1)])
    consolidate(root)


def test_gc_removes_only_unreferenced_prefixes_on_s3(s3_catalog_url, capsys):
    _catalog(s3_catalog_url)
    # Image "a" replaced by a new version: consolidate on S3 keeps the old shard for readers of the old manifest.
    write_shard(s3_catalog_url, "shards/D/a-2.zarr", IMAGE + 1, (IMAGE > 100).astype(np.uint8), {})
    write_part(s3_catalog_url, "D__a", [image_row("a", "shards/D/a-2.zarr")], [mask_row("a", 1)])
    consolidate(s3_catalog_url)
    location = CatalogLocation.parse(s3_catalog_url)
    assert location.list("shards/D") == ["a-1.zarr", "a-2.zarr"]
    found = {g.path for g in find_garbage(s3_catalog_url)}
    assert {p for p in found if p.startswith("shards/")} == {"shards/D/a-1.zarr"}
    assert len([p for p in found if p.startswith("tables/")]) == 3  # the first version's images, masks, duplicates
    assert main(["catalog", "gc", s3_catalog_url, "--dry-run"]) == 0
    assert "would remove shards/D/a-1.zarr" in capsys.readouterr().out
    assert location.exists("shards/D/a-1.zarr/zarr.json")
    assert main(["catalog", "gc", s3_catalog_url]) == 0
    out = capsys.readouterr().out
    assert "removed 4 unreferenced prefixes/files" in out and "freed" in out
    assert location.list("shards/D") == ["a-2.zarr"] and len(location.list("tables")) == 3
    assert find_garbage(s3_catalog_url) == []


def test_gc_of_a_local_catalog(tmp_path):
    _catalog(tmp_path)
    (tmp_path / "shards/D/orphan-0.zarr").mkdir()
    (tmp_path / "shards/D/orphan-0.zarr/zarr.json").write_text("{}")
    garbage = collect_garbage(tmp_path)
    assert [(g.path, g.bytes) for g in garbage] == [("shards/D/orphan-0.zarr", 2)]
    assert sorted(p.name for p in (tmp_path / "shards/D").iterdir()) == ["a-1.zarr"]
    assert not (tmp_path / ".catalog.lock").exists()
