"""`curate` into an s3:// catalog on the loopback S3 server, against the same sources curated locally.

All data here is SYNTHETIC (phantoms).
"""

from __future__ import annotations

import boto3
import numpy as np
import pandas as pd
import pytest

from catalog.lock import CatalogLockedError
from catalog.reader import Catalog, CatalogNotFoundError
from catalog.store.gc import collect_garbage
from catalog.store.location import CatalogLocation
from catalog.store.locking import catalog_write_lock
from catalog.store.manifest import read_manifest
from flows.cli import main
from flows.curate import curate
from pipeline.phantoms import write_phantom_datasets


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3-phantoms")
    write_phantom_datasets(root, seed=3, n_ct=2, n_mr=2, size_scale=0.6)
    return root


@pytest.fixture(scope="module")
def local_catalog(sources, prefect_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("s3-reference") / "catalog"
    curate(sources=[str(sources)], catalog=str(root))
    return Catalog(root)


def _keys(url: str) -> list[str]:
    location = CatalogLocation.parse(url)
    bucket, prefix = location.path().split("/", 1)
    client = boto3.client("s3")
    return sorted(o["Key"][len(prefix) + 1:] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def assert_same_catalog(s3: Catalog, local: Catalog) -> None:
    pd.testing.assert_frame_equal(s3.images(), local.images())
    pd.testing.assert_frame_equal(s3.masks(), local.masks())
    kept = local.images()[local.images().status == "kept"]
    assert len(kept) > 0
    for row in kept.itertuples():
        for name in ("image", "label"):
            np.testing.assert_array_equal(s3.array(row.image_id, name)[:], local.array(row.image_id, name)[:])
        assert dict(s3.shard(row.image_id).attrs) == dict(local.shard(row.image_id).attrs)


def test_s3_catalog_equals_the_local_one_and_a_rerun_skips_everything(sources, local_catalog, s3_catalog_url, capsys):
    first = curate(sources=[str(sources)], catalog=s3_catalog_url, dask_workers=2)
    assert first["curated"] == len(local_catalog.images()) and first["skipped"] == 0
    s3 = Catalog(s3_catalog_url, chunk_cache_bytes=64 << 20)
    assert_same_catalog(s3, local_catalog)
    keys = _keys(s3_catalog_url)
    assert "catalog.json" in keys and "images.parquet" not in keys
    assert not [k for k in keys if k.startswith("_parts/")], "folded parts are removed"
    assert any(k.startswith("report/qc/") and k.endswith(".png") for k in keys)
    assert "report/datasets.md" in keys

    image_id = local_catalog.images().query("status == 'kept'").image_id.iloc[0]
    local_reader = Catalog(local_catalog.root, chunk_cache_bytes=64 << 20)
    for center in ((10, 20, 30), (-40, 5, 70)):
        ours = s3.read_patch(image_id, center, (48, 40, 56))
        theirs = local_reader.read_patch(image_id, center, (48, 40, 56))
        for name in ("image", "label", "start"):
            np.testing.assert_array_equal(ours[name], theirs[name])

    again = curate(sources=[str(sources)], catalog=s3_catalog_url)
    assert again["curated"] == 0 and again["skipped"] == first["curated"]
    assert _keys(s3_catalog_url) == keys, "an unchanged rerun writes nothing"

    mask_id = local_catalog.masks().query("status == 'kept'").mask_id.iloc[0]
    capsys.readouterr()
    for command in (["summary"], ["leaks"], ["report"], ["show", "--mask", mask_id]):
        assert main(["catalog", command[0], s3_catalog_url, *command[1:]]) == 0, command
    out = capsys.readouterr().out
    assert "== images by dataset, modality and status" in out and "duplicate" in out
    assert f"{s3_catalog_url}/report/datasets.md" in out and f"{s3_catalog_url}/report/qc/{mask_id}.png" in out
    assert f"report/qc/{mask_id}.png" in _keys(s3_catalog_url)


def test_a_run_killed_before_publication_leaves_nothing_visible_and_the_next_completes(
    sources, local_catalog, s3_catalog_url, monkeypatch
):
    real_write_bytes = CatalogLocation.write_bytes

    def killed_at_the_manifest(self, relative, data):
        if relative == "catalog.json":
            raise RuntimeError("killed before the manifest PUT")
        return real_write_bytes(self, relative, data)

    monkeypatch.setattr(CatalogLocation, "write_bytes", killed_at_the_manifest)
    with pytest.raises(RuntimeError, match="killed before the manifest"):
        curate(sources=[str(sources)], catalog=s3_catalog_url)
    monkeypatch.setattr(CatalogLocation, "write_bytes", real_write_bytes)
    left = _keys(s3_catalog_url)
    assert any(k.startswith("shards/") for k in left) and any(k.startswith("tables/") for k in left)
    assert ".catalog.lock" not in left, "the lock is released when the run fails"
    with pytest.raises(CatalogNotFoundError):
        Catalog(s3_catalog_url)

    again = curate(sources=[str(sources)], catalog=s3_catalog_url)
    assert again["curated"] == 0, "the killed run's finished parts are picked up"
    assert_same_catalog(Catalog(s3_catalog_url), local_catalog)

    # A shard of an image the tables no longer name (as a replaced version would leave), then gc.
    orphan = "shards/Orphan/x-000000000000.zarr"
    CatalogLocation.parse(s3_catalog_url).write_bytes(f"{orphan}/zarr.json", b"{}")
    published = set(read_manifest(CatalogLocation.parse(s3_catalog_url))["tables"].values())
    killed_tables = {k for k in _keys(s3_catalog_url) if k.startswith("tables/") and k not in published}
    assert len(killed_tables) == 3, "the killed run's images, masks and duplicates tables, named by no manifest"
    assert {g.path for g in collect_garbage(s3_catalog_url)} == {orphan} | killed_tables
    assert_same_catalog(Catalog(s3_catalog_url), local_catalog)
    assert collect_garbage(s3_catalog_url) == []


def test_a_second_run_on_a_locked_s3_catalog_is_refused(sources, s3_catalog_url, prefect_server):
    with catalog_write_lock(s3_catalog_url, owner="the first run"):
        with pytest.raises(CatalogLockedError, match="is being written by the first run"):
            curate(sources=[str(sources)], catalog=s3_catalog_url)
    assert _keys(s3_catalog_url) == []


@pytest.mark.parametrize(
    "setting, url, message",
    [
        ({}, "s3://no-such-bucket/cat", "bucket 'no-such-bucket' does not exist"),
        ({"AWS_SECRET_ACCESS_KEY": "wrong"}, None, "credentials were refused"),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, None, "cannot be reached"),
    ],
)
def test_unusable_s3_locations_are_one_clear_sentence_and_write_nothing(
    sources, s3_catalog_url, capsys, setting, url, message
):
    with pytest.MonkeyPatch.context() as patch:
        for name, value in setting.items():
            patch.setenv(name, value)
        assert main(["curate", str(sources), "--catalog", url or s3_catalog_url]) == 2
    error = capsys.readouterr().err
    assert error.startswith("sammed3d: error: catalog location s3://") and message in error
    assert _keys(s3_catalog_url) == []
