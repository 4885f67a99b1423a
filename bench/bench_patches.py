"""Training-data benchmark: 128³ patches per second from the Zarr catalog vs from the source .nii.gz.

Side by side in one run, on the same masks of one case, for two cases: the real Dataset001 ts_ct (a small CT:
122x101x112 voxels of 3 mm) and a SYNTHETIC full-size CT phantom (384x384x256 voxels of 0.625 x 0.625 x 0.75 mm,
the size of a typical clinical CT); both are stored at 1.5 mm:

All columns hand the same thing to the training process, as the trainer asks for it: batches of
``--batch-size`` samples (the training default, 2), float16 normalised images and labels packed 8 voxels to
a byte, made by 0 or 2 DataLoader worker processes. The conversion to float32 that follows on the training
device is not timed (on a GPU it is one kernel per batch).

* **catalog, cold**: :class:`model.training.patch_dataset.PatchDataset` through the trainer's loader
  (:class:`model.training.patch_loader.PatchBatchLoader`, batches written into shared-memory slots) with the chunk
  cache off (``cache_mb=0``): every patch decodes the Zarr chunks it touches, normalises, flips.
* **catalog, cached**: the same with the default per-worker chunk cache (512 MiB), as training runs it: the
  masks of one image share its decoded chunks.
* **cached, fp32 + bytes**: the cached dataset with float32 images and one byte per label voxel, collated by
  a plain DataLoader from single samples (how the trainer loaded before): what the hand-over buys.
* **source .nii.gz**: the published loader's way, per sample: read the case's whole image and label .nii.gz
  with SimpleITK, resample both to 1.5 mm (linear / nearest), binarise the mask, crop or pad 128³ around it,
  normalise.
* **1.5 mm .nii.gz**: the published loader exactly: its data were resampled to 1.5 mm once, offline, so per
  sample it reads the whole 1.5 mm image and label .nii.gz, binarises, crops or pads, normalises.

Then one training step of vit_tiny (batch 2, 11 click iterations, forward + backward + AdamW) on catalog
patches. Prints a Markdown table with the load average (paste it into docs/benchmarks.md).

Usage: python bench/bench_patches.py [--samples 256] [--source-samples 16] [--batch-size 2]
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
from quick_catalog import curate_without_server  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from catalog.schema import SPLIT_SIDE_SOURCES  # noqa: E402
from model.intensity import normalize_intensity  # noqa: E402
from model.targets import select_masks  # noqa: E402
from model.training.config import TrainConfig  # noqa: E402
from model.training.patch_dataset import PatchDataset  # noqa: E402
from model.training.patch_loader import PatchBatchLoader  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RAW = Path(os.environ.get("SAMMED3D_RAW_DATA", REPO.parent / "shared" / "data" / "raw"))
DATASET = "Dataset001_TotalSegCT"
CASE = "ts_ct"
PATCH = 128
SPACING_MM = 1.5


class SourceFilePatches(Dataset):
    """The published loader's per-sample work, on the same masks: whole-file read, (resample,) crop, normalise.

    With ``resample`` the files are the case's own (any spacing) and are resampled to 1.5 mm per sample;
    without, they are already at 1.5 mm, as the published training data were.
    """

    def __init__(self, image_path: Path, label_path: Path, source_labels: list[int], resample: bool = True):
        self.image_path, self.label_path, self.source_labels = image_path, label_path, source_labels
        self.resample = resample

    def __len__(self) -> int:
        return len(self.source_labels)

    def __getitem__(self, index: int) -> dict:
        image = sitk.ReadImage(str(self.image_path), sitk.sitkFloat32)
        label = sitk.ReadImage(str(self.label_path))
        if self.resample:
            image = _resampled(image, sitk.sitkLinear)
            label = _resampled(label, sitk.sitkNearestNeighbor)
        mask = sitk.GetArrayFromImage(label) == self.source_labels[index]
        voxels = np.argwhere(mask)
        centre = (voxels.min(axis=0) + voxels.max(axis=0) + 1) // 2
        start = centre - PATCH // 2
        image_patch = _crop_or_pad(sitk.GetArrayFromImage(image), start)
        mask_patch = _crop_or_pad(mask, start)
        return {
            "image": torch.from_numpy(normalize_intensity(image_patch, "CT")).to(torch.float16)[None],
            "label": torch.from_numpy(np.packbits(mask_patch, axis=-1))[None],
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


def patches_per_second(dataset: Dataset, samples: int, workers: int, batch_size: int) -> float:
    """Patches/s delivered to this process, the first batch (worker start-up) untimed. A PatchDataset in the
    trainer's format goes through the trainer's loader (model.training.patch_loader); other datasets through a
    DataLoader that collates single samples."""
    indices = [i % len(dataset) for i in range(samples + batch_size)]
    if isinstance(dataset, PatchDataset) and dataset.pack_labels:
        batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
        loader = PatchBatchLoader(dataset, batches, batch_size=batch_size, num_workers=workers)
    else:
        loader = DataLoader(dataset, batch_size=batch_size, sampler=indices, num_workers=workers)
    iterator = iter(loader)
    next(iterator)
    started = time.perf_counter()
    count = sum(len(batch["image"]) for batch in iterator)
    return count / (time.perf_counter() - started)


def training_step_seconds(dataset: PatchDataset, repeats: int) -> float:
    """Median seconds of one vit_tiny optimiser step: batch 2, 11 click iterations, forward+backward+AdamW."""
    from model.network.registry import build_model
    from model.training.batching import click_seeds
    from model.training.click_loop import ClickLoop
    from model.training.config import TrainConfig
    from model.training.trainer import make_optimizer

    torch.manual_seed(0)
    model = build_model("vit_tiny")
    loop = ClickLoop(model, 11)
    optimizer = make_optimizer(model, TrainConfig(catalog="-", out="-"))
    batch = dataset[[0, 1]]
    image, label = batch["image"].float(), batch["label"].float()
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        loss = loop(image, label, click_seeds(0, 0, [0, 1]), 5)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def measure_case(
    label: str, dataset_dir: Path, case: str, catalog: Path, scratch: Path, args: argparse.Namespace
) -> tuple:
    """(label, masks, source voxels, [(workers, cold, cached, cached fp32 + bytes, source, 1.5 mm source
    patches/s)], a dataset of the case's masks in the default format)."""
    masks = select_masks(catalog, datasets=[dataset_dir.name], splits=None)
    # Masks split into left/right have no single source label to binarise; the rest map one to one.
    masks = masks[(masks.case_id == case) & ~masks.side_source.isin(SPLIT_SIDE_SOURCES)].reset_index(drop=True)
    # As the trainer builds it (model/training/trainer.py).
    handed_over = {"image_dtype": torch.float16, "pack_labels": True}
    cold = PatchDataset(catalog, masks, seed=0, cache_mb=0, **handed_over)
    cached = PatchDataset(catalog, masks, seed=0, **handed_over)
    unpacked = PatchDataset(catalog, masks, seed=0)
    image_path = dataset_dir / "imagesTr" / f"{case}_0000.nii.gz"
    label_path = dataset_dir / "labelsTr" / f"{case}.nii.gz"
    source_labels = [int(v) for v in masks.source_label]
    source = SourceFilePatches(image_path, label_path, source_labels)
    resampled = []
    for path, interpolator in ((image_path, sitk.sitkLinear), (label_path, sitk.sitkNearestNeighbor)):
        # Written in the file's own pixel type (int16 CT), as a preprocessing step would.
        resampled.append(scratch / f"{case}_{path.name.split('.')[0]}_1.5mm.nii.gz")
        sitk.WriteImage(_resampled(sitk.ReadImage(str(path)), interpolator), str(resampled[-1]), True)
    at_1_5_mm = SourceFilePatches(resampled[0], resampled[1], source_labels, resample=False)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(image_path))
    reader.ReadImageInformation()
    rows = []
    for workers in (0, 2):
        rows.append(
            (
                workers,
                patches_per_second(cold, args.samples, workers, args.batch_size),
                patches_per_second(cached, args.samples, workers, args.batch_size),
                patches_per_second(unpacked, args.samples, workers, args.batch_size),
                patches_per_second(source, args.source_samples, workers, args.batch_size),
                patches_per_second(at_1_5_mm, args.source_samples, workers, args.batch_size),
            )
        )
    return label, len(masks), "x".join(str(n) for n in reader.GetSize()), rows, unpacked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256, help="catalog patches timed per setting")
    parser.add_argument("--source-samples", type=int, default=16, help="source-file patches timed per setting")
    parser.add_argument("--step-repeats", type=int, default=3, help="timed training steps")
    parser.add_argument(
        "--batch-size", type=int, default=TrainConfig.model_fields["batch_size"].default, help="samples per batch"
    )
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
            measure_case(f"{DATASET} {CASE} (real)", dataset_dir, CASE, catalog, scratch, args),
            measure_case(
                "SYNTHETIC CT phantom, full size", scratch / "raw" / CT_DATASET, "phantom_ct_000", catalog, scratch, args
            ),
        ]
        step = training_step_seconds(results[0][4], args.step_repeats)
        load_after = os.getloadavg()

    table = [
        f"Load average {load_before[0]:.2f} before, {load_after[0]:.2f} after (2 cores, shared with other work).",
        "",
        f"Patches per second, batches of {args.batch_size}.",
        "",
        "| case | source voxels (x y z) | masks | DataLoader workers | catalog cold | catalog cached "
        "| cached, fp32 + bytes | source .nii.gz | 1.5 mm .nii.gz | cold / source | cached / source "
        "| cached / 1.5 mm |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {label} | {size} | {n} | {w} | {cold:.1f} | {cached:.1f} | {plain:.1f} | {src:.2f} | {mm:.2f} "
            f"| {cold / src:.1f}x | {cached / src:.1f}x | {cached / mm:.1f}x |"
            for label, n, size, rows, _ in results
            for w, cold, cached, plain, src, mm in rows
        ],
        "",
        "| vit_tiny training step (batch 2, 11 click iterations, forward + backward + AdamW, fp32 CPU, 2 threads) | seconds |",
        "|---|---|",
        f"| median of {args.step_repeats} | {step:.2f} |",
    ]
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
