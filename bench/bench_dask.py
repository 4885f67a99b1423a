"""Curation on Dask vs the thread pool, on a larger SYNTHETIC phantom set, measured side by side in one run.

1. Throughput: images per minute curating ~200 SYNTHETIC phantom images (140 cases) with the `curate` flow on
   a local Dask cluster of 1 and 2 worker processes (1 thread each; cases in batches, the default, and for
   2 workers also one case per task), on the thread pool (2 threads), and the same cases in a plain loop
   without Prefect (1 process), with each flow's images per minute as a share of the plain loop's.
2. Orchestration cost per task: a flow that submits N no-op tasks, timed against the same flow with none,
   through the thread pool and through Dask; and for the curation runs, wall time x workers / cases
   minus the plain loop's time per case.

    .venv/bin/python bench/bench_dask.py [--ct-cases 80] [--mr-cases 60] [--size-scale 1.0]
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")

from prefect import flow, task  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402


@task
def noop(index: int) -> int:
    return index


@flow(name="bench-fan-out")
def fan_out(n_tasks: int) -> int:
    """Submit `n_tasks` no-op tasks to this flow's task runner and wait for all of them."""
    futures = [noop.submit(i) for i in range(n_tasks)]
    return sum(f.result() for f in futures)


def seconds(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def plain_loop(sources: Path, out: Path) -> tuple[float, int, int]:
    """Every case curated and written without Prefect, one after another: (seconds, cases, images)."""
    from catalog.writer import write_shard
    from flows.curate import load_cases
    from pipeline.config import CurationConfig
    from pipeline.curate import curate_case

    config = CurationConfig()
    cases = load_cases([str(sources)])
    start = time.perf_counter()
    n_images = 0
    for case in cases:
        result = curate_case(case, config)
        for image in result.images:
            n_images += 1
            if image.image is not None:
                write_shard(out, image.row["shard_path"], image.image, image.label, {})
    return time.perf_counter() - start, len(cases), n_images


def cpu_seconds() -> float:
    """User + system CPU time of the calling process (run on each Dask worker with `Client.run`)."""
    times = os.times()
    return times.user + times.system


def task_overhead_ms(runner_factory, n_tasks: int, rounds: int = 3) -> float:
    """(wall of N no-op tasks - wall of none) / N in ms, best of `rounds`, a fresh runner from `runner_factory`."""
    fan_out.with_options(task_runner=runner_factory())(4)  # warm-up: imports, connections
    empty, full = [], []
    for _ in range(rounds):
        empty.append(seconds(fan_out.with_options(task_runner=runner_factory()), 0)[0])
        wall, total = seconds(fan_out.with_options(task_runner=runner_factory()), n_tasks)
        assert total == n_tasks * (n_tasks - 1) // 2
        full.append(wall)
    return (min(full) - min(empty)) / n_tasks * 1000


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct-cases", type=int, default=80, help="CT phantoms (1 image each)")
    parser.add_argument("--mr-cases", type=int, default=60, help="MR phantoms (2 channels = 2 images each)")
    parser.add_argument("--size-scale", type=float, default=1.0, help="voxels per axis relative to the default")
    # Enough no-op tasks for a few seconds of each runner: the thread pool hides ~200 of them in a flow's fixed cost.
    parser.add_argument("--dask-defaults", action="store_true",
                        help="keep Dask's worker environment (MALLOC_TRIM_THRESHOLD_) instead of flows/dask.yaml")
    parser.add_argument("--noop-tasks-dask", type=int, default=200)
    parser.add_argument("--noop-tasks-threads", type=int, default=1000)
    args = parser.parse_args()
    if min(args.ct_cases, args.mr_cases, args.noop_tasks_dask, args.noop_tasks_threads) < 1 or args.size_scale <= 0:
        print("bench_dask: error: case and task counts must be at least 1, --size-scale positive", file=sys.stderr)
        return 2

    from distributed import Client, LocalCluster
    from prefect_dask import DaskTaskRunner

    from flows.curate import apply_dask_settings, curate, share_api_with_worker_processes
    from pipeline.phantoms import write_phantom_datasets

    print(f"# Dask benchmark ({os.cpu_count()} cores); before: {uptime()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    try:
        sources = work / "phantoms"
        written, _ = seconds(
            write_phantom_datasets, sources, seed=0, n_ct=args.ct_cases, n_mr=args.mr_cases,
            size_scale=args.size_scale,
        )
        print(f"wrote {args.ct_cases} CT + {args.mr_cases} MR SYNTHETIC phantom cases in {written:.0f} s", flush=True)
        warmup = work / "warmup"
        write_phantom_datasets(warmup, seed=1, n_ct=1, n_mr=1)
        curate(sources=[str(warmup)], catalog=str(work / "warmup-catalog"))  # starts Prefect's local server
        share_api_with_worker_processes()  # before any cluster starts, so its workers report to that server
        if not args.dask_defaults:
            apply_dask_settings()  # as `curate --dask-workers` and the Docker image do

        loop_s, n_cases, n_images = plain_loop(sources, work / "plain")
        rows = [("plain loop, no Prefect", "1 process", n_images, loop_s, None)]
        overhead = {}
        for workers in (1, 2):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
            with cluster:
                with Client(cluster) as client:  # import the project (and torch) on every worker before timing
                    client.run(importlib.import_module, "flows.curate")
                wall, result = seconds(
                    curate, sources=[str(sources)], catalog=str(work / f"dask-{workers}"),
                    dask_address=cluster.scheduler_address,
                )
                rows.append(("Dask, batches (default)", f"{workers} worker{'s' * (workers > 1)}", result["curated"],
                             wall, workers))
                if workers == 2:
                    wall, result = seconds(
                        curate, sources=[str(sources)], catalog=str(work / "dask-2-single"),
                        dask_address=cluster.scheduler_address, batch_size=1,
                    )
                    rows.append(("Dask, one case per task", "2 workers", result["curated"], wall, workers))
                    address = cluster.scheduler_address
                    with Client(cluster) as client:
                        cpu_before = sum(client.run(cpu_seconds).values())
                        wall_ms = task_overhead_ms(lambda: DaskTaskRunner(address=address), args.noop_tasks_dask)
                        cpu_ms = (sum(client.run(cpu_seconds).values()) - cpu_before) * 1000
                    # warm-up (4 tasks) + 3 rounds of N
                    overhead["Dask, 2 workers"] = (
                        args.noop_tasks_dask, wall_ms, f"{cpu_ms / (4 + 3 * args.noop_tasks_dask):.1f}"
                    )
        wall, result = seconds(curate, sources=[str(sources)], catalog=str(work / "threads"), threads=2)
        rows.append(("thread pool, batches (default)", "2 threads", result["curated"], wall, 2))
        overhead["thread pool, 2 threads"] = (
            args.noop_tasks_threads,
            task_overhead_ms(lambda: ThreadPoolTaskRunner(max_workers=2), args.noop_tasks_threads),
            "(in the flow process)",
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{n_images} images in {n_cases} cases (size scale {args.size_scale:g})\n")
    print("| runner | workers | images | seconds | images / minute | of the plain loop's | orchestration per case |")
    print("|---|---|---|---|---|---|---|")
    for runner, workers, images, wall, parallel in rows:
        extra = "" if parallel is None else f"{(wall * parallel - loop_s) / n_cases * 1000:.0f} ms"
        share = f"{images / wall / (n_images / loop_s):.0%}"
        print(f"| {runner} | {workers} | {images} | {wall:.1f} | {images / wall * 60:.0f} | {share} | {extra} |")
    print("\norchestration per case = (seconds x workers - plain loop seconds) / cases")
    print("\nNo-op tasks: (wall of a flow with N tasks - wall of an empty flow) / N, best of 3:\n")
    print("| runner | N | ms per task | Dask workers' CPU ms per task |")
    print("|---|---|---|---|")
    for runner, (n_tasks, milliseconds, worker_cpu) in overhead.items():
        print(f"| {runner} | {n_tasks} | {milliseconds:.1f} | {worker_cpu} |")
    print(f"\nafter: {uptime()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
