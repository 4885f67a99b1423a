"""How well a checkpoint fits the masks it TRAINED on: Dice after 1..N clicks on training crops.

A diagnostic for "is the model under-trained or over-fitted?", not an evaluation: it never touches held-out
cases. It draws a seeded set of catalog masks (the same selection filters as ``sammed3d train``: give the run's
``--exclude-case``s so the held-out cases stay out), cuts each one's 128³ patch as the trainer does (jittered,
no flips), and clicks as the paper's protocol does (first a random target voxel, then a random voxel of the
error region; the network gets only the newest click plus its previous low-resolution logits, or with
``--clicks-fed all`` every click so far). With
``--baseline`` the region-growing baseline gets the same clicks on the same patches. Prints the mean Dice per
click count. ``--oracle-prompt`` also measures how much of its mask prompt the network keeps: one decode given
the TARGET itself as the mask prompt (averaged to the 32³ logit grid, as logits of +-8), with the first click
and with no click, against the Dice of that prompt upsampled as the network's own logits are (what copying
it would score).

    .venv/bin/python bench/training_fit.py --catalog out/raw-catalog --checkpoint run/checkpoints/step_0005103.pt \\
        --exclude-case Dataset003_TotalSegMR/ts_mr --masks 40 --clicks 5 --baseline
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.clicks import paper_click  # noqa: E402
from model.evaluation.baseline import RegionGrowingBaseline  # noqa: E402
from model.evaluation.metrics import dice  # noqa: E402
from model.evaluation.protocol import CLICKS_FED, NetworkMethod  # noqa: E402
from model.network.checkpoint import load_model_weights  # noqa: E402
from model.predictor import Predictor  # noqa: E402
from model.targets import select_masks  # noqa: E402
from model.training.patch_dataset import PatchDataset  # noqa: E402


def click_curve(
    method, patch: np.ndarray, target: np.ndarray, clicks: int, seed: int
) -> tuple[list[float], list[int]]:
    """Dice after each paper-protocol click of `method` (the evaluation's ``start`` / ``step`` interface:
    :class:`NetworkMethod` or :class:`RegionGrowingBaseline`) on one patch, and each click's label; the same
    seed gives the same first click to every method."""
    method.start(patch)
    rng = np.random.default_rng(seed)
    prediction, points, labels, scores = None, [], [], []
    for _ in range(clicks):
        point, label = paper_click(prediction, target, rng)
        points.append(point)
        labels.append(label)
        prediction = method.step(np.asarray(points, dtype=np.float32), np.asarray(labels, dtype=np.int64)) >= 0.5
        scores.append(dice(prediction, target))
    return scores, labels


def oracle_prompt_scores(predictor: Predictor, patch: np.ndarray, target: np.ndarray, seed: int) -> list[float]:
    """[with the first click, with no click, the prompt itself]: Dice of one decode whose mask prompt is the target
    averaged to the low-resolution grid (as logits of +-8)."""
    predictor.set_image(torch.from_numpy(patch))
    truth = torch.from_numpy(target.astype(np.float32))[None, None]
    edge = predictor.model.image_size // 4  # the low-resolution logit grid, as the trainer's lowres target
    prompt = (F.interpolate(truth, size=(edge,) * 3, mode="area") * 2 - 1) * 8
    point, label = paper_click(None, target, np.random.default_rng(seed))
    scores = []
    with torch.no_grad():
        for points, labels in ((np.asarray([point], np.float32), np.asarray([label])), (None, None)):
            logits, _, _ = predictor.predict(points, labels, mask_input=prompt)
            scores.append(dice(logits[0, 0].numpy() > 0, target))
        scores.append(dice(predictor.model.upsample(prompt)[0, 0].numpy() > 0, target))
    return scores


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--exclude-case", action="append", default=[], help="dataset/case_id held out from training")
    parser.add_argument("--dataset", action="append", default=[], help="only masks of this dataset (repeatable)")
    parser.add_argument("--masks", type=int, default=40)
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--clicks-fed", choices=CLICKS_FED, default="new",
        help="new: only the newest click (the paper's protocol); all: every click so far, as the baseline gets them",
    )
    parser.add_argument("--baseline", action="store_true", help="the region-growing baseline on the same clicks")
    parser.add_argument("--oracle-prompt", action="store_true", help="one decode given the target as mask prompt")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    masks = select_masks(args.catalog, splits=None, datasets=args.dataset or None, exclude_cases=args.exclude_case or None)
    chosen = np.random.default_rng(args.seed).choice(len(masks), min(args.masks, len(masks)), replace=False)
    patches = PatchDataset(args.catalog, masks, jitter=True, flips=False, seed=args.seed + 123)
    predictor = Predictor(load_model_weights(args.checkpoint).eval())
    network = NetworkMethod(predictor, clicks_fed=args.clicks_fed)
    curves = {"network": [], "baseline": []}
    gains = {name: {0: [], 1: []} for name in curves}  # Dice change per later click, by the click's label
    oracle = []
    for index in chosen:
        sample = patches[int(index)]
        patch, target = sample["image"][0].float().numpy(), sample["label"][0].numpy().astype(bool)
        seed = args.seed + int(index)
        methods = {"network": network, "baseline": RegionGrowingBaseline()} if args.baseline else {"network": network}
        for name, method in methods.items():
            scores, labels = click_curve(method, patch, target, args.clicks, seed)
            curves[name].append(scores)
            for before, after, label in zip(scores, scores[1:], labels[1:]):
                gains[name][label].append(after - before)
        if args.oracle_prompt:
            oracle.append(oracle_prompt_scores(predictor, patch, target, seed))
    print(f"{len(chosen)} training masks of {len(masks)}, {Path(args.checkpoint).name}, clicks fed: {args.clicks_fed}")
    print("clicks   " + " ".join(f"{k + 1:6d}" for k in range(args.clicks)))
    for name, rows in curves.items():
        if rows:
            print(f"{name:9s}" + " ".join(f"{v:6.3f}" for v in np.mean(rows, axis=0)))
    for name, by_label in gains.items():
        parts = [
            f"{kind} {len(by_label[label])} clicks {np.mean(by_label[label]):+.3f}"
            for label, kind in ((0, "negative"), (1, "positive")) if by_label[label]
        ]
        if parts:
            print(f"{name}: Dice change per later click: " + ", ".join(parts))
    if oracle:
        with_click, alone, itself = np.mean(oracle, axis=0)
        print(f"target as mask prompt: {with_click:.3f} with the first click, {alone:.3f} with no click "
              f"(the prompt itself: {itself:.3f})")


if __name__ == "__main__":
    main()
