"""Fixtures of the loopback integration and fault tests (test_integration.py, test_faults.py)."""

from __future__ import annotations

import pytest

from tests.flows.integration_helpers import LoopbackStack


@pytest.fixture(scope="session")
def loopback_stack(tmp_path_factory):
    """Prefect server, process worker with prefect.yaml's deployments, Dask scheduler and 2 workers, on loopback.

    One per session (the server alone takes 10-20 s to start); tests that kill a part start a new one.
    """
    stack = LoopbackStack(tmp_path_factory.mktemp("loopback"))
    try:
        stack.start(dask_workers=2)
        yield stack
    finally:
        stack.stop()
