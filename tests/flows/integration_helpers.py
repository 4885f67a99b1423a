"""The real parts of a deployment, started on loopback for the integration and fault tests.

`LoopbackStack` runs, each as its own process group (started and stopped by PID):
`prefect server start` (SQLite in a private PREFECT_HOME), a process work pool with the deployments of
prefect.yaml, one `prefect worker`, `dask scheduler` and `dask worker`s. Every wait polls against a deadline;
on a timeout the message carries the tail of the relevant logs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from flows.deployments import WORK_POOL

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEPLOYMENT = "curate/process-pool"
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout_s: float, what: str, logs: Callable[[], str] = str) -> object:
    """Poll `condition` every 0.2 s until it returns something truthy; fail after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}\n{logs()}")


def descendants(pid: int) -> list[int]:
    """PIDs of all live descendants of `pid` (from /proc), including those that started their own session."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def process_groups(pid: int) -> set[int]:
    """Process groups of `pid` and of its live descendants (flow-run subprocesses start their own), not ours."""
    groups = set()
    for member in [pid, *descendants(pid)]:
        try:
            groups.add(os.getpgid(member))
        except ProcessLookupError:
            continue
    groups.discard(os.getpgrp())
    return groups


def signal_groups(groups: set[int], signum: int) -> None:
    for group in groups:
        try:
            os.killpg(group, signum)
        except ProcessLookupError:
            continue


def kill_tree(pid: int) -> None:
    """SIGKILL `pid`, its descendants and everything in their process groups."""
    signal_groups(process_groups(pid), signal.SIGKILL)


class ManagedProcess:
    """A command in its own process group, output to a log file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path, cwd: Path = REPO_ROOT):
        self.name = name
        self.log = log_dir / f"{name}.log"
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} (pid {self.pid}, exit {self.process.poll()}) ---\n" + "\n".join(
            text.splitlines()[-lines:]
        )

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the process tree, then SIGKILL what is left of it after `grace_s`."""
        groups = process_groups(self.pid)
        signal_groups(groups, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        signal_groups(groups, signal.SIGKILL)
        self.process.wait(timeout=grace_s)

    def kill(self) -> None:
        kill_tree(self.pid)
        self.process.wait(timeout=30)


class LoopbackStack:
    """Prefect server + process worker + Dask scheduler and workers on 127.0.0.1, in `workdir`."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.api_url = f"http://127.0.0.1:{free_port()}/api"
        self.dask_address = f"tcp://127.0.0.1:{free_port()}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        self.env.update(
            PREFECT_HOME=str(workdir / "prefect-home"),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            # Workers and `serve` pick up new flow runs within a second instead of the default 10 s.
            PREFECT_WORKER_QUERY_SECONDS="1",
            PREFECT_RUNNER_POLL_FREQUENCY="1",
            DASK_LOGGING__DISTRIBUTED="warning",
        )
        self.server: ManagedProcess | None = None
        self.process_workers: list[ManagedProcess] = []
        self.scheduler: ManagedProcess | None = None
        self.dask_workers: list[ManagedProcess] = []
        self._names = 0

    # --- starting and stopping -----------------------------------------------------------------------------

    def start(self, dask_workers: int = 2) -> None:
        port = self.api_url.split(":")[-1].split("/")[0]
        server_env = {k: v for k, v in self.env.items() if k != "PREFECT_API_URL"}
        self.server = ManagedProcess(
            "prefect-server",
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", port, "--no-ui",
             "--analytics-off"],
            server_env, self.logs,
        )
        host, dask_port = self.dask_address.removeprefix("tcp://").split(":")
        self.scheduler = ManagedProcess(
            "dask-scheduler",
            [str(BIN / "dask"), "scheduler", "--host", host, "--port", dask_port, "--no-dashboard"],
            self.env, self.logs,
        )
        for _ in range(dask_workers):
            self.start_dask_worker()
        wait_until(self._server_healthy, 120, "the Prefect server", self.tails)
        self.prefect_cli("work-pool", "create", WORK_POOL, "--type", "process")
        self.prefect_cli("--no-prompt", "deploy", "--all")
        self.start_process_worker()
        self.wait_for_dask_workers(dask_workers)

    def stop(self) -> None:
        for process in [*self.process_workers, *self.dask_workers, self.scheduler, self.server]:
            if process is not None and process.alive():
                process.stop()

    def start_process_worker(self) -> ManagedProcess:
        self._names += 1
        worker = ManagedProcess(
            f"process-worker-{self._names}",
            [str(BIN / "prefect"), "worker", "start", "--pool", WORK_POOL, "--name", f"loopback-{self._names}"],
            self.env, self.logs,
        )
        self.process_workers.append(worker)
        return worker

    def start_dask_worker(self) -> ManagedProcess:
        self._names += 1
        worker = ManagedProcess(
            f"dask-worker-{self._names}",
            [str(BIN / "dask"), "worker", self.dask_address, "--nthreads", "1", "--nworkers", "1",
             "--host", "127.0.0.1", "--no-dashboard", "--name", f"loopback-{self._names}"],
            self.env, self.logs,
        )
        self.dask_workers.append(worker)
        return worker

    def wait_for_dask_workers(self, count: int) -> None:
        from distributed import Client

        with Client(self.dask_address, timeout=60) as client:
            client.wait_for_workers(count, timeout=120)

    def dask_executed_counts(self) -> dict[str, int]:
        """Dask worker address -> number of tasks it has executed."""
        from distributed import Client

        with Client(self.dask_address, timeout=60) as client:
            return client.run(lambda dask_worker: dask_worker.state.executed_count)

    def tails(self) -> str:
        processes = [self.server, self.scheduler, *self.process_workers, *self.dask_workers]
        return "\n".join(p.tail() for p in processes if p is not None)

    # --- Prefect -------------------------------------------------------------------------------------------

    def _server_healthy(self) -> bool:
        if not self.server.alive():
            raise AssertionError(f"the Prefect server exited\n{self.server.tail()}")
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def prefect_cli(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
        """Run `prefect ARGS` against the loopback server; fail with its output when it fails."""
        result = subprocess.run(
            [str(BIN / "prefect"), *args], env=self.env, cwd=REPO_ROOT, capture_output=True,
            text=True, encoding="utf-8", errors="replace",
            timeout=timeout_s, start_new_session=True,
        )
        assert result.returncode == 0, f"prefect {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    def client(self):
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.api_url)

    def submit(self, parameters: dict, deployment: str = DEPLOYMENT) -> str:
        """Create a flow run of `deployment` (starts as soon as a worker polls); return its id."""
        with self.client() as client:
            deployment_id = client.read_deployment_by_name(deployment).id
            return str(client.create_flow_run_from_deployment(deployment_id, parameters=parameters).id)

    def flow_run_state(self, flow_run_id: str):
        with self.client() as client:
            return client.read_flow_run(flow_run_id).state

    def wait_for_final_state(self, flow_run_id: str, timeout_s: float = 180):
        def final():
            state = self.flow_run_state(flow_run_id)
            return state if state is not None and state.type.value in FINAL_STATES else None

        return wait_until(final, timeout_s, f"flow run {flow_run_id} to finish", self.tails)

    def wait_for_log(self, flow_run_id: str, fragment: str, timeout_s: float = 30) -> str:
        """The first log message of the flow run that contains `fragment` (logs reach the server in batches)."""
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        def message():
            with self.client() as client:
                logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            return next((log.message for log in logs if fragment in log.message), None)

        return wait_until(message, timeout_s, f"a log line with {fragment!r} from flow run {flow_run_id}", self.tails)

    def case_task_states(self, flow_run_id: str) -> dict[str, list[str]]:
        """The curate-batch task runs of a `curate` flow run (they run in its subflow): name -> state names."""
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

        with self.client() as client:
            subflows = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
            )
            task_runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[s.id for s in subflows]))
            )
            return {t.name: [s.name for s in client.read_task_run_states(t.id)] for t in task_runs}


