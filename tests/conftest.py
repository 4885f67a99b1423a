"""Shared fixtures: the real sample data folder, Prefect's test server, SYNTHETIC phantoms, curated catalogs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Prefect reads its settings at import: point it at a private home before anything imports it.
_PREFECT_HOME = tempfile.mkdtemp(prefix="sammed3d-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
RAW_DATA_ENV = "SAMMED3D_RAW_DATA"


def raw_data_dir() -> Path:
    return Path(os.environ.get(RAW_DATA_ENV, REPO_ROOT.parent / "shared" / "data" / "raw")).resolve()


@pytest.fixture(scope="session")
def raw_data() -> Path:
    """The real sample datasets. Missing: a failure in CI (CI=true), a skip elsewhere."""
    path = raw_data_dir()
    if not (path / "Dataset001_TotalSegCT" / "dataset.json").is_file():
        message = f"real sample data not found at {path} (set {RAW_DATA_ENV})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def prefect_server():
    """One Prefect test server for the session, with the flow heartbeat off (it costs ~1 s a flow)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield


@pytest.fixture(scope="session")
def phantom_data(tmp_path_factory) -> Path:
    """SYNTHETIC phantom datasets (default seed), written once per session. Read-only for tests."""
    from pipeline.phantoms import write_phantom_datasets

    root = tmp_path_factory.mktemp("phantoms")
    write_phantom_datasets(root, seed=0)
    return root


@pytest.fixture(scope="session")
def raw_catalog(raw_data, prefect_server, tmp_path_factory):
    """All of the real sample data curated once with the default config; returns (catalog root, seconds)."""
    import time

    from flows.curate import curate

    root = tmp_path_factory.mktemp("raw-catalog") / "catalog"
    start = time.perf_counter()
    curate(sources=[str(raw_data)], catalog=str(root))
    return root, time.perf_counter() - start


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server on loopback (moto's standalone server) that checks credentials.

    Returns (endpoint URL, access key id, secret key) of a user allowed s3:*; any other key is refused
    (InvalidAccessKeyId), like AWS or MinIO would.
    """
    import json
    import socket
    import urllib.request

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam.create_user(UserName="sammed3d")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="sammed3d", PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="sammed3d")["AccessKey"]
    # From now on every request must be signed by a known key (moto's switch: no unauthenticated actions left).
    urllib.request.urlopen(urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
    ))
    try:
        yield endpoint, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        server.stop()


@pytest.fixture
def s3_catalog_url(s3_server, monkeypatch, request) -> str:
    """An empty bucket of its own on the loopback S3 server, with the AWS environment pointing at it;
    returns the catalog URL `s3://<bucket>/catalog`."""
    import re

    import boto3

    endpoint, key_id, secret = s3_server
    for name, value in (("AWS_ENDPOINT_URL", endpoint), ("AWS_ACCESS_KEY_ID", key_id),
                        ("AWS_SECRET_ACCESS_KEY", secret), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    bucket = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + f"-{os.getpid()}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/catalog"
