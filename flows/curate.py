"""The `curate` flow: source datasets -> the four curation steps -> the Zarr/Parquet catalog.

Reads top to bottom:
1. find the datasets and their cases (importers in `pipeline.importers`);
2. look up what the catalog already holds, so unchanged images (same source and config hash) are skipped;
3. curate each remaining case in a coarse task (one task reads the label map once for all channels),
   on a thread pool or on Dask, writing its shards and a part file as it finishes;
4. fold the parts into images.parquet / masks.parquet and publish a Markdown artifact of what each
   rule kept and dropped.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dask
import yaml
from prefect import flow, get_client, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import MissingContextError
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from catalog.dataset_report import write_dataset_report
from catalog.qc import qc_images_for_report
from catalog.report import curation_report_markdown
from catalog.store.location import CatalogLocation
from catalog.store.locking import catalog_write_lock
from catalog.store.manifest import table_file
from catalog.writer import consolidate, finished_parts, read_part_images, write_part, write_shard
from pipeline.catalog_rows import source_hash, source_hashes
from pipeline.config import CurationConfig
from pipeline.curate import curate_case
from pipeline.importers import DatasetLayoutError, discover_dataset_dirs, read_dataset
from pipeline.records import CaseRecord, ChannelSource


@dataclass(frozen=True)
class CaseOutcome:
    case_key: str
    curated: int
    skipped: int
    kept: int


def case_key(case: CaseRecord) -> str:
    return f"{case.dataset}__{case.case_id}"


def load_cases(sources: list[str], layout: str | None = None) -> list[CaseRecord]:
    """All cases of all sources. A dataset whose dataset.json is unusable becomes one rejected case."""
    cases = []
    for source in sources:
        for dataset_dir in discover_dataset_dirs(source, layout):
            try:
                cases.extend(read_dataset(dataset_dir, layout))
            except DatasetLayoutError as error:
                cases.append(
                    CaseRecord(
                        dataset=dataset_dir.name,
                        case_id="dataset_json",
                        channels=[ChannelSource(0, "unknown", dataset_dir / "dataset.json")],
                        label_path=None,
                        label_names={},
                        problems=[str(error)],
                    )
                )
    return cases


def catalogued_fingerprints(root: str | Path | CatalogLocation) -> dict[str, tuple[str, str]]:
    """image_id -> (source_hash, config_hash) of rows in the tables and in parts left by a killed run."""
    location = CatalogLocation.parse(root)
    fingerprints = {}
    images_file = table_file(location, "images")
    if images_file is not None:
        table = location.read_parquet(images_file, columns=["image_id", "source_hash", "config_hash"])
        for row in table.to_pylist():
            fingerprints[row["image_id"]] = (row["source_hash"], row["config_hash"])
    for key in finished_parts(location):
        for row in read_part_images(location, key)[["image_id", "source_hash", "config_hash"]].itertuples():
            fingerprints[row.image_id] = (row.source_hash, row.config_hash)
    return fingerprints


def stale_channels(case: CaseRecord, hashes: dict, config_hash: str, known: dict[str, tuple[str, str]]) -> list[int]:
    """Channels whose catalog row is missing or was made from other source bytes or another config."""
    label_sha = hashes.get(str(case.label_path)) if case.label_path else None
    return [
        c.index
        for c in case.channels
        if known.get(case.image_id(c)) != (source_hash(hashes.get(str(c.path)), label_sha), config_hash)
    ]


def curate_one_case(
    case: CaseRecord, config: CurationConfig, catalog_root: str, channels: list[int], hashes: dict
) -> CaseOutcome:
    """Curate the given channels of one case; write their shards, then the case's part file.

    Bad input never raises (it becomes rejected rows); what raises is transient (I/O).
    """
    result = curate_case(case, config, channels=channels, hashes=hashes)
    for image in result.images:
        if image.image is not None:
            row = image.row
            write_shard(
                catalog_root,
                row["shard_path"],
                image.image,
                image.label,
                attrs={
                    "image_id": row["image_id"],
                    "modality": row["modality"],
                    "axis_order": "zyx",
                    "spacing_xyz": list(image.geometry.spacing_xyz),
                    "origin_xyz": list(image.geometry.origin_xyz),
                    "direction": list(image.geometry.direction),
                    "label_values": {
                        str(m["label_value"]): m["mask_id"]
                        for m in result.masks
                        if m["image_id"] == row["image_id"] and m["status"] == "kept"
                    },
                },
            )
    write_part(catalog_root, case_key(case), [i.row for i in result.images], result.masks)
    kept = sum(i.row["status"] == "kept" for i in result.images)
    return CaseOutcome(case_key(case), curated=len(channels), skipped=len(case.channels) - len(channels), kept=kept)


@dataclass(frozen=True)
class CaseJob:
    """One case to curate: the channels whose catalog rows are missing or stale, and its source hashes."""

    case: CaseRecord
    channels: list[int]
    hashes: dict

    def cost(self) -> int:
        """Bytes of source files to read: a stand-in for the case's curation time when balancing batches."""
        paths = [self.case.channels[i].path for i in self.channels] + [self.case.label_path]
        return sum(_size(p) for p in paths if p is not None)


