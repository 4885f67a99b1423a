"""Catalog locations: a local folder or s3://; any other scheme is a clear error, never a local folder "gs:"."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog.reader import Catalog
from catalog.store.location import CatalogLocation
from flows.cli import main
from model.training.config import TrainConfig


@pytest.mark.parametrize("url", ["gs://bucket/x", "file:///tmp/cat", "minio+s3://a/b", "https://host/cat"])
def test_other_schemes_are_refused_everywhere_a_catalog_is_named(url):
    for attempt in (lambda: CatalogLocation.parse(url), lambda: Catalog(url), lambda: TrainConfig(catalog=url, out="r")):
        with pytest.raises(ValueError, match=r"is a URL with scheme .*a local folder or an s3://bucket/prefix URL"):
            attempt()


def test_local_paths_and_s3_urls_are_accepted(tmp_path):
    local = CatalogLocation.parse(tmp_path / "cat")
    assert local.is_local and local.local_path == tmp_path / "cat"
    assert str(CatalogLocation.parse("relative/s3:/odd").local_path) == "relative/s3:/odd"
    s3 = CatalogLocation.parse("s3://bucket/run1/")
    assert not s3.is_local and s3.url == "s3://bucket/run1" and s3.path("images.parquet") == "bucket/run1/images.parquet"
    assert TrainConfig(catalog="s3://bucket/run1", out="r").catalog == "s3://bucket/run1"
    assert s3.absolute == "s3://bucket/run1" and CatalogLocation.parse("rel").absolute == str(Path("rel").resolve())


@pytest.mark.parametrize("url", ["s3://", "s3:///x", "s3://B/upper"])
def test_an_s3_url_without_a_valid_bucket_is_refused(url):
    with pytest.raises(ValueError, match="names no valid bucket"):
        CatalogLocation.parse(url)


def test_curate_to_another_scheme_fails_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sources").mkdir()
    assert main(["curate", "sources", "--catalog", "gs://cat/run1"]) != 0
    assert "is a URL with scheme gs://" in capsys.readouterr().err
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["sources"]
