"""Catalog locations: local folders only; a URL is a clear error, never a local folder named "s3:"."""

from __future__ import annotations

import pytest

from catalog.reader import Catalog, local_catalog_root
from flows.cli import main
from model.training.config import TrainConfig


@pytest.mark.parametrize("url", ["s3://cat/run1", "gs://bucket/x", "file:///tmp/cat", "minio+s3://a/b"])
def test_urls_are_refused_everywhere_a_catalog_is_named(url):
    with pytest.raises(ValueError, match="is a URL"):
        local_catalog_root(url)
    with pytest.raises(ValueError, match="is a URL"):
        Catalog(url)
    with pytest.raises(ValueError, match="is a URL"):
        TrainConfig(catalog=url, out="run")


def test_local_paths_are_accepted(tmp_path):
    assert local_catalog_root(tmp_path / "cat") == tmp_path / "cat"
    assert str(local_catalog_root("relative/s3:/odd")) == "relative/s3:/odd"


def test_curate_to_an_s3_url_fails_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sources").mkdir()
    assert main(["curate", "sources", "--catalog", "s3://cat/run1"]) != 0
    assert "is a URL" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sources"]
