"""CatalogLocation on the loopback S3 server: objects, conditional writes, Parquet, zarr, access errors."""

from __future__ import annotations

import pickle
import time

import boto3
import numpy as np
import pyarrow as pa
import pytest
import zarr

from catalog.store.location import CatalogLocation, CatalogLocationError


def _objects(endpoint: str, bucket: str) -> list[str]:
    listing = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_objects_parquet_and_zarr_round_trip(s3_catalog_url):
    location = CatalogLocation.parse(s3_catalog_url)
    location.check_access(for_writing=True)
    location.write_bytes("a/b.txt", b"one")
    assert location.read_bytes("a/b.txt") == b"one" and location.exists("a/b.txt")
    with pytest.raises(FileExistsError):
        location.create_bytes("a/b.txt", b"two")
    assert location.read_bytes("a/b.txt") == b"one"
    table = pa.table({"x": [1, 2, 3]})
    location.write_parquet(table, "t/x.parquet")
    assert location.read_parquet("t/x.parquet").equals(table) and location.parquet_rows("t/x.parquet") == 3
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    zarr.create_array(location.zarr_store("g.zarr/image"), data=data)
    read = zarr.open_array(CatalogLocation.parse(s3_catalog_url).zarr_store("g.zarr/image", read_only=True), mode="r")
    np.testing.assert_array_equal(read[:], data)
    assert location.list("") == ["a", "g.zarr", "t"]
    assert location.size_under("a") == 3
    location.remove_prefix("g.zarr")
    assert location.list("") == ["a", "t"]
    assert pickle.loads(pickle.dumps(location)).url == s3_catalog_url


def test_missing_bucket_is_a_clear_error_and_writes_nothing(s3_catalog_url, s3_server):
    with pytest.raises(CatalogLocationError, match=r"bucket 'no-such-bucket' does not exist"):
        CatalogLocation.parse("s3://no-such-bucket/cat").check_access(for_writing=True)
    buckets = boto3.client("s3", endpoint_url=s3_server[0]).list_buckets()["Buckets"]
    assert "no-such-bucket" not in [b["Name"] for b in buckets]


def test_wrong_credentials_are_a_clear_error(s3_catalog_url, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(CatalogLocationError, match="credentials were refused"):
        CatalogLocation.parse(s3_catalog_url).check_access(for_writing=True)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN0000000")
    with pytest.raises(CatalogLocationError, match="credentials were refused"):
        CatalogLocation.parse(s3_catalog_url).check_access(for_writing=True)


def test_an_unreachable_endpoint_fails_in_seconds(s3_catalog_url, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    start = time.perf_counter()
    with pytest.raises(CatalogLocationError, match="cannot be reached"):
        CatalogLocation.parse(s3_catalog_url).check_access(for_writing=True)
    assert time.perf_counter() - start < 15


def test_an_endpoint_that_never_answers_fails_in_seconds(s3_catalog_url, monkeypatch):
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted = []
    threading.Thread(target=lambda: accepted.extend(listener.accept() for _ in range(8)), daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{listener.getsockname()[1]}")
    start = time.perf_counter()
    with pytest.raises(CatalogLocationError, match="accepted the connection but did not answer within 5 s"):
        CatalogLocation.parse(s3_catalog_url).check_access(for_writing=True)
    assert time.perf_counter() - start < 30
    listener.close()
