"""`sammed3d evaluate`: a checkpoint and the region-growing baseline on catalog masks.

The click protocols and their scores are in :mod:`model.evaluation.protocol`; the tables, plots and
Markdown report in :mod:`model.evaluation.report`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from catalog.reader import Catalog
from model.evaluation.baseline import RegionGrowingBaseline
from model.evaluation.inference import load_predictor
from model.evaluation.protocol import (
    BASELINE,
    CHALLENGE,
    NETWORK,
    PAPER,
    EvaluationSettings,
    NetworkMethod,
    evaluate_masks,
    per_mask_summary,
)
from model.evaluation.report import write_report
from model.targets import select_masks

ALL_SPLITS = "all"


def select_evaluation_masks(catalog: Catalog, splits: Sequence[str], max_masks: int | None, seed: int) -> pd.DataFrame:
    """Kept masks of the given splits ("all" for every split) with at least one stored voxel.

    With `max_masks`, a seeded random subset of that size, sorted by mask id.
    """
    chosen = None if ALL_SPLITS in splits else list(splits)
    masks = select_masks(catalog.root, splits=chosen, status="kept", min_stored_voxels=1)
    if max_masks is not None and len(masks) > max_masks:
        picked = np.random.default_rng(seed).choice(len(masks), size=max_masks, replace=False)
        masks = masks.iloc[np.sort(picked)].reset_index(drop=True)
    trained_on = catalog.masks()
    trained_on = set(trained_on[(trained_on.split == "train") & (trained_on.status == "kept")].category)
    return masks.assign(seen=masks.category.isin(trained_on))


def evaluate(
    catalog_root: str | Path,
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    splits: Sequence[str] = ("test",),
    max_masks: int | None = None,
    seed: int = 0,
    settings: EvaluationSettings = EvaluationSettings(),
    device: str = "auto",
) -> Path:
    """Evaluate a checkpoint and the baseline on catalog masks; write tables, plots and a report.

    Args:
        catalog_root (str | Path): curated catalog folder.
        checkpoint (str | Path): a checkpoint written by ``model.network.checkpoint.save_checkpoint``.
        out_dir (str | Path): output folder (created).
        splits (sequence of str): catalog splits to evaluate; "all" for every split.
        max_masks (int | None): evaluate a seeded random subset of at most this many masks.
        seed (int): seed of the paper protocol's random clicks and of the subset.
        settings (EvaluationSettings): click budgets, NSD tolerance, number of overlay figures.
        device (str): "auto" (CUDA when available), "cpu", "cuda", ...

    Returns:
        Path of ``report.md``.
    """
    started = time.perf_counter()
    catalog = Catalog(catalog_root)
    masks = select_evaluation_masks(catalog, splits, max_masks, seed)
    if masks.empty:
        present = ", ".join(sorted(catalog.masks().split.dropna().unique())) or "none"
        raise ValueError(f"no kept mask in split(s) {', '.join(splits)} of {catalog_root} (splits present: {present})")
    predictor = load_predictor(checkpoint, device)
    baseline = RegionGrowingBaseline()
    methods = {
        PAPER: {NETWORK: NetworkMethod(predictor, "new"), BASELINE: baseline},
        CHALLENGE: {NETWORK: NetworkMethod(predictor, "all"), BASELINE: baseline},
    }
    steps, overlays, skipped = evaluate_masks(catalog, masks, methods, settings, seed)
    if steps.empty:
        raise ValueError("none of the selected masks could be evaluated: " + skipped[0]["reason"])
    steps = steps.merge(masks[["mask_id", "seen"]], on="mask_id")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps.to_parquet(out / "per_step.parquet", index=False)
    summary = per_mask_summary(steps, settings)
    summary.to_parquet(out / "per_mask.parquet", index=False)
    return write_report(
        out,
        steps=steps,
        summary=summary,
        overlays=overlays,
        skipped=skipped,
        settings=settings,
        context={
            "catalog": str(Path(catalog_root).resolve()),
            "checkpoint": str(Path(checkpoint).resolve()),
            "splits": ", ".join(splits),
            "seed": seed,
            "device": str(predictor.device),
            "seconds": time.perf_counter() - started,
        },
    )


def add_arguments(subparsers) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to a ``sammed3d`` subparsers object."""
    parser = subparsers.add_parser(
        "evaluate", help="evaluate a checkpoint and the region-growing baseline on catalog masks"
    )
    parser.add_argument("--catalog", required=True, help="curated catalog folder")
    parser.add_argument("--checkpoint", required=True, help="model checkpoint (sammed3d format)")
    parser.add_argument("--out", default="evaluation", help="output folder (default ./evaluation)")
    parser.add_argument(
        "--split", action="append", dest="splits", metavar="SPLIT",
        help="split to evaluate, repeatable; 'all' for every split (default: test)",
    )
    parser.add_argument("--max-masks", type=int, help="evaluate a seeded random subset of at most N masks")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random clicks and of the subset")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the ``evaluate`` subcommand; bad input raises FileNotFoundError/ValueError with one sentence."""
    if args.max_masks is not None and args.max_masks < 1:
        raise ValueError("--max-masks must be at least 1")
    report = evaluate(
        args.catalog,
        args.checkpoint,
        args.out,
        splits=tuple(args.splits or ("test",)),
        max_masks=args.max_masks,
        seed=args.seed,
        device=args.device,
    )
    print(f"evaluation report: {report.resolve()}")
    return 0
