"""Training patches per second from a catalog on loopback S3 vs the same catalog on local disk, side by side.

One SYNTHETIC full-size CT phantom (384x384x256 voxels of 0.625 x 0.625 x 0.75 mm, stored at 1.5 mm) and, when
the real sample data are there, Dataset001's ts_ct are curated twice by the same code: into a local folder and
into ``s3://bench/catalog`` on moto's standalone S3 server, started by this script on 127.0.0.1 (a separate
process, as MinIO would be; on this machine it shares the 2 cores with the readers). Then the trainer's
loader (`model.training.patch_loader.PatchBatchLoader` over `PatchDataset`, batches of 2, float16 images, packed
labels, as `sammed3d train` builds it) reads the same masks' 128³ patches from each catalog:

* **cold**: chunk cache off: every patch fetches and decodes every 64³ chunk it overlaps (up to 27 per array).
* **cached**: the default per-worker chunk cache (512 MiB): the masks of an image share its decoded chunks, as in
  training.

with 0 and 2 DataLoader worker processes; the first batch (worker start-up, S3 connections) is untimed.

Usage: python bench/bench_s3_patches.py [--samples 128]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_patches import patches_per_second  # noqa: E402
from quick_catalog import curate_without_server  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RAW = Path(os.environ.get("SAMMED3D_RAW_DATA", REPO.parent / "shared" / "data" / "raw"))


def start_moto_server() -> tuple[subprocess.Popen, str]:
    """moto's standalone S3 server on a free loopback port; returns (process, endpoint URL) once it answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    binary = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)
            return process, endpoint
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"moto_server did not answer on {endpoint}") from None
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=128, help="patches timed per setting")
    parser.add_argument("--batch-size", type=int, default=2)
    args = parser.parse_args(argv)
    if args.samples < 1 or args.batch_size < 1:
        print("bench_s3_patches: error: --samples and --batch-size must be at least 1", file=sys.stderr)
        return 2

    server, endpoint = start_moto_server()
    # Set before anything opens S3: the loader's worker processes inherit them.
    os.environ.update({
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    })
    try:
        import boto3
        import torch

        from model.targets import select_masks
        from model.training.patch_dataset import PatchDataset
        from pipeline.phantoms import CT_DATASET, write_phantom_datasets

        torch.set_num_threads(2)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
        with tempfile.TemporaryDirectory(prefix="sammed3d-bench-s3-") as scratch:
            scratch = Path(scratch)
            write_phantom_datasets(scratch / "raw", seed=0, n_ct=1, n_mr=0, size_scale=4.0)
            sources = [scratch / "raw" / CT_DATASET]
            cases = [(CT_DATASET, "phantom_ct_000", "SYNTHETIC CT phantom, full size")]
            if (RAW / "Dataset001_TotalSegCT" / "dataset.json").is_file():
                sources.append(RAW / "Dataset001_TotalSegCT")
                cases.append(("Dataset001_TotalSegCT", "ts_ct", "Dataset001 ts_ct (real)"))
            catalogs = {}
            for name, root in (("local", scratch / "catalog"), ("S3", "s3://bench/catalog")):
                started = time.perf_counter()
                curate_without_server(sources, root)
                catalogs[name] = (root, time.perf_counter() - started)
            load_before = os.getloadavg()
            rows = []
            for dataset, case, label in cases:
                masks = select_masks(catalogs["local"][0], datasets=[dataset], splits=None)
                masks = masks[masks.case_id == case].reset_index(drop=True)
                for cache, cache_mb in (("cold", 0), ("cached", None)):
                    for workers in (0, 2):
                        speeds = {}
                        for name, (root, _) in catalogs.items():
                            options = {} if cache_mb is None else {"cache_mb": cache_mb}
                            dataset_ = PatchDataset(root, masks, seed=0, image_dtype=torch.float16,
                                                    pack_labels=True, **options)
                            speeds[name] = patches_per_second(dataset_, args.samples, workers, args.batch_size)
                        rows.append((label, len(masks), cache, workers, speeds["local"], speeds["S3"]))
            load_after = os.getloadavg()
    finally:
        server.kill()
        server.wait()

    print(f"Load average {load_before[0]:.2f} before, {load_after[0]:.2f} after ({os.cpu_count()} cores).")
    print(f"Curation into each catalog (the same cases): local {catalogs['local'][1]:.1f} s, "
          f"S3 {catalogs['S3'][1]:.1f} s.\n")
    print(f"Patches per second, batches of {args.batch_size}, {args.samples} patches timed per cell.\n")
    print("| case | masks | chunk cache | DataLoader workers | local disk | loopback S3 | S3 / local |")
    print("|---|---|---|---|---|---|---|")
    for label, n_masks, cache, workers, local, s3 in rows:
        print(f"| {label} | {n_masks} | {cache} | {workers} | {local:.1f} | {s3:.1f} | {s3 / local:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
