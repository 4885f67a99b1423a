"""Cases curated in batches per Prefect task: balanced batches, per-case rows, retries that redo only failed cases.

All data here is SYNTHETIC (phantoms).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import flows.curate as curate_module
from flows.curate import CaseJob, curate, curate_batch_task, load_cases, plan_batches
from pipeline.catalog_rows import source_hashes
from pipeline.config import CurationConfig
from pipeline.records import CaseRecord, ChannelSource


def job_of_size(tmp_path: Path, name: str, size: int) -> CaseJob:
    path = tmp_path / f"{name}.nii.gz"
    path.write_bytes(b"x" * size)
    case = CaseRecord(dataset="D", case_id=name, channels=[ChannelSource(0, "CT", path)], label_path=None, label_names={})
    return CaseJob(case, [0], {})


def test_batches_hold_every_case_once_in_order_and_balance_source_bytes(tmp_path):
    sizes = [900, 100, 500, 500, 300, 200, 700, 100]
    jobs = [job_of_size(tmp_path, f"c{i}", s) for i, s in enumerate(sizes)]
    batches = plan_batches(jobs, 3)
    assert len(batches) == 3
    names = [[j.case.case_id for j in batch] for batch in batches]
    assert sorted(n for batch in names for n in batch) == sorted(f"c{i}" for i in range(8))
    assert all(batch == sorted(batch, key=lambda n: int(n[1:])) for batch in names)
    loads = [sum(j.cost() for j in batch) for batch in batches]
    assert max(loads) - min(loads) <= 200, loads  # total 3,300 bytes: 1,100 each at best
    assert [len(b) for b in plan_batches(jobs[:2], 5)] == [1, 1]
    with pytest.raises(ValueError, match="n_batches"):
        plan_batches(jobs, 0)


def test_a_failing_case_fails_its_batch_naming_it_and_the_retry_redoes_only_that_case(
    phantom_data, tmp_path, monkeypatch
):
    cases = [c for c in load_cases([str(phantom_data)]) if c.dataset.endswith("TorsoCT")][:3]
    jobs = [CaseJob(c, [ch.index for ch in c.channels], source_hashes(c)) for c in cases]
    root = str(tmp_path / "catalog")
    real = curate_module.curate_one_case
    calls: list[str] = []

    def flaky(case, *args):
        calls.append(case.case_id)
        if case.case_id == cases[1].case_id and calls.count(case.case_id) == 1:
            raise OSError("disk hiccup")
        return real(case, *args)

    monkeypatch.setattr(curate_module, "curate_one_case", flaky)
    config = CurationConfig()
    with pytest.raises(RuntimeError, match=rf"1 of 3 cases failed: .*{cases[1].case_id} \(OSError: disk hiccup\)"):
        curate_batch_task.fn("batch 1/1", jobs, config, root)
    assert calls == [c.case_id for c in cases]

    outcomes = curate_batch_task.fn("batch 1/1", jobs, config, root)  # what Prefect's retry runs
    assert calls[3:] == [cases[1].case_id], "finished cases are not curated again"
    assert [o.case_key for o in outcomes] == [f"{c.dataset}__{c.case_id}" for c in cases]
    assert all(o.curated == 1 and o.kept == 1 for o in outcomes)


def test_the_flow_with_batches_gives_the_same_catalog_as_one_case_per_task(phantom_data, prefect_server, tmp_path):
    batched = curate(sources=[str(phantom_data)], catalog=str(tmp_path / "batched"), threads=2)
    single = curate(sources=[str(phantom_data)], catalog=str(tmp_path / "single"), threads=2, batch_size=1)
    assert batched == single and batched["curated"] > 0
    for table in ("images.parquet", "masks.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "batched" / table), pd.read_parquet(tmp_path / "single" / table)
        )
    with pytest.raises(ValueError, match="batch_size"):
        curate(sources=[str(phantom_data)], catalog=str(tmp_path / "bad"), batch_size=0)


def test_local_dask_workers_keep_the_default_allocator_settings_and_the_image_installs_them():
    """Dask's MALLOC_TRIM_THRESHOLD_ costs curation 1.3x the CPU time in a worker; flows/dask.yaml unsets it."""
    import copy
    import os

    import dask
    from distributed import Client, LocalCluster

    from flows.curate import DASK_SETTINGS, apply_dask_settings

    saved = copy.deepcopy(dask.config.config)
    try:
        apply_dask_settings()
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            with Client(cluster) as client:
                environment = next(iter(client.run(lambda: dict(os.environ)).values()))
    finally:
        dask.config.config.clear()
        dask.config.config.update(saved)
    assert "MALLOC_TRIM_THRESHOLD_" not in environment
    assert environment["OMP_NUM_THREADS"] == "1"  # Dask's other worker settings stay
    dockerfile = (Path(__file__).parents[2] / "Dockerfile").read_text()
    assert f"cp flows/{DASK_SETTINGS.name} /etc/dask/" in dockerfile