def assert_catalog_complete(root: Path, expected_image_ids: set[str]) -> None:
    """Every expected image exactly once, each kept row's shard whole, no leftovers of any writer."""
    import pandas as pd

    images = pd.read_parquet(root / "images.parquet")
    masks = pd.read_parquet(root / "masks.parquet")
    assert not images.image_id.duplicated().any() and not masks.mask_id.duplicated().any()
    assert set(images.image_id) == expected_image_ids
    assert set(masks.image_id) <= expected_image_ids
    kept = set(images[images.status == "kept"].shard_path)
    for shard_path in kept:
        for metadata in ("zarr.json", "image/zarr.json", "label/zarr.json"):
            assert (root / shard_path / metadata).is_file(), f"{shard_path}/{metadata}"
    stored = {f"shards/{d.name}/{s.name}" for d in (root / "shards").iterdir() for s in d.iterdir()}
    assert stored == kept, f"shards without a kept row: {sorted(stored - kept)}"
    leftovers = [p for p in root.rglob("*") if p.name.startswith((".tmp-", ".old-", ".catalog.lock"))]
    assert leftovers == [], leftovers
    assert not list((root / "_parts").glob("*"))


def source_image_ids(source_root: Path) -> set[str]:
    """`<dataset>__<image file name without the dataset's file ending>` of every dataset under `source_root`."""
    ids = set()
    for meta_path in source_root.glob("*/dataset.json"):
        dataset, ending = meta_path.parent, json.loads(meta_path.read_text())["file_ending"]
        ids |= {f"{dataset.name}__{p.name.removesuffix(ending)}" for p in dataset.glob(f"imagesTr/*{ending}")}
    return ids

