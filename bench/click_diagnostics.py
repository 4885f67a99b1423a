"""Why a model does (not) follow its clicks: measurements of the training recipes on identical objects.

Trains vit_tiny with a named recipe (model.training.config.RECIPES, optionally with settings overridden) on
in-memory 128³ crops of the SYNTHETIC identical-objects phantom (pipeline.phantoms.identical_objects; the
target is one of four identical spheres, placed at random in the crop as the trainer's jitter does), with the
trainer's own click loop, optimiser and schedule, and records what docs/training.md discusses:

* follow: one click at a random voxel of the target vs the same click moved into another sphere, on 12
  held-out crops: Dice of the first prediction vs the target (``dice1``) and vs all spheres (``dice_all``),
  Dice of the moved prediction vs the other sphere (``follow``), and the mean relative change of the
  low-resolution logits between the two (``logit_change``); then corrective clicks as the paper's protocol
  gives them (a random voxel of the error region, only the new click plus the previous logits): Dice after
  3 and 5 clicks (``dice3``, ``dice5``); at initialisation and every ``--eval-every`` steps;
* gradients: norms of the gradient reaching the point-type embeddings, the no-mask embedding, the click
  map, the image encoder's position embedding, the whole decoder and the whole encoder (mean over steps);
* loss per click iteration (mean over the last 25 steps) and the learning rates in effect.

    .venv/bin/python bench/click_diagnostics.py --recipe paper --steps 300
    .venv/bin/python bench/click_diagnostics.py --recipe promptable --set click_map=false --steps 300
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.intensity import normalize_intensity  # noqa: E402
from model.training.batching import new_click_only_iterations, refine_iteration  # noqa: E402
from model.training.click_loop import ClickLoop  # noqa: E402
from model.training.config import TrainConfig  # noqa: E402
from model.training.trainer import configured_model, make_optimizer, make_scheduler  # noqa: E402
from pipeline.phantoms.identical_objects import make_identical_objects_case  # noqa: E402

PATCH = 128


def crop(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """A jittered 128³ crop of a fresh case holding the whole target: (normalised image, labels, target value)."""
    image, labels = make_identical_objects_case([int(rng.integers(1 << 30)), 7], 4)
    value = int(rng.integers(1, labels.max() + 1))
    voxels = np.argwhere(labels == value)
    low, high = voxels.min(axis=0), voxels.max(axis=0) + 1
    start = [int(rng.integers(max(0, h - PATCH), min(lo, n - PATCH) + 1)) for lo, h, n in zip(low, high, labels.shape)]
    window = tuple(slice(s, s + PATCH) for s in start)
    return normalize_intensity(image[window], "CT"), labels[window], value


def _dice(a: torch.Tensor, b: np.ndarray) -> float:
    a, b = a.numpy(), b
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


@torch.no_grad()
def follow(model, n: int = 12, seed: int = 1234) -> dict[str, float]:
    """The click-following scores of the module docstring on n held-out crops."""
    model.eval()
    rng = np.random.default_rng(seed)
    scores: dict[str, list[float]] = {
        "dice1": [], "dice3": [], "dice5": [], "dice_all": [], "follow": [], "logit_change": []
    }
    for _ in range(n):
        image, labels, value = crop(rng)
        embedding = model.encode(torch.from_numpy(image)[None, None])
        others = [k for k in range(1, labels.max() + 1) if k != value and (labels == k).sum() > 200]
        if not others:
            continue
        predictions = []
        for k in (value, others[0]):
            voxels = np.argwhere(labels == k)
            point = torch.from_numpy(voxels[rng.integers(len(voxels))].astype(np.float32))[None, None]
            lowres, _ = model.decode(embedding, point, torch.ones(1, 1, dtype=torch.long))
            predictions.append((lowres, model.upsample(lowres)[0, 0] > 0))
        (first, mask), (moved, moved_mask) = predictions
        scores["dice1"].append(_dice(mask, labels == value))
        scores["dice_all"].append(_dice(mask, labels > 0))
        scores["follow"].append(_dice(moved_mask, labels == others[0]))
        scores["logit_change"].append(float((moved - first).abs().mean() / first.abs().mean().clamp(min=1e-6)))
        prompt, prediction = first, mask.numpy()
        for click in range(2, 6):
            errors = np.argwhere(prediction ^ (labels == value))
            voxel = errors[rng.integers(len(errors))] if len(errors) else np.argwhere(labels == value)[0]
            label = torch.tensor([[int(labels[tuple(voxel)] == value)]])
            point = torch.from_numpy(voxel.astype(np.float32))[None, None]
            prompt, _ = model.decode(embedding, point, label, mask_prompt=prompt)
            prediction = (model.upsample(prompt)[0, 0] > 0).numpy()
            if click in (3, 5):
                scores[f"dice{click}"].append(_dice(torch.from_numpy(prediction), labels == value))
    model.train()
    return {k: round(float(np.mean(v)), 3) for k, v in scores.items()}


def gradient_norms(model) -> dict[str, float]:
    prompt = model.prompt_encoder
    parts = {
        "positive_point": prompt.positive_point_embed,
        "negative_point": prompt.negative_point_embed,
        "no_mask": prompt.no_mask_embed,
        "encoder_pos_embed": model.image_encoder.pos_embed,
    }
    if prompt.click_map is not None:
        parts["click_map"] = prompt.click_map.positive_embed
    norms = {name: float(p.grad.norm()) if p.grad is not None else 0.0 for name, p in parts.items()}
    for name, module in (("decoder", model.mask_decoder), ("encoder", model.image_encoder)):
        norms[name] = float(sum(p.grad.norm() ** 2 for p in module.parameters() if p.grad is not None) ** 0.5)
    return norms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="promptable")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="TrainConfig override")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    config = TrainConfig(catalog="-", out="-", recipe=args.recipe, batch_size=args.batch_size, seed=args.seed,
                         max_steps=args.steps, **overrides)
    torch.manual_seed(config.seed)
    model = configured_model(config)
    loop = ClickLoop(model, config.iterations_per_batch, config.loss_resolution)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    rng = np.random.default_rng(config.seed)
    tag = args.recipe + "".join(f" {item}" for item in args.set)

    def report(**fields) -> None:
        print(json.dumps({"recipe": tag, **fields}), flush=True)

    report(step=0, **follow(model))
    started, losses, per_iteration, norms = time.perf_counter(), [], [], []
    for step in range(1, args.steps + 1):
        batch = [crop(rng) for _ in range(config.batch_size)]
        image = torch.from_numpy(np.stack([b[0] for b in batch]))[:, None]
        target = torch.from_numpy(np.stack([b[1] == b[2] for b in batch]))[:, None].float()
        seeds = torch.tensor([int(rng.integers(1 << 31)) for _ in batch])
        loss = loop(image, target, seeds, refine_iteration(config.seed, step, config.iterations_per_batch),
                    new_click_only_iterations(config.seed, step, config.iterations_per_batch,
                                              config.new_click_only_fraction))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norms.append(gradient_norms(model))
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        per_iteration.append([float(x) for x in loop.iteration_losses])
        if step % args.eval_every == 0 or step == args.steps:
            recent = norms[-args.eval_every:]
            report(
                step=step,
                seconds_per_step=round((time.perf_counter() - started) / step, 2),
                loss=round(float(np.mean(losses[-25:])), 3),
                loss_per_iteration=[round(float(x), 3) for x in np.mean(per_iteration[-25:], axis=0)],
                lr=[float(x) for x in scheduler.get_last_lr()],
                gradient_norms={k: float(f"{np.mean([n[k] for n in recent]):.3g}") for k in recent[0]},
                **follow(model),
            )


if __name__ == "__main__":
    main()
