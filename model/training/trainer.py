"""Training on the catalog: ``train(config)`` and the ``sammed3d train`` command.

One optimiser step = ``grad_accum_steps`` micro-batches per process; each micro-batch goes through
:class:`model.training.click_loop.ClickLoop` (wrapped in DDP when several processes run). Launch on several
processes with torchrun, e.g. ``torchrun --nproc_per_node 4 $(which sammed3d) train --catalog C --out O``.
Rank 0 writes ``out/config.yaml``, ``out/metrics.jsonl`` (one JSON line per ``log_every`` steps) and
``out/checkpoints/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import ValidationError
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from catalog.reader import Catalog
from catalog.store.location import CatalogLocation
from model.input_convention import PUBLISHED_MODALITY, ras_order, ras_tensor
from model.network.checkpoint import checkpoint_layout
from model.network.loading import load_network
from model.network.registry import build_model
from model.network.sam3d import Sam3D
from model.targets import select_masks
from model.training.batching import (
    batches_per_epoch,
    click_seeds,
    epoch_batches,
    new_click_only_iterations,
    refine_iteration,
)
from model.training.click_loop import ClickLoop
from model.training.config import DEFAULT_RECIPE, RECIPES, RESUMABLE_CHANGES, SETTINGS_BEFORE_RECIPES, TrainConfig
from model.training.distributed import (
    ProcessContext,
    end_process,
    mean_over_processes,
    rank0_decides,
    start_process,
)
from model.training.patch_dataset import IMAGE_DTYPES, PatchDataset, unpack_labels
from model.training.patch_loader import PatchBatchLoader
from model.training.schedule import (
    cyclic_step_scheduler,
    warmup_constant_decay_scheduler,
    warmup_constant_scheduler,
)
from model.training.state import list_checkpoints, load_training_state, restore_rng_states, save_training_state


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with two groups: the image encoder at ``lr``, prompt encoder + decoder at ``lr * other_lr_scale``."""
    encoder = [p for p in model.image_encoder.parameters() if p.requires_grad]
    others = [p for n, p in model.named_parameters() if not n.startswith("image_encoder.") and p.requires_grad]
    return torch.optim.AdamW(
        [
            {"params": encoder, "lr": config.lr},
            {"params": others, "lr": config.lr * config.other_lr_scale},
        ],
        weight_decay=config.weight_decay,
    )


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """The configuration's learning-rate schedule (model.training.schedule)."""
    if config.schedule == "cyclic_step":
        return cyclic_step_scheduler(optimizer, config.resolved_cycle_steps)
    if config.schedule == "warmup_constant_decay":
        return warmup_constant_decay_scheduler(optimizer, config.warmup_steps, config.max_steps, config.decay_fraction)
    return warmup_constant_scheduler(optimizer, config.warmup_steps)


