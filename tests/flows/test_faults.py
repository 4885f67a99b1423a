"""Faults of a scaled-out run: a lost Dask worker, a killed flow process, two runs on one catalog.

The catalog lock is tested on its own first; then the same faults hit real processes on loopback
(`loopback_stack`). All data here is SYNTHETIC (phantoms).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from catalog.lock import LOCK_FILE, CatalogLockedError, catalog_lock, lock_holder
from pipeline.phantoms import write_phantom_datasets
from tests.flows.integration_helpers import (
    assert_catalog_complete,
    descendants,
    kill_tree,
    source_image_ids,
    wait_until,
)

# --- the lock on its own --------------------------------------------------------------------------------------


def test_a_second_writer_is_refused_with_the_holders_name(tmp_path):
    with catalog_lock(tmp_path, owner="flow run 'first'"):
        assert lock_holder(tmp_path)["owner"] == "flow run 'first'"
        with pytest.raises(CatalogLockedError, match=r"is being written by flow run 'first' on host .+, pid \d+"):
            with catalog_lock(tmp_path, owner="flow run 'second'"):
                pass
    assert not (tmp_path / LOCK_FILE).exists(), "a released lock leaves no file in the catalog"


def test_a_waiting_writer_gets_the_lock_when_it_is_released(tmp_path):
    held = threading.Event()

    def hold_for_a_second():
        with catalog_lock(tmp_path, owner="first"):
            held.set()
            time.sleep(1.0)

    holder = threading.Thread(target=hold_for_a_second)
    holder.start()
    held.wait(10)
    start = time.monotonic()
    with catalog_lock(tmp_path, owner="second", wait_s=20, poll_s=0.05):
        waited = time.monotonic() - start
        assert lock_holder(tmp_path)["owner"] == "second"
    holder.join()
    assert 0.5 < waited < 10
    with catalog_lock(tmp_path, owner="first"):
        with pytest.raises(CatalogLockedError, match=r"\(waited 0.3 s\)"):
            with catalog_lock(tmp_path, wait_s=0.3, poll_s=0.05):
                pass


def test_the_lock_of_a_killed_holder_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from catalog.lock import catalog_lock\n"
         "with catalog_lock(sys.argv[1], owner='doomed'):\n    print('held', flush=True); time.sleep(600)",
         str(tmp_path)],
        stdout=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", start_new_session=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CatalogLockedError, match="doomed"):
            with catalog_lock(tmp_path):
                pass
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        assert lock_holder(tmp_path)["owner"] == "doomed", "the killed holder's file is left behind"
        with catalog_lock(tmp_path, owner="next"):
            assert lock_holder(tmp_path)["owner"] == "next"
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait(timeout=30)


# --- faults on the loopback stack -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """12 SYNTHETIC cases, 18 images, at twice the default grid per axis: a few seconds of curation on 2
    workers, so a fault lands mid-run."""
    root = tmp_path_factory.mktemp("fault-phantoms")
    write_phantom_datasets(root, seed=7, n_ct=6, n_mr=6, size_scale=2.0)
    return root


@pytest.fixture(scope="module")
def reference_catalog(phantoms, prefect_server, tmp_path_factory):
    """The phantoms curated by an uninterrupted local run."""
    from flows.curate import curate

    root = tmp_path_factory.mktemp("fault-reference") / "catalog"
    curate(sources=[str(phantoms)], catalog=str(root))
    return root


def wait_for_first_part(stack, catalog, flow_run_id):
    def part_written():
        state = stack.flow_run_state(flow_run_id)
        if state.is_final():
            raise AssertionError(f"the run ended before any fault was injected: {state}")
        return list((catalog / "_parts").glob("*.images.parquet"))

    wait_until(part_written, 180, "the first finished case", stack.tails)


def assert_same_tables(catalog, reference):
    for table in ("images.parquet", "masks.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(catalog / table), pd.read_parquet(reference / table))


def test_losing_a_dask_worker_mid_run_reschedules_its_tasks(loopback_stack, phantoms, reference_catalog, tmp_path):
    from distributed import Client

    stack = loopback_stack
    catalog = tmp_path / "catalog"
    parameters = {"sources": [str(phantoms)], "catalog": str(catalog), "dask_address": stack.dask_address}
    flow_run_id = stack.submit(parameters)
    wait_for_first_part(stack, catalog, flow_run_id)
    with Client(stack.dask_address, timeout=30) as client:
        # The victim must be executing a task whose Prefect run has started, or nothing visibly runs
        # again: a worker that has finished a task of the run (so its imports are done) and is executing
        # another. A worker that only has tasks queued, or is still importing the project for its first
        # one (seconds, while a warm worker curates a phantom in a fraction of one), hands them over
        # before their Prefect runs ever start.
        deadline = time.monotonic() + 60
        busy = []
        while not busy and time.monotonic() < deadline:
            progress = client.run(
                lambda dask_worker: (dask_worker.state.executed_count, len(dask_worker.state.executing))
            )
            busy = [address for address, (done, running) in progress.items() if done and running]
            if not busy:
                time.sleep(0.02)
        nanny_pids = client.run(os.getppid)
    assert busy, "no warm Dask worker was executing a task of the run"
    victim = next(w for w in stack.dask_workers if w.pid == nanny_pids[busy[0]])
    kill_tree(victim.pid)
    victim.process.wait(timeout=30)

    state = stack.wait_for_final_state(flow_run_id)
    assert state.is_completed(), f"{state}\n{stack.tails()}"
    states = stack.case_task_states(flow_run_id)
    assert all(s[-1] == "Completed" for s in states.values()), states
    rerun = [name for name, s in states.items() if s.count("Running") > 1]
    assert rerun, f"no task ran again after its worker was killed: {states}"
    assert_catalog_complete(catalog, source_image_ids(phantoms))
    assert_same_tables(catalog, reference_catalog)
    stack.start_dask_worker()  # for the next tests; it joins the cluster while they start


def test_killing_the_worker_that_runs_the_flow_then_rerunning_completes_the_catalog(
    loopback_stack, phantoms, reference_catalog, tmp_path
):
    stack = loopback_stack
    catalog = tmp_path / "catalog"
    # Thread runner: the curation tasks live in the flow-run process, so the kill stops every writer of the run.
    parameters = {"sources": [str(phantoms)], "catalog": str(catalog), "dask_address": None, "threads": 2}
    worker = stack.process_workers[-1]
    flow_run_id = stack.submit(parameters)
    wait_for_first_part(stack, catalog, flow_run_id)
    flow_processes = descendants(worker.pid)
    assert flow_processes, "the flow run is not a subprocess of the worker"
    worker.kill()
    wait_until(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in flow_processes), 30, "the flow run to die")
    assert not (catalog / "images.parquet").exists(), "the tables appear only when a run completes"
    assert list((catalog / "_parts").glob("*.images.parquet")), "the killed run finished at least one case"

    stack.start_process_worker()
    rerun_id = stack.submit(parameters)
    state = stack.wait_for_final_state(rerun_id)
    assert state.is_completed(), f"{state}\n{stack.tails()}"
    summary = stack.wait_for_log(rerun_id, "skipped")
    assert int(re.search(r"skipped (\d+) unchanged", summary).group(1)) >= 1, "finished cases are not redone"
    assert_catalog_complete(catalog, source_image_ids(phantoms))
    assert_same_tables(catalog, reference_catalog)


def test_two_runs_on_one_catalog_at_once_one_is_refused_by_the_lock(
    loopback_stack, phantoms, reference_catalog, tmp_path
):
    stack = loopback_stack
    stack.wait_for_dask_workers(2)
    catalog = tmp_path / "catalog"
    parameters = {"sources": [str(phantoms)], "catalog": str(catalog), "dask_address": stack.dask_address}
    runs = [stack.submit(parameters), stack.submit(parameters)]
    states = [stack.wait_for_final_state(run) for run in runs]
    assert sorted(s.type.value for s in states) == ["COMPLETED", "FAILED"], [str(s) for s in states]
    refused = next(s for s in states if s.is_failed())
    assert "CatalogLockedError" in refused.message and "is being written by flow run" in refused.message
    winner = runs[states.index(next(s for s in states if s.is_completed()))]
    assert winner in refused.message, "the refusal names the run holding the lock"
    assert_catalog_complete(catalog, source_image_ids(phantoms))
    assert_same_tables(catalog, reference_catalog)
