"""`sammed3d evaluate`: a checkpoint and the region-growing baseline on catalog masks.

The click protocols and their scores are in :mod:`model.evaluation.protocol`; the tables, plots and
Markdown report in :mod:`model.evaluation.report`.
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from catalog.reader import Catalog
from model.evaluation.baseline import RegionGrowingBaseline
from model.evaluation.inference import load_predictor
from model.evaluation.protocol import (
    BASELINE,
    CHALLENGE,
    CLICKS_FED,
    CROP_PLACEMENTS,
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


def select_evaluation_masks(
    catalog: Catalog,
    splits: Sequence[str],
    max_masks: int | None,
    seed: int,
    cases: Sequence[str] | None = None,
    training: dict | None = None,
) -> pd.DataFrame:
    """Kept masks of the given splits ("all" for every split), or of the given cases ("dataset/case_id", any
    split), with at least one stored voxel; with `max_masks`, a seeded random subset of that size, sorted by
    mask id.

    Column ``seen``: the category is among those the checkpoint was trained on, from its training
    configuration (`training`, the run's TrainConfig values) when the checkpoint holds one, else the
    categories of the catalog's train split.
    """
    chosen = None if ALL_SPLITS in splits or cases else list(splits)
    masks = select_masks(catalog.root, splits=chosen, cases=cases, status="kept", min_stored_voxels=1)
    if max_masks is not None and len(masks) > max_masks:
        picked = np.random.default_rng(seed).choice(len(masks), size=max_masks, replace=False)
        masks = masks.iloc[np.sort(picked)].reset_index(drop=True)
    if training is not None:
        filters = ("categories", "groups", "modalities", "datasets", "splits", "exclude_cases")
        trained = select_masks(
            catalog.root, **{k: training.get(k) for k in filters}, min_stored_voxels=training["min_mask_voxels"]
        )
        trained_on = set(trained.category)
    else:
        trained_on = catalog.masks()
        trained_on = set(trained_on[(trained_on.split == "train") & (trained_on.status == "kept")].category)
    return masks.assign(seen=masks.category.isin(trained_on))


def training_config(checkpoint: str | Path) -> dict | None:
    """The TrainConfig values a checkpoint of ours was trained with, or None (weights only, other formats).
    Memory-mapped: the weights are not read."""
    try:
        payload = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, ValueError, OSError, EOFError, pickle.UnpicklingError):
        return None  # the evaluation's own loading of the checkpoint says what is wrong with it
    extra = payload.get("extra") if isinstance(payload, dict) else None
    config = extra.get("config") if isinstance(extra, dict) else None
    return config if isinstance(config, dict) else None


def evaluate(
    catalog_root: str | Path,
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    splits: Sequence[str] = ("test",),
    cases: Sequence[str] | None = None,
    max_masks: int | None = None,
    seed: int = 0,
    settings: EvaluationSettings = EvaluationSettings(),
    device: str = "auto",
) -> Path:
    """Evaluate a checkpoint and the baseline on catalog masks; write tables, plots and a report.

    Args:
        catalog_root (str | Path): curated catalog folder or s3:// URL.
        checkpoint (str | Path): a checkpoint written by ``model.network.checkpoint.save_checkpoint``.
        out_dir (str | Path): output folder (created).
        splits (sequence of str): catalog splits to evaluate; "all" for every split.
        cases (sequence of str | None): evaluate these cases ("dataset/case_id", whatever their split) instead.
        max_masks (int | None): evaluate a seeded random subset of at most this many masks.
        seed (int): seed of the paper protocol's random clicks and of the subset.
        settings (EvaluationSettings): click budgets, NSD tolerance, number of overlay figures.
        device (str): "auto" (CUDA when available), "cpu", "cuda", ...

    Returns:
        Path of ``report.md``.
    """
    started = time.perf_counter()
    catalog = Catalog(catalog_root)
    masks = select_evaluation_masks(catalog, splits, max_masks, seed, cases, training_config(checkpoint))
    if masks.empty:
        present = ", ".join(sorted(catalog.masks().split.dropna().unique())) or "none"
        raise ValueError(f"no kept mask in split(s) {', '.join(splits)} of {catalog_root} (splits present: {present})")
    predictor = load_predictor(checkpoint, device)
    if predictor.model.convention != settings.input_convention:
        # A published network sees crops prepared the published way (model.input_convention).
        settings = dataclasses.replace(settings, input_convention=predictor.model.convention)
    baseline = RegionGrowingBaseline()
    methods = {
        PAPER: {NETWORK: NetworkMethod(predictor, settings.paper_clicks_fed), BASELINE: baseline},
        CHALLENGE: {NETWORK: NetworkMethod(predictor, "all"), BASELINE: baseline},
    }
    results = evaluate_masks(catalog, masks, methods, settings, seed)
    if results.steps.empty:
        raise ValueError("none of the selected masks could be evaluated: " + results.skipped[0]["reason"])
    steps = results.steps.merge(masks[["mask_id", "seen"]], on="mask_id")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps.to_parquet(out / "per_step.parquet", index=False)
    results.sensitivity.to_parquet(out / "sensitivity.parquet", index=False)
    summary = per_mask_summary(steps, settings)
    summary.to_parquet(out / "per_mask.parquet", index=False)
    return write_report(
        out,
        steps=steps,
        summary=summary,
        sensitivity=results.sensitivity,
        overlays=results.overlays,
        skipped=results.skipped,
        settings=settings,
        context={
            "catalog": catalog.location.absolute,
            "checkpoint": str(Path(checkpoint).resolve()),
            "splits": ", ".join(splits) if not cases else "cases " + ", ".join(cases),
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
    parser.add_argument("--catalog", required=True, help="curated catalog folder or s3:// URL")
    parser.add_argument(
        "--checkpoint", required=True, help="model checkpoint (sammed3d format or a published SAM-Med3D .pth)"
    )
    parser.add_argument("--out", default="evaluation", help="output folder (default ./evaluation)")
    parser.add_argument(
        "--split", action="append", dest="splits", metavar="SPLIT",
        help="split to evaluate, repeatable; 'all' for every split (default: test)",
    )
    parser.add_argument(
        "--case", action="append", dest="cases", metavar="DATASET/CASE",
        help="evaluate the masks of this case (any split) instead of a split; repeatable",
    )
    parser.add_argument("--max-masks", type=int, help="evaluate a seeded random subset of at most N masks")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random clicks and of the subset")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument(
        "--crop", choices=CROP_PLACEMENTS, default="centred",
        help="centred: the target's box in the middle of the 128³ patch, as the paper evaluated (default); "
        "random: at a seeded random place, so that only the click tells where the target is",
    )
    parser.add_argument(
        "--paper-clicks-fed", choices=CLICKS_FED, default="new",
        help="paper protocol: new feeds the network only the latest click, as the paper did (default); all feeds "
        "it every click so far, as the baseline always gets them",
    )
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
        cases=args.cases,
        max_masks=args.max_masks,
        seed=args.seed,
        settings=EvaluationSettings(crop_placement=args.crop, paper_clicks_fed=args.paper_clicks_fed),
        device=args.device,
    )
    print(f"evaluation report: {report.resolve()}")
    return 0