def autocast_for(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA for precision "auto" (and wherever "bf16" is asked), else nothing."""
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _check_resumable(saved: dict[str, Any], config: TrainConfig) -> None:
    current = config.model_dump(mode="json")
    # A setting added since the checkpoint was written had its default then; the recipe settings, the
    # paper recipe's values (the defaults before recipes existed).
    defaults = {name: field.default for name, field in TrainConfig.model_fields.items() if not field.is_required()}
    defaults.update(SETTINGS_BEFORE_RECIPES)
    changed = sorted(
        k for k in current if k not in RESUMABLE_CHANGES and saved.get(k, defaults.get(k)) != current[k]
    )
    if changed:
        raise ValueError(f"cannot resume: the configuration differs from the checkpoint's in {changed}")


def resume_refusal(config: TrainConfig) -> str | None:
    """Why ``config`` cannot continue the run in its ``out`` folder, or None if it can (or there is nothing
    to continue: no checkpoint yet)."""
    existing = list_checkpoints(Path(config.out))
    if not existing:
        return None
    try:
        _check_resumable(load_training_state(existing[-1])["extra"]["config"], config)
    except ValueError as error:
        return str(error)
    return None


def configured_model(config: TrainConfig) -> Sam3D:
    """A freshly initialised network of the configuration's architecture (model, click map, fine path, fine
    clicks)."""
    return build_model(
        config.model, click_map=config.click_map, fine_path=config.fine_path, fine_clicks=config.fine_clicks
    )


def _initial_model(config: TrainConfig, state: dict[str, Any] | None, is_main: bool) -> Sam3D:
    """The network to train: the resumed checkpoint's architecture, else ``config.init``'s, else the config's."""
    if state is not None:
        return build_model(*checkpoint_layout(state))
    if config.init is None:
        return configured_model(config)
    model = load_network(config.init)
    architecture = ("model", "click_map", "fine_path", "fine_clicks")
    mine = {name: getattr(model, "name" if name == "model" else name) for name in architecture}
    asked = {name: getattr(config, name) for name in architecture}
    if is_main and mine != asked:
        print(
            f"--init {config.init}: training its architecture ({model.name}, click_map={model.click_map}, "
            f"convention {model.convention}, fine_path={model.fine_path}, fine_clicks={model.fine_clicks}); "
            "the configuration's " + " / ".join(f"{k}={v}" for k, v in asked.items()) + " do not apply"
        )
    return model


def ras_orders(catalog_root: str, masks) -> dict[str, tuple]:
    """{mask_id: (order, flips)} turning each mask's stored (z, y, x) patch into (R, A, S) order."""
    catalog = Catalog(catalog_root)
    by_image = {
        image_id: ras_order(catalog.shard(image_id).attrs["direction"]) for image_id in masks.image_id.unique()
    }
    return {mask_id: by_image[image_id] for mask_id, image_id in zip(masks.mask_id, masks.image_id)}


