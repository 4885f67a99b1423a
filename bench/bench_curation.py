"""Curation speed on the REAL sample datasets, measured side by side in one run.

Per case, three ways of doing the same job, interleaved round by round (median over rounds):
- ours:     `pipeline.curate.curate_case` (hashing, all four steps, resampling) + writing the Zarr shards;
- floor:    only reading the same source files (SimpleITK) and writing the same stored arrays;
- baseline: a straightforward version: nibabel reads, one `scipy.ndimage.label` per label value, keep the
            5 largest components, `scipy.ndimage.zoom` resampling, same shard writes (no left/right split).
Then the Prefect flow on Dask: images per minute with 1 and 2 worker processes (cluster start excluded).

    .venv/bin/python bench/bench_curation.py [--rounds 5] [--raw ../shared/data/raw] [--skip-dask] [--case ts_ct]
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")

import nibabel  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from scipy import ndimage  # noqa: E402

from catalog.writer import write_shard  # noqa: E402
from pipeline.config import CurationConfig  # noqa: E402
from pipeline.curate import curate_case  # noqa: E402
from pipeline.importers import discover_dataset_dirs, read_dataset  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def ours(case, config, out: Path) -> None:
    result = curate_case(case, config)
    for image in result.images:
        if image.image is not None:
            write_shard(out, image.row["shard_path"], image.image, image.label, {})


def floor(case, stored: list[tuple[str, np.ndarray, np.ndarray]], out: Path) -> None:
    sitk.GetArrayFromImage(sitk.ReadImage(str(case.label_path)))
    for channel in case.channels:
        sitk.GetArrayFromImage(sitk.ReadImage(str(channel.path)))
    for shard_path, image, label in stored:
        write_shard(out, shard_path, image, label, {})


def baseline(case, stored_paths: list[str], config: CurationConfig, out: Path) -> None:
    label_file = nibabel.load(str(case.label_path))
    label = np.asanyarray(label_file.dataobj)
    zooms = np.asarray(label_file.header.get_zooms()[:3], dtype=float)
    cleaned = np.zeros(label.shape, dtype=np.uint8)
    structure = np.ones((3, 3, 3), dtype=bool)
    for index, value in enumerate(v for v in np.unique(label) if v != 0):
        mask = label == value
        components, count = ndimage.label(mask, structure=structure)
        sizes = np.bincount(components.ravel())[1:]
        keep = np.argsort(sizes)[::-1][: config.keep_largest_components] + 1
        kept = np.isin(components, keep)
        points = np.nonzero(kept)
        box = np.prod([p.max() - p.min() + 1 for p in points])
        if 1 - kept.sum() / box > config.max_background_fraction:
            continue
        cleaned[kept] = index + 1
    factors = zooms / np.asarray(config.target_spacing_mm)
    label_out = ndimage.zoom(cleaned, factors, order=0).T
    for channel, shard_path in zip(case.channels, stored_paths):
        image = np.asanyarray(nibabel.load(str(channel.path)).dataobj).astype(np.float32)
        image_out = ndimage.zoom(image, factors, order=1).T
        write_shard(out, shard_path, image_out, label_out, {})


def median_time(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def bench_cases(raw: Path, rounds: int, only: list[str] | None = None) -> None:
    config = CurationConfig()
    work = Path(tempfile.mkdtemp(prefix="bench-curation-"))
    rows = []
    for dataset_dir in discover_dataset_dirs(raw):
        for case in read_dataset(dataset_dir):
            if only and case.case_id not in only:
                continue
            reference = curate_case(case, config)
            stored = [(i.row["shard_path"], i.image, i.label) for i in reference.images if i.image is not None]
            if not stored:
                continue  # rejected at step 1: nothing to write, nothing to compare
            shard_paths = [s[0] for s in stored]
            times = {"ours": [], "floor": [], "baseline": []}
            for round_index in range(rounds):
                for name in ("ours", "floor", "baseline") if round_index % 2 == 0 else ("baseline", "floor", "ours"):
                    out = work / name
                    if name == "ours":
                        times[name].append(median_time(ours, case, config, out))
                    elif name == "floor":
                        times[name].append(median_time(floor, case, stored, out))
                    else:
                        times[name].append(median_time(baseline, case, shard_paths, config, out))
            medians = {k: statistics.median(v) for k, v in times.items()}
            rows.append((f"{dataset_dir.name.split('_', 1)[0]} {case.case_id}", len(stored), medians))
            print(
                f"  {rows[-1][0]:32s} images {len(stored)}  ours {medians['ours']*1000:7.1f} ms  "
                f"floor {medians['floor']*1000:7.1f} ms  baseline {medians['baseline']*1000:8.1f} ms",
                flush=True,
            )
    shutil.rmtree(work, ignore_errors=True)

    print("\n| case | images | ours (ms/image) | floor (ms/image) | baseline (ms/image) | ours / floor | baseline / ours |")
    print("|---|---|---|---|---|---|---|")
    totals = {"ours": 0.0, "floor": 0.0, "baseline": 0.0}
    n_images = 0
    for name, images, medians in rows:
        for key in totals:
            totals[key] += medians[key]
        n_images += images
        print(
            f"| {name} | {images} | {medians['ours']/images*1000:.1f} | {medians['floor']/images*1000:.1f} | "
            f"{medians['baseline']/images*1000:.1f} | {medians['ours']/medians['floor']:.2f} | "
            f"{medians['baseline']/medians['ours']:.1f} |"
        )
    print(
        f"| **all {len(rows)} cases** | {n_images} | {totals['ours']/n_images*1000:.1f} | "
        f"{totals['floor']/n_images*1000:.1f} | {totals['baseline']/n_images*1000:.1f} | "
        f"{totals['ours']/totals['floor']:.2f} | {totals['baseline']/totals['ours']:.1f} |"
    )


def bench_dask(raw: Path) -> None:
    from distributed import Client, LocalCluster

    from flows.curate import curate, share_api_with_worker_processes
    from pipeline.phantoms import write_phantom_datasets

    work = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    warmup = work / "warmup"
    write_phantom_datasets(warmup, seed=0, n_ct=1, n_mr=1)
    curate(sources=[str(warmup)], catalog=str(work / "warmup-catalog"))  # starts Prefect's local server
    share_api_with_worker_processes()  # before the cluster starts, so its workers report to that server
    print("\n| runner | workers | images | seconds | images / minute |")
    print("|---|---|---|---|---|")
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            with Client(cluster) as client:  # import the project (and torch) on every worker before timing
                client.run(importlib.import_module, "flows.curate")
            start = time.perf_counter()
            result = curate(
                sources=[str(raw)], catalog=str(work / f"dask-{workers}"), dask_address=cluster.scheduler_address
            )
            seconds = time.perf_counter() - start
        print(f"| Dask | {workers} | {result['curated']} | {seconds:.1f} | {result['curated'] / seconds * 60:.0f} |")
    start = time.perf_counter()
    result = curate(sources=[str(raw)], catalog=str(work / "threads"), threads=2)
    seconds = time.perf_counter() - start
    print(f"| thread pool | 2 threads | {result['curated']} | {seconds:.1f} | {result['curated'] / seconds * 60:.0f} |")
    shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", default=os.environ.get("SAMMED3D_RAW_DATA", str(REPO.parent / "shared/data/raw")))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--skip-cases", action="store_true")
    parser.add_argument("--case", action="append", help="only this case id (repeatable), e.g. --case ts_ct")
    args = parser.parse_args()
    raw = Path(args.raw)
    if not raw.is_dir():
        print(f"bench_curation: error: real sample data not found at {raw} (use --raw)", file=sys.stderr)
        return 2
    print(f"# curation benchmark on {raw} ({os.cpu_count()} cores), median of {args.rounds} rounds")
    if not args.skip_cases:
        bench_cases(raw, args.rounds, args.case)
    if not args.skip_dask:
        bench_dask(raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
