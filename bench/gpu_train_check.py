"""GPU training check: vit_b_ori, batch 2, bf16, on SYNTHETIC phantoms curated on the fly.

Prints samples/s over the timed steps (after warm-up steps, which the run resumes from, so cuDNN
autotuning and worker start-up are not timed) and the peak GPU memory (torch.cuda.max_memory_allocated).
Needs no data and no network. Without CUDA it stops with a message, unless `--device cpu` asks for a dry run.
`--catalog DIR` trains on an existing catalog instead (no curation on the GPU machine, so SimpleITK and Prefect
need not be installed there: only torch, zarr, monai, cc3d, pandas, pyarrow, pydantic, pyyaml, tqdm).

Usage: python bench/gpu_train_check.py [--steps 40] [--warmup-steps N] [--model vit_b_ori] [--device cuda]
       [--catalog DIR]
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

import torch  # noqa: E402
from quick_catalog import phantom_catalog  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed optimiser steps (default 40)")
    parser.add_argument("--warmup-steps", type=int, help="untimed steps first (default 5 on CUDA, 1 on CPU)")
    parser.add_argument("--model", default="vit_b_ori", help="vit_b_ori (default) or vit_tiny")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=11, help="click iterations per batch (paper: 11)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="DataLoader workers")
    parser.add_argument("--workdir", help="keep the phantoms, catalog and run here (default: a temporary folder)")
    parser.add_argument("--catalog", help="train on this existing catalog instead of curating SYNTHETIC phantoms")
    parser.add_argument(
        "--step-only", action="store_true", help="also time the optimiser step alone, on one batch held on the device"
    )
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA GPU is available to this torch "
            f"({torch.__version__}); run on a GPU machine, or add --device cpu for a CPU dry run.",
            file=sys.stderr,
        )
        return 2
    if args.warmup_steps is None:
        args.warmup_steps = 5 if args.device.startswith("cuda") else 1
    if args.steps < 1 or args.warmup_steps < 1:
        print("gpu_check: --steps and --warmup-steps must be at least 1.", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sammed3d-gpu-check-") as scratch:
        return _check(args, Path(args.workdir or scratch))


def _check(args: argparse.Namespace, folder: Path) -> int:
    from model.training.config import TrainConfig
    from model.training.trainer import train

    folder.mkdir(parents=True, exist_ok=True)
    if args.catalog:
        catalog = Path(args.catalog)
        if not (catalog / "masks.parquet").is_file():
            print(f"gpu_check: {catalog} is not a catalog (no masks.parquet).", file=sys.stderr)
            return 2
        print(f"catalog: {catalog}")
    else:
        started = time.perf_counter()
        catalog = phantom_catalog(folder / "phantoms")
        print(f"SYNTHETIC phantom catalog curated in {time.perf_counter() - started:.1f} s: {catalog}")
    cuda = args.device.startswith("cuda")
    fields = dict(
        catalog=str(catalog),
        out=str(folder / "run"),
        model=args.model,
        splits=None,
        batch_size=args.batch_size,
        iterations_per_batch=args.iterations,
        num_workers=args.workers,
        device=args.device,
        checkpoint_every=10**6,
        keep_checkpoints=1,
        log_every=1,
    )
    train(TrainConfig(max_steps=args.warmup_steps, **fields))
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    result = train(TrainConfig(max_steps=args.warmup_steps + args.steps, resume=True, **fields))
    device = torch.cuda.get_device_name() if cuda else "CPU"
    precision = "bf16 autocast" if cuda else "fp32"
    print("\n| model | device | precision | batch | iterations | timed steps | samples/s | s/step | peak GPU memory |")
    print("|---|---|---|---|---|---|---|---|---|")
    peak = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if cuda else "n/a (CPU)"
    rate = result["samples_per_s"]
    print(
        f"| {args.model} | {device} | {precision} | {args.batch_size} | {args.iterations} | {args.steps} | "
        f"{rate:.2f} | {args.batch_size / rate:.2f} | {peak} |"
    )
    print(f"final loss {result['loss']:.4f} at step {result['step']}")
    if args.step_only:
        _time_step_alone(args, catalog)
    return 0


def _time_step_alone(args: argparse.Namespace, catalog: Path) -> None:
    """Seconds per optimiser step with the batch already on the device: the step without data loading."""
    from model.targets import select_masks
    from model.training.batching import click_seeds
    from model.training.click_loop import ClickLoop
    from model.training.config import TrainConfig
    from model.training.patch_dataset import PatchDataset
    from model.training.trainer import autocast_for, configured_model, make_optimizer

    device = torch.device(args.device)
    config = TrainConfig(catalog=str(catalog), out="-", model=args.model, device=args.device)
    dataset = PatchDataset(catalog, select_masks(catalog, splits=None).head(args.batch_size), seed=0)
    batch = dataset[list(range(args.batch_size))]
    image, label = batch["image"].to(device), batch["label"].to(device).float()
    model = configured_model(config).to(device)
    loop = ClickLoop(model, args.iterations, loss_resolution=config.loss_resolution).to(device)
    refine_iteration = (args.iterations - 1) // 2  # the trainer draws it in [1, iterations - 2]
    optimizer = make_optimizer(model, config)
    times = []
    for repeat in range(args.warmup_steps + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with autocast_for(config, device):
            loss = loop(image, label, click_seeds(0, 0, list(range(args.batch_size))), refine_iteration)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if repeat >= args.warmup_steps:
            times.append(time.perf_counter() - started)
    step = sorted(times)[len(times) // 2]
    print(f"step alone (batch on the device, median of {len(times)}): {step:.3f} s, {args.batch_size / step:.1f} samples/s")


if __name__ == "__main__":
    sys.exit(main())
