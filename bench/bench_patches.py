"""Training-data benchmark: 128³ patches per second from the Zarr catalog vs from the source .nii.gz.

Side by side in one run, on the same masks of one case, for two cases: the real Dataset001 ts_ct (a small CT:
122x101x112 voxels of 3 mm) and a SYNTHETIC full-size CT phantom (384x384x256 voxels of 0.625 x 0.625 x 0.75 mm,
the size of a typical clinical CT); both are stored at 1.5 mm:

* **catalog**: :class:`model.data.PatchDataset` through a DataLoader (0 and 2 workers): reads only the Zarr
  chunks the patch touches, normalises, flips.
* **source**: the published loader's way, per sample: read the whole image and label .nii.gz with SimpleITK,
  resample both to 1.5 mm (linear / nearest), binarise the mask, crop or pad 128³ around it, normalise;
  through the same DataLoader settings.

Then one training step of vit_tiny (batch 2, 11 click iterations, forward + backward + AdamW) on catalog
patches. Prints a Markdown table with the load average; ``--write`` also puts it into
docs/benchmarks_training.md.

Usage: python bench/bench_patches.py [--samples 64] [--source-samples 8] [--write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from model.data import PatchDataset, normalize_intensity, select_masks  # noqa: E402
from quick_catalog import curate_without_server  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RAW = Path(os.environ.get("SAMMED3D_RAW_DATA", REPO.parent / "shared" / "data" / "raw"))
DATASET = "Dataset001_TotalSegCT"
CASE = "ts_ct"
PATCH = 128
SPACING_MM = 1.5


class SourceFilePatches(Dataset):
    """The published loader's per-sample work, on the same masks: whole-file read, resample, crop, normalise."""

    def __init__(self, image_path: Path, label_path: Path, source_labels: list[int]):
        self.image_path, self.label_path, self.source_labels = image_path, label_path, source_labels

    def __len__(self) -> int:
        return len(self.source_labels)

    def __getitem__(self, index: int) -> dict:
        image = _resampled(sitk.ReadImage(str(self.image_path), sitk.sitkFloat32), sitk.sitkLinear)
        label = _resampled(sitk.ReadImage(str(self.label_path)), sitk.sitkNearestNeighbor)
        mask = sitk.GetArrayFromImage(label) == self.source_labels[index]
        voxels = np.argwhere(mask)
        centre = (voxels.min(axis=0) + voxels.max(axis=0) + 1) // 2
        start = centre - PATCH // 2
        image_patch = _crop_or_pad(sitk.GetArrayFromImage(image), start)
        mask_patch = _crop_or_pad(mask, start)
        return {
            "image": torch.from_numpy(normalize_intensity(image_patch, "CT"))[None],
            "label": torch.from_numpy(mask_patch.astype(np.float32))[None],
        }


def _resampled(image: sitk.Image, interpolator: int) -> sitk.Image:
    size = [int(round(n * s / SPACING_MM)) for n, s in zip(image.GetSize(), image.GetSpacing())]
    return sitk.Resample(
        image, size, sitk.Transform(), interpolator, image.GetOrigin(), (SPACING_MM,) * 3, image.GetDirection(), 0
    )


def _crop_or_pad(array: np.ndarray, start: np.ndarray) -> np.ndarray:
    out = np.zeros((PATCH,) * 3, dtype=array.dtype)
    low = np.maximum(start, 0)
    high = np.minimum(start + PATCH, array.shape)
    source = tuple(slice(a, b) for a, b in zip(low, high))
    target = tuple(slice(a - s, b - s) for a, b, s in zip(low, high, start))
    out[target] = array[source]
    return out


def patches_per_second(dataset: Dataset, samples: int, workers: int) -> float:
    """Patches/s through a DataLoader (batch 1), the first patch (worker start-up) untimed."""
    indices = [i % len(dataset) for i in range(samples + 1)]
    loader = DataLoader(dataset, batch_size=1, sampler=indices, num_workers=workers)
    iterator = iter(loader)
    next(iterator)
    started = time.perf_counter()
    count = sum(1 for _ in iterator)
    return count / (time.perf_counter() - started)