def _to_ras(image: torch.Tensor, target: torch.Tensor, orders: list[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, S, S, S) image and target, each sample turned to (R, A, S) order."""
    images = [ras_tensor(image[i], *orders[i]) for i in range(image.shape[0])]
    targets = [ras_tensor(target[i], *orders[i]) for i in range(image.shape[0])]
    return torch.stack(images).contiguous(), torch.stack(targets).contiguous()


def _run_batches(consumed: int, n_batches: int, n_samples: int, config: TrainConfig, context: ProcessContext):
    """This process's micro-batches from micro-batch `consumed` on, epoch after epoch, as lists of
    (epoch, sample index) pairs for `PatchDataset`."""
    epoch, offset = divmod(consumed, n_batches)
    while True:
        batches = epoch_batches(n_samples, config.batch_size, context.world_size, context.rank, config.seed, epoch)
        for indices in batches[offset:]:
            yield [(epoch, index) for index in indices]
        epoch, offset = epoch + 1, 0


def train(config: TrainConfig) -> dict[str, Any]:
    """Train (or, with ``config.resume``, continue) a model on the catalog's selected masks.

    Returns:
        dict: rank (of this process), step (optimiser steps done), loss (mean loss of the last step, over
        processes), checkpoint (path of the last checkpoint written or resumed from; None on ranks > 0),
        samples_per_s (this run, all processes).
    """
    context = start_process(config.device)
    try:
        return _train(config, context)
    finally:
        end_process(context)


def _train(config: TrainConfig, context: ProcessContext) -> dict[str, Any]:
    device, out = context.device, Path(config.out)
    torch.manual_seed(config.seed)
    existing = list_checkpoints(out)
    state = load_training_state(existing[-1]) if config.resume and existing else None
    model = _initial_model(config, state, context.is_main)
    if config.patch_size != model.image_size:
        raise ValueError(f"patch_size {config.patch_size} does not match {config.model}'s input {model.image_size}")
    masks = select_masks(
        config.catalog,
        categories=config.categories,
        groups=config.groups,
        modalities=config.modalities,
        datasets=config.datasets,
        splits=config.splits,
        exclude_cases=config.exclude_cases,
        min_stored_voxels=config.min_mask_voxels,
    )
    n_batches = batches_per_epoch(len(masks), config.batch_size, context.world_size)
    ras = None
    if model.convention == "published":
        # Published weights see RAS (x, y, z) crops z-scored over voxels > 0 without CT clipping: any
        # modality but "CT" is normalised that way, and each sample is turned to RAS on the device.
        ras = ras_orders(config.catalog, masks)
    dataset = PatchDataset(
        config.catalog,
        masks if ras is None else masks.assign(modality=PUBLISHED_MODALITY),
        patch_size=config.patch_size,
        jitter=config.jitter,
        flips=config.flips,
        min_voxels=config.min_mask_voxels,
        seed=config.seed,
        cache_mb=config.patch_cache_mb,
        image_dtype=IMAGE_DTYPES[config.patch_image_dtype],
        pack_labels=True,
    )
    loop = ClickLoop(model, config.iterations_per_batch, config.loss_resolution).to(device)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)

    step, checkpoint, elapsed_before = 0, None, 0.0
    if state is not None:
        checkpoint = existing[-1] if context.is_main else None
        _check_resumable(state["extra"]["config"], config)
        model.load_state_dict(state["model_state_dict"], strict=True)
        optimizer.load_state_dict(state["extra"]["optimizer"])
        scheduler.load_state_dict(state["extra"]["scheduler"])
        restore_rng_states(state["extra"]["rng"])
        step = int(state["extra"]["step"])
        elapsed_before = float(state["extra"].get("elapsed_s", 0.0))
    elif existing:
        raise ValueError(f"{out} already holds checkpoints; resume, or choose another output folder")
    if context.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(
            yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
        )

    network = DistributedDataParallel(loop, find_unused_parameters=True) if context.distributed else loop
    samples_per_step = config.batch_size * config.grad_accum_steps * context.world_size
    progress = tqdm(total=config.max_steps, initial=step, disable=not (config.progress and context.is_main))
    first_step, started, last_loss, step_losses = step, time.perf_counter(), float("nan"), []
    last_checkpoint_time = started
    consumed = step * config.grad_accum_steps
    # One loader for the whole run: its workers (and their chunk caches) live across epochs, and each
    # sample carries its epoch, so the order is the same as epoch by epoch. The batches arrive in shared
    # memory slots that are refilled two batches later: they are converted or copied to the device at once.
    loader = PatchBatchLoader(
        dataset,
        _run_batches(consumed, n_batches, len(dataset), config, context),
        batch_size=config.batch_size,
        num_workers=config.num_workers,
    )
    for batch in loader:
        epoch, indices = int(batch["epoch"][0]), [int(i) for i in batch["index"]]
        micro = consumed % config.grad_accum_steps
        last_micro = micro == config.grad_accum_steps - 1
        sync = contextlib.nullcontext() if last_micro or not context.distributed else network.no_sync()
        image = batch["image"].to(device, non_blocking=True).float()
        target = unpack_labels(batch["label"].to(device, non_blocking=True)).float()
        if ras is not None:
            image, target = _to_ras(image, target, [ras[m] for m in batch["mask_id"]])
        with sync:
            with autocast_for(config, device):
                loss = network(
                    image,
                    target,
                    click_seeds(config.seed, epoch, indices),
                    refine_iteration(config.seed, consumed, config.iterations_per_batch),
                    new_click_only_iterations(
                        config.seed, consumed, config.iterations_per_batch, config.new_click_only_fraction
                    ),
                )
            (loss / config.grad_accum_steps).backward()
        step_losses.append(float(loss.detach()))
        consumed += 1
        if not last_micro:
            continue
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step += 1
        last_loss = mean_over_processes(sum(step_losses) / len(step_losses), context)
        step_losses = []
        now = time.perf_counter()
        rate = (step - first_step) * samples_per_step / (now - started)
        elapsed = elapsed_before + now - started
        # Every process decides from rank 0's clock, so all stop (and checkpoint) at the same step.
        out_of_time = config.max_minutes is not None and rank0_decides(elapsed >= 60 * config.max_minutes, context)
        checkpoint_due = config.checkpoint_minutes is not None and rank0_decides(
            now - last_checkpoint_time >= 60 * config.checkpoint_minutes, context
        )
        last_step = step >= config.max_steps or out_of_time
        progress.update(1)
        progress.set_postfix(loss=f"{last_loss:.4f}", samples_per_s=f"{rate:.2f}")
        if context.is_main and (step % config.log_every == 0 or last_step):
            _log_metrics(out, step, epoch, last_loss, scheduler.get_last_lr(), rate, elapsed)
        if step % config.checkpoint_every == 0 or last_step or checkpoint_due:
            last_checkpoint_time = now
            if context.is_main:
                checkpoint = save_training_state(
                    out, model, optimizer, scheduler, step, config.model_dump(mode="json"), config.keep_checkpoints,
                    elapsed_s=elapsed,
                )
        if last_step:
            break
    progress.close()
    elapsed = time.perf_counter() - started
    return {
        "rank": context.rank,
        "step": step,
        "loss": last_loss,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "samples_per_s": (step - first_step) * samples_per_step / elapsed if step > first_step else 0.0,
    }


def _log_metrics(
    out: Path, step: int, epoch: int, loss: float, lrs: list[float], rate: float, elapsed: float
) -> None:
    line = {
        "step": step, "epoch": epoch, "loss": loss, "lr_encoder": lrs[0], "lr_other": lrs[1], "samples_per_s": rate,
        "elapsed_s": round(elapsed, 2),
    }
    with (out / "metrics.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


def add_arguments(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``train`` to a ``sammed3d`` sub-command parser set; returns the new parser."""
    parser = subparsers.add_parser("train", help="train the network on a catalog (torchrun for several processes)")
    parser.add_argument("--catalog", help="catalog folder or s3:// URL (overrides the config file)")
    parser.add_argument("--out", help="run folder for checkpoints and metrics (overrides the config file)")
    parser.add_argument("--config", help="YAML file of TrainConfig fields")
    parser.add_argument("--max-steps", type=int, help="optimiser steps to train to")
    parser.add_argument("--model", help="vit_tiny (default) or vit_b_ori")
    parser.add_argument(
        "--recipe", choices=sorted(RECIPES),
        help=f"named training recipe (default {DEFAULT_RECIPE}; 'paper' is SAM-Med3D's, see docs/training.md)",
    )
    parser.add_argument("--max-minutes", type=float, help="also stop after this many minutes of training")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument(
        "--init", help="start from these weights: our checkpoint or a published SAM-Med3D .pth (its architecture wins)"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from the config file (if any) and the command line; one-sentence errors."""
    overrides = {
        key: value
        for key, value in (
            ("catalog", args.catalog),
            ("out", args.out),
            ("max_steps", args.max_steps),
            ("model", args.model),
            ("recipe", args.recipe),
            ("max_minutes", args.max_minutes),
            ("resume", True if args.resume else None),
            ("init", args.init),
        )
        if value is not None
    }
    try:
        if args.config:
            return TrainConfig.from_file(args.config, **overrides)
        return TrainConfig(**overrides)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in error.errors())
        raise ValueError(f"invalid training configuration: {problems}") from None


def run(args: argparse.Namespace) -> int:
    """Entry point of ``sammed3d train``: raises ValueError / FileNotFoundError with one sentence on bad input."""
    config = config_from_args(args)
    location = CatalogLocation.parse(config.catalog)
    if location.is_local and not location.local_path.exists():
        raise FileNotFoundError(f"catalog {config.catalog} does not exist")
    location.check_access(for_writing=False)
    result = train(config)
    if result["rank"] == 0:
        print(
            f"trained to step {result['step']}: loss {result['loss']:.4f}, "
            f"{result['samples_per_s']:.2f} samples/s; checkpoint {result['checkpoint']}"
        )
    return 0
