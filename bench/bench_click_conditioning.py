"""Does training yield a model that follows its clicks? Identical objects, through the real command line.

Every case of the SYNTHETIC dataset (`pipeline.phantoms.identical_objects`) holds several identical spheres,
each its own label: only the click says which one is meant. The benchmark runs the product's own path:

1. write the dataset, 2. ``sammed3d curate`` it, 3. ``sammed3d train`` with the DEFAULT recipe (vit_tiny)
for ``--minutes`` of training, a checkpoint every ``--checkpoint-minutes``, 4. ``sammed3d evaluate`` every
checkpoint on the held-out test cases (whole cases the training never saw), with ``--crop random`` so that
the target is not always in the middle of the patch.

It prints, per checkpoint, the training minutes, the network's Dice after 1/3/5/10 clicks (paper protocol,
inside the crop), the region-growing baseline's, the prompt-sensitivity scores, and the "segment every
object" ceiling: the Dice a model scores that marks every sphere whatever the click.

    .venv/bin/python bench/bench_click_conditioning.py [--minutes 15] [--checkpoint-minutes 3] [--cases 40]
        [--recipe NAME] [--out bench/out/click_conditioning]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import yaml  # noqa: E402

from catalog.reader import Catalog  # noqa: E402
from pipeline.phantoms.identical_objects import every_object_dice, write_identical_objects_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "flows.cli"]


def run(command: list[str], log: Path) -> float:
    """Run a `sammed3d` command, its output to `log`; returns seconds; raises with the log's tail on failure."""
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as handle:
        done = subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(command[2:4])} failed:\n" + "\n".join(log.read_text().splitlines()[-20:]))
    return time.perf_counter() - started


def ceiling(catalog_root: Path) -> float:
    """Mean "every object" Dice over the test masks (whole images: every sphere marked, whatever the click)."""
    catalog = Catalog(catalog_root)
    masks = catalog.masks()
    masks = masks[(masks.split == "test") & (masks.status == "kept")]
    images = catalog.images().set_index("image_id")
    scores = []
    for image_id, group in masks.groupby("image_id"):
        label = sitk.GetArrayFromImage(sitk.ReadImage(images.label_path[image_id]))
        scores += [every_object_dice(label, int(value)) for value in group.source_label]
    return float(np.mean(scores))


def steps_per_minute(run_dir: Path) -> pd.DataFrame:
    """metrics.jsonl of a run: step and elapsed training seconds per logged line."""
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return pd.DataFrame([json.loads(line) for line in lines])


def scores(evaluation: Path) -> dict:
    summary = pd.read_parquet(evaluation / "per_mask.parquet")
    crop = summary[summary.space == "crop"].groupby("method")
    row = {}
    for method in ("network", "baseline"):
        means = crop.get_group(method).mean(numeric_only=True)
        row.update({f"{method}@{k}": means[f"paper_dice_at_{k}"] for k in (1, 3, 5, 10)})
    sensitivity = pd.read_parquet(evaluation / "sensitivity.parquet")
    network = sensitivity[sensitivity.method == "network"].mean(numeric_only=True)
    row.update(on_target=network.on_target, on_others=network.on_others, moved_follow=network.moved_follow)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=15.0, help="training time budget")
    parser.add_argument("--checkpoint-minutes", type=float, default=3.0, help="evaluate a checkpoint this often")
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--objects", type=int, default=4)
    parser.add_argument("--recipe", help="training recipe name (default: TrainConfig's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "click_conditioning")
    args = parser.parse_args()

    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    data, catalog, run_dir = out / "data", out / "catalog", out / "train"
    write_identical_objects_dataset(data, seed=args.seed, n_cases=args.cases, n_objects=args.objects)
    seconds = run([*CLI, "curate", str(data), "--catalog", str(catalog)], out / "curate.log")
    print(f"SYNTHETIC identical objects: {args.cases} cases x {args.objects} spheres, curated in {seconds:.0f} s")

    config = {
        "catalog": str(catalog), "out": str(run_dir), "max_minutes": args.minutes, "max_steps": 1_000_000,
        "checkpoint_minutes": args.checkpoint_minutes, "keep_checkpoints": 1000, "progress": False,
    }
    if args.recipe:
        config["recipe"] = args.recipe
    (out / "train.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    seconds = run([*CLI, "train", "--config", str(out / "train.yaml")], out / "train.log")
    metrics = steps_per_minute(run_dir)
    recipe = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))["recipe"]
    print(f"trained recipe {recipe!r} for {metrics.elapsed_s.iloc[-1] / 60:.1f} min "
          f"({int(metrics.step.iloc[-1])} steps, {seconds / 60:.1f} min with start-up)")

    every = ceiling(catalog)
    rows = []
    for checkpoint in sorted((run_dir / "checkpoints").glob("step_*.pt")):
        step = int(checkpoint.stem.split("_")[1])
        evaluation = out / f"eval_{step:07d}"
        run([*CLI, "evaluate", "--catalog", str(catalog), "--checkpoint", str(checkpoint), "--split", "test",
             "--crop", "random", "--out", str(evaluation)], out / f"eval_{step:07d}.log")
        logged = metrics[metrics.step <= step]
        minutes = logged.elapsed_s.iloc[-1] / 60 if len(logged) else 0.0
        rows.append({"minutes": round(minutes, 1), "step": step, **scores(evaluation), "every_object": every})
    table = pd.DataFrame(rows)
    table.to_csv(out / "dice_vs_minutes.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