def _size(path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def plan_batches(jobs: list[CaseJob], n_batches: int) -> list[list[CaseJob]]:
    """Split `jobs` into at most `n_batches` batches of about equal cost (largest first into the lightest).

    Each batch keeps the cases' original order. Empty batches are dropped.
    """
    if n_batches < 1:
        raise ValueError(f"n_batches must be at least 1, got {n_batches}")
    n_batches = min(n_batches, len(jobs))
    costs = [job.cost() for job in jobs]
    loads, members = [0] * n_batches, [[] for _ in range(n_batches)]
    for index in sorted(range(len(jobs)), key=lambda i: -costs[i]):
        lightest = loads.index(min(loads))
        loads[lightest] += costs[index]
        members[lightest].append(index)
    return [[jobs[i] for i in sorted(batch)] for batch in members if batch]


def _already_written(job: CaseJob, catalog_root: str, config_hash: str, parts: set[str]) -> CaseOutcome | None:
    """The outcome of a job whose part an earlier try of its batch finished (its rows match the job), else None.

    `parts`: the catalog's finished parts (`finished_parts`) when the try started.
    """
    key = case_key(job.case)
    if key not in parts:
        return None
    rows = read_part_images(catalog_root, key)
    known = {r.image_id: (r.source_hash, r.config_hash) for r in rows.itertuples()}
    if stale_channels(job.case, job.hashes, config_hash, known):
        return None  # a part of an earlier run, made from other sources or another config
    kept = int((rows.status == "kept").sum())
    return CaseOutcome(key, curated=len(job.channels), skipped=len(job.case.channels) - len(job.channels), kept=kept)


def _task_logger():
    """The run's logger inside a Prefect run; this module's logger when the task's function is called directly."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


@task(name="curate-batch", retries=2, retry_delay_seconds=2, task_run_name="curate {label}")
def curate_batch_task(label: str, jobs: list[CaseJob], config: CurationConfig, catalog_root: str) -> list[CaseOutcome]:
    """Curate a batch of cases, one after another, each writing its own shards and part file.

    A case that raises (transient I/O: bad input becomes rejected rows instead) does not stop the others;
    the task then fails naming them, and Prefect's retry redoes only the cases whose part is not written.
    """
    logger = _task_logger()
    config_hash = config.config_hash()
    parts = set(finished_parts(catalog_root))  # listed once per try, not once per case (a LIST request on S3)
    outcomes, failed = [], []
    for job in jobs:
        done = _already_written(job, catalog_root, config_hash, parts)
        if done is not None:
            outcomes.append(done)
            continue
        try:
            outcomes.append(curate_one_case(job.case, config, catalog_root, job.channels, job.hashes))
        except Exception as error:  # noqa: BLE001 - reported below, the batch's retry redoes the case
            logger.warning("%s failed: %s: %s", case_key(job.case), type(error).__name__, error)
            failed.append(f"{case_key(job.case)} ({type(error).__name__}: {error})")
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(jobs)} cases failed: {'; '.join(failed)}")
    return outcomes


def share_api_with_worker_processes() -> None:
    """Point worker processes started from here at this run's Prefect API.

    Without PREFECT_API_URL, Prefect serves a run from a temporary in-process server; Dask worker
    processes would each start their own and report task runs there. Exporting the URL of the server in
    use (inherited by the workers' environment) keeps every task run on one server.
    """
    if not os.environ.get("PREFECT_API_URL"):
        os.environ["PREFECT_API_URL"] = str(get_client(sync_client=True).api_url)


DASK_SETTINGS = Path(__file__).with_name("dask.yaml")


def apply_dask_settings() -> None:
    """Load flows/dask.yaml into this process's Dask config, so local clusters started from here use it.

    Workers of a separate cluster read the same file from /etc/dask (the Docker image installs it there).
    """
    dask.config.update(dask.config.config, yaml.safe_load(DASK_SETTINGS.read_text(encoding="utf-8")))


def make_task_runner(dask_address: str | None, dask_workers: int | None, threads: int):
    """Thread pool by default; `DaskTaskRunner` for a cluster address or a local cluster of N workers.

    Workers of a cluster given by address must be configured with the same PREFECT_API_URL.
    """
    if dask_address or dask_workers:
        from prefect_dask import DaskTaskRunner

        share_api_with_worker_processes()

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        apply_dask_settings()
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": dask_workers, "threads_per_worker": 1, "processes": True},
        )
    return ThreadPoolTaskRunner(max_workers=threads)


def default_batch_count(n_jobs: int, parallelism: int) -> int:
    """Batches for `n_jobs` cases on `parallelism` workers: 4 per worker, so a slow batch leaves others work.

    One task per case costs about 75 ms of Dask and Prefect bookkeeping each (docs/benchmarks.md), as much as
    curating a small image; a few tasks per worker keep that cost negligible while balancing uneven cases.
    """
    return max(1, min(n_jobs, 4 * max(1, parallelism)))


def scheduler_threads(address: str) -> int:
    """Worker threads connected to the Dask scheduler at `address` now (at least 1)."""
    from distributed import Client

    with Client(address, timeout=30) as client:
        return max(1, sum(client.nthreads().values()))


@flow(name="curate-cases")
def curate_cases(
    sources: list[str],
    catalog_root: str,
    config: CurationConfig,
    layout: str | None = None,
    parallelism: int = 2,
    batch_size: int | None = None,
) -> list[CaseOutcome]:
    """Find the cases and fan them out, in batches, over this flow's task runner (chosen by `curate`)."""
    logger = get_run_logger()
    cases = load_cases(sources, layout)
    known = catalogued_fingerprints(catalog_root)
    logger.info("%d cases in %d sources; %d images already catalogued", len(cases), len(sources), len(known))
    config_hash = config.config_hash()
    with ThreadPoolExecutor(max_workers=4) as pool:
        all_hashes = list(pool.map(source_hashes, cases))
    jobs, outcomes = [], []
    for case, hashes in zip(cases, all_hashes):
        stale = stale_channels(case, hashes, config_hash, known)
        if stale:
            jobs.append(CaseJob(case, stale, hashes))
        else:
            outcomes.append(CaseOutcome(case_key(case), curated=0, skipped=len(case.channels), kept=0))
    if not jobs:
        return outcomes
    n_batches = -(-len(jobs) // batch_size) if batch_size else default_batch_count(len(jobs), parallelism)
    batches = plan_batches(jobs, n_batches)
    logger.info("%d cases to curate in %d batches of %d to %d", len(jobs), len(batches),
                min(map(len, batches)), max(map(len, batches)))
    futures = [
        curate_batch_task.submit(_batch_label(number, len(batches), batch), batch, config, catalog_root)
        for number, batch in enumerate(batches, start=1)
    ]
    return outcomes + [outcome for future in futures for outcome in future.result()]


def _batch_label(number: int, total: int, batch: list[CaseJob]) -> str:
    first, last = batch[0].case, batch[-1].case
    span = f"{first.dataset}/{first.case_id}" + (f" .. {last.dataset}/{last.case_id}" if len(batch) > 1 else "")
    return f"batch {number}/{total} ({len(batch)} case{'s' * (len(batch) > 1)}: {span})"


@flow(name="curate", log_prints=True)
def curate(
    sources: list[str],
    catalog: str,
    config: CurationConfig = CurationConfig(),
    dask_address: str | None = None,
    dask_workers: int | None = None,
    threads: int = 2,
    layout: str | None = None,
    batch_size: int | None = None,
) -> dict:
    """Curate every dataset under `sources` into the catalog at `catalog` (a folder or an s3:// URL).

    Args:
        sources: dataset folders (nnU-Net v2 raw layout) or folders of them.
        catalog: catalog root, a local folder or ``s3://bucket/prefix``; created if missing; reruns are
            incremental.
        config: curation thresholds (defaults follow the SAM-Med3D paper).
        dask_address: run tasks on this Dask scheduler (e.g. "tcp://127.0.0.1:8786").
        dask_workers: or start a local Dask cluster with this many worker processes.
        threads: thread-pool size when neither Dask option is given.
        layout: dataset layout (nnunet_v2, msd, sammed3d, totalsegmentator, dicom); detected per folder
            when None.
        batch_size: cases per task; None makes 4 batches per worker (thread, or Dask worker thread). Each
            case still gets its own rows, reasons and part file; a failed case is retried with its batch.

    The run holds the catalog's lock (`catalog.store.locking`) throughout; a second run on the same catalog at the
    same time fails at once with CatalogLockedError, naming the run that holds it.
    """
    logger = get_run_logger()
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    root = CatalogLocation.parse(catalog)
    root.check_access(for_writing=True)  # unreachable, refused or missing bucket: fail before writing anything
    # One writer per catalog: a second run at once would fold the first one's parts in mid-flight.
    with catalog_write_lock(root, owner=f"flow run {flow_run.name!r} ({flow_run.id})"):
        runner = make_task_runner(dask_address, dask_workers, threads)
        parallelism = dask_workers or (scheduler_threads(dask_address) if dask_address else threads)
        outcomes = curate_cases.with_options(task_runner=runner)(
            [str(s) for s in sources], root.url, config, layout, parallelism, batch_size
        )
        n_images, n_masks = consolidate(root, config.split_fractions)
        curated = sum(o.curated for o in outcomes)
        skipped = sum(o.skipped for o in outcomes)
        report = curation_report_markdown(root, curated=curated, skipped=skipped)
        if curated:  # an unchanged rerun writes nothing, reports included
            dataset_report = write_dataset_report(root)
            pictures = qc_images_for_report(root, 6)
            report += f"\n## Dataset report\n- `{dataset_report}`\n\n## QC pictures\n"
            report += "".join(f"- `{picture}`\n" for picture in pictures)
    create_markdown_artifact(markdown=report, key="curation-report", description="What each curation rule kept and dropped")
    logger.info("curated %d images, skipped %d unchanged; catalog has %d images, %d masks", curated, skipped, n_images, n_masks)
    return {"curated": curated, "skipped": skipped, "images": n_images, "masks": n_masks}
