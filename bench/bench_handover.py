"""How DataLoader workers hand batches over: fresh shared memory per batch vs the trainer's ring of slots.

Same dataset, same batches, side by side, alternating, in one run: the real Dataset001 ts_ct's masks as
:class:`model.training.patch_dataset.PatchDataset` makes them for training (cached chunks, float16 images, bit-packed labels),
batches of 2, through

* **plain DataLoader**: ``DataLoader(dataset, sampler=<key lists>, batch_size=None)``: each worker builds the
  batch in shared memory it creates for it, and the training process maps it;
* **ring**: :class:`model.training.patch_loader.PatchBatchLoader`: workers write into slots allocated once.

Prints patches/s and the workers' user and system CPU milliseconds per patch (system time is mostly the
page faults of fresh shared memory).

Usage: python bench/bench_handover.py [--batches 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil  # noqa: E402
import torch  # noqa: E402
from quick_catalog import curate_without_server  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from model.targets import select_masks  # noqa: E402
from model.training.patch_dataset import PatchDataset  # noqa: E402
from model.training.patch_loader import PatchBatchLoader  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RAW = Path(os.environ.get("SAMMED3D_RAW_DATA", REPO.parent / "shared" / "data" / "raw"))
DATASET, CASE, WORKERS, BATCH = "Dataset001_TotalSegCT", "ts_ct", 2, 2


def measure(loader_kind: str, dataset: PatchDataset, batches: int) -> tuple[float, float, float]:
    """(patches/s, worker user ms per patch, worker system ms per patch) over `batches` batches, after 20
    untimed ones (worker start-up, chunk caches filled)."""
    n = len(dataset)
    # More batches than are read: the workers must still be alive when their CPU times are read.
    keys = [[(0, (BATCH * b + i) % n) for i in range(BATCH)] for b in range(batches + 40)]
    if loader_kind == "ring":
        iterator = iter(PatchBatchLoader(dataset, keys, batch_size=BATCH, num_workers=WORKERS))
    else:
        iterator = iter(DataLoader(dataset, sampler=keys, batch_size=None, num_workers=WORKERS))
    for _ in range(20):
        next(iterator)
    workers = psutil.Process().children()
    before = [w.cpu_times() for w in workers]
    started, patches = time.perf_counter(), 0
    for _ in range(batches):
        patches += len(next(iterator)["mask_id"])
    elapsed = time.perf_counter() - started
    after = [w.cpu_times() for w in workers]
    user = sum(a.user - b.user for a, b in zip(after, before))
    system = sum(a.system - b.system for a, b in zip(after, before))
    return patches / elapsed, 1e3 * user / patches, 1e3 * system / patches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200, help="timed batches per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the two loaders")
    args = parser.parse_args(argv)
    if not (RAW / DATASET / "dataset.json").is_file():
        print(f"bench_handover: real sample data not found at {RAW / DATASET} (set SAMMED3D_RAW_DATA)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sammed3d-bench-handover-") as scratch:
        catalog = curate_without_server([RAW / DATASET], Path(scratch) / "catalog")
        masks = select_masks(catalog, datasets=[DATASET], splits=None)
        masks = masks[masks.case_id == CASE].reset_index(drop=True)
        dataset = PatchDataset(catalog, masks, seed=0, image_dtype=torch.float16, pack_labels=True)
        load = os.getloadavg()[0]
        rows = [
            (round_, kind, *measure(kind, dataset, args.batches))
            for round_ in range(args.rounds)
            for kind in ("plain DataLoader", "ring")
        ]
    print(f"Load average {load:.2f} before (2 cores, shared with other work); {len(masks)} masks of {CASE}, "
          f"{WORKERS} workers, batches of {BATCH}.")
    print()
    print("| round | hand-over | patches/s | worker user ms / patch | worker system ms / patch |")
    print("|---|---|---|---|---|")
    for round_, kind, rate, user, system in rows:
        print(f"| {round_ + 1} | {kind} | {rate:.1f} | {user:.2f} | {system:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
