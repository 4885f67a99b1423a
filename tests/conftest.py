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