def training_step_seconds(dataset: PatchDataset, repeats: int) -> float:
    """Median seconds of one vit_tiny optimiser step: batch 2, 11 click iterations, forward+backward+AdamW."""
    from model.batching import click_seeds
    from model.builder import build_model
    from model.click_loop import ClickLoop
    from model.train_config import TrainConfig
    from model.trainer import make_optimizer

    torch.manual_seed(0)
    model = build_model("vit_tiny")
    loop = ClickLoop(model, 11)
    optimizer = make_optimizer(model, TrainConfig(catalog="-", out="-"))
    batch = [dataset[0], dataset[1]]
    image = torch.stack([s["image"] for s in batch])
    label = torch.stack([s["label"] for s in batch])
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        loss = loop(image, label, click_seeds(0, 0, [0, 1]), 5)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def measure_case(label: str, dataset_dir: Path, case: str, catalog: Path, args: argparse.Namespace) -> tuple:
    """(label, masks, source voxels, [(workers, catalog patches/s, source patches/s)]) for one case."""
    masks = select_masks(catalog, datasets=[dataset_dir.name], splits=None)
    # Masks split into left/right have no single source label to binarise; the rest map one to one.
    masks = masks[(masks.case_id == case) & (masks.side_source != "split")].reset_index(drop=True)
    ours = PatchDataset(catalog, masks, seed=0)
    image_path = dataset_dir / "imagesTr" / f"{case}_0000.nii.gz"
    source = SourceFilePatches(image_path, dataset_dir / "labelsTr" / f"{case}.nii.gz", [int(v) for v in masks.source_label])
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(image_path))
    reader.ReadImageInformation()
    rows = []
    for workers in (0, 2):
        rows.append((workers, patches_per_second(ours, args.samples, workers), patches_per_second(source, args.source_samples, workers)))
    return label, len(masks), "x".join(str(n) for n in reader.GetSize()), rows, ours


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64, help="catalog patches timed per setting")
    parser.add_argument("--source-samples", type=int, default=8, help="source-file patches timed per setting")
    parser.add_argument("--step-repeats", type=int, default=3, help="timed training steps")
    parser.add_argument("--write", action="store_true", help="write the table into docs/benchmarks_training.md")
    args = parser.parse_args(argv)
    dataset_dir = RAW / DATASET
    if not (dataset_dir / "dataset.json").is_file():
        print(f"bench_patches: real sample data not found at {dataset_dir} (set SAMMED3D_RAW_DATA)", file=sys.stderr)
        return 2
    from pipeline.phantoms import CT_DATASET, write_phantom_datasets

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="sammed3d-bench-patches-") as scratch:
        scratch = Path(scratch)
        write_phantom_datasets(scratch / "raw", seed=0, n_ct=1, n_mr=0, size_scale=4.0)
        catalog = curate_without_server([dataset_dir, scratch / "raw" / CT_DATASET], scratch / "catalog")
        load_before = os.getloadavg()
        results = [
            measure_case(f"{DATASET} {CASE} (real)", dataset_dir, CASE, catalog, args),
            measure_case("SYNTHETIC CT phantom, full size", scratch / "raw" / CT_DATASET, "phantom_ct_000", catalog, args),
        ]
        step = training_step_seconds(results[0][4], args.step_repeats)
        load_after = os.getloadavg()

    table = [
        f"Load average {load_before[0]:.2f} before, {load_after[0]:.2f} after (2 cores, shared with other work).",
        "",
        "| case | source voxels (x y z) | masks | DataLoader workers | catalog (patches/s) | source .nii.gz (patches/s) | catalog / source |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {label} | {size} | {n} | {w} | {c:.1f} | {s:.2f} | {c / s:.0f}x |"
            for label, n, size, rows, _ in results
            for w, c, s in rows
        ],
        "",
        "| vit_tiny training step (batch 2, 11 click iterations, forward + backward + AdamW, fp32 CPU, 2 threads) | seconds |",
        "|---|---|",
        f"| median of {args.step_repeats} | {step:.2f} |",
    ]
    text = "\n".join(table)
    print(text)
    if args.write:
        _write_doc(text)
    return 0


def _write_doc(table: str) -> None:
    path = REPO / "docs" / "benchmarks_training.md"
    path.write_text(
        "# Training benchmarks (issue 4)\n\n"
        "Command: `.venv/bin/python bench/bench_patches.py --write`. The catalog reads only the Zarr chunks a\n"
        "patch touches; the source path is the published loader's per-sample work (whole .nii.gz read with\n"
        "SimpleITK, resampling to 1.5 mm, crop/pad to 128³, normalisation), on the same masks, through the same\n"
        "DataLoader. The first patch of each setting (worker start-up) is not timed.\n\n"
        f"{table}\n\n"
        "Targets (>= 20x the source path, >= 50 patches/s with 2 workers) are not met on this machine. A 128³\n"
        "window at a random (jittered) offset overlaps up to 27 of the 64³ Zarr chunks per array, so a patch\n"
        "decodes about 7 M voxels of label and 7 M of image: about 8 ms and 14 ms here, plus 4 ms of\n"
        "normalisation; two workers on two shared cores add little. The source path's cost grows with the\n"
        "whole volume (the ratio is 4-5x on the small real case, 8-12x on a full-size CT), ours does not.\n"
    )


if __name__ == "__main__":
    sys.exit(main())
