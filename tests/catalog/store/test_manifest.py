"""Table publication: a manifest written last on S3, plain files by rename locally; extra tables."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from catalog.reader import Catalog, CatalogNotFoundError
from catalog.schema import IMAGE_SCHEMA, MASK_SCHEMA, table_from_rows
from catalog.store.location import CatalogLocation
from catalog.store.manifest import ManifestError, publish_tables, read_manifest, table_file
from tests.catalog.test_catalog import image_row, mask_row


def _tables(image_ids):
    images = table_from_rows([image_row(i, None, status="rejected") for i in image_ids], IMAGE_SCHEMA)
    masks = table_from_rows([mask_row(i, 1) for i in image_ids], MASK_SCHEMA)
    return {"masks": masks, "images": images}


def test_s3_publication_names_new_versions_and_keeps_other_tables(s3_catalog_url):
    location = CatalogLocation.parse(s3_catalog_url)
    assert read_manifest(location) is None and table_file(location, "images") is None
    with pytest.raises(CatalogNotFoundError):
        Catalog(s3_catalog_url)
    first = publish_tables(location, {**_tables(["a"]), "duplicates": pa.table({"image_a": ["a"], "image_b": ["b"]})})
    assert first["images"].startswith("tables/images-") and read_manifest(location)["tables"] == first
    opened_before = Catalog(s3_catalog_url)
    second = publish_tables(location, _tables(["a", "b"]))
    manifest = read_manifest(location)
    assert manifest["tables"] == {**second, "duplicates": first["duplicates"]} and second["images"] != first["images"]
    assert list(Catalog(s3_catalog_url).images().image_id) == ["a", "b"]
    assert list(Catalog(s3_catalog_url).table("duplicates").image_b) == ["b"]
    assert list(opened_before.images().image_id) == ["a"], "a reader keeps the version it opened"
    assert location.exists(first["images"]), "superseded versions stay until gc"


def test_local_publication_keeps_the_plain_layout(tmp_path):
    location = CatalogLocation.parse(tmp_path)
    assert publish_tables(location, _tables(["a"])) == {"masks": "masks.parquet", "images": "images.parquet"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images.parquet", "masks.parquet"]
    assert list(Catalog(tmp_path).images().image_id) == ["a"] and Catalog(tmp_path).table("duplicates") is None


def test_a_damaged_manifest_is_a_clear_error(s3_catalog_url):
    location = CatalogLocation.parse(s3_catalog_url)
    location.write_bytes("catalog.json", b"{not json")
    with pytest.raises(ManifestError, match="catalog.json is not valid JSON"):
        Catalog(s3_catalog_url)
    location.write_bytes("catalog.json", json.dumps({"format": 99, "tables": {}}).encode())
    with pytest.raises(ManifestError, match="not a catalog manifest of format 1"):
        Catalog(s3_catalog_url)
