"""Per-dataset report of a catalog: what was kept and why the rest was not, categories, grids, duplicates.

`write_dataset_report(root)` writes `report/datasets.md` into the catalog (a folder or an S3 prefix) and
one PNG per dataset beside it (`report/<dataset>.png`: original spacing and physical extent histograms per
axis, kept masks per category, images and masks per curation rule), plus `report/duplicates.csv`
(`catalog.leaks` pairs).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from catalog.leaks import stored_pairs  # noqa: E402
from catalog.reader import Catalog  # noqa: E402
from catalog.report import rule_of, side_split_table  # noqa: E402

REPORT_DIR = "report"
TOP_CATEGORIES = 25


def write_dataset_report(root: str | Path, out_dir: str | Path | None = None) -> Path | str:
    """Write the report files to `out_dir` (default `report/` in the catalog, local or S3); returns the path
    (or URL, in an S3 catalog) of datasets.md."""
    catalog = Catalog(root)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        return _write_report(catalog, Path(out_dir))
    with catalog.location.local_output(REPORT_DIR) as folder:
        written = _write_report(catalog, folder)
    return catalog.location.output_reference(REPORT_DIR, written)


def _write_report(catalog: Catalog, folder: Path) -> Path:
    images, masks = catalog.images(), catalog.masks()
    pairs = stored_pairs(catalog, images)
    pairs.to_csv(folder / "duplicates.csv", index=False)

    lines = [
        f"# Datasets in `{catalog.location.name}`",
        "",
        f"{images.dataset.nunique()} datasets, {len(images)} images ({(images.status == 'kept').sum()} kept), "
        f"{len(masks)} masks ({(masks.status == 'kept').sum()} kept); {len(pairs)} duplicate image pairs "
        "(duplicates.csv; each group of duplicates shares one split).",
        "",
        "| dataset | modality | images kept | images rejected | masks kept | masks rejected | categories kept "
        "| splits (kept images) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset, rows in images.groupby("dataset"):
        dataset_masks = masks[masks.dataset == dataset]
        kept_masks = dataset_masks[dataset_masks.status == "kept"]
        splits = rows[rows.status == "kept"].split.value_counts().sort_index()
        lines.append(
            f"| {dataset} | {', '.join(sorted(rows.modality.dropna().unique()))} | {(rows.status == 'kept').sum()} | "
            f"{(rows.status == 'rejected').sum()} | {len(kept_masks)} | {len(dataset_masks) - len(kept_masks)} | "
            f"{kept_masks.category.nunique()} | {', '.join(f'{k} {v}' for k, v in splits.items()) or '-'} |"
        )
    for dataset, rows in images.groupby("dataset"):
        lines += _dataset_section(dataset, rows, masks[masks.dataset == dataset], pairs, folder)
    path = folder / "datasets.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _dataset_section(dataset: str, images: pd.DataFrame, masks: pd.DataFrame, pairs: pd.DataFrame, folder: Path):
    png = _plot_dataset(dataset, images, masks, folder / f"{_file_name(dataset)}.png")
    kept = masks[masks.status == "kept"]
    lines = ["", f"## {dataset}", "", f"![{dataset}]({png.name})", "", "Images by rule:", "",
             _rule_table(images, "images"), "", "Masks by rule:", "", _rule_table(masks, "masks"), ""]
    split = side_split_table(masks)
    lines += ["Left/right split by rule (kept halves):", "", split.to_markdown() if not split.empty else "(none)", ""]
    categories = kept.groupby(["category", "group"]).size().rename("masks").reset_index()
    categories = categories.sort_values(["masks", "category"], ascending=[False, True])
    lines.append(f"Kept masks by category ({len(categories)}; the {min(TOP_CATEGORIES, len(categories))} most frequent):")
    lines.append("")
    lines.append(categories.head(TOP_CATEGORIES).to_markdown(index=False) if len(categories) else "(none)")
    duplicates = pairs[(pairs.dataset_a == dataset) | (pairs.dataset_b == dataset)]
    if len(duplicates):
        lines += ["", "Duplicate pairs involving this dataset:", "",
                  duplicates[["image_a", "image_b", "kind", "correlation", "shift_slices"]].to_markdown(index=False)]
    return lines


def _rule_table(frame: pd.DataFrame, name: str) -> str:
    counts = frame.reason.map(rule_of).value_counts().sort_index()
    return counts.to_frame(name).to_markdown() if len(counts) else "(none)"


def _file_name(dataset: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset)


def _plot_dataset(dataset: str, images: pd.DataFrame, masks: pd.DataFrame, out: Path) -> Path:
    """Four panels: original spacing (mm) and extent (mm) per axis, kept masks per category, rows per rule."""
    figure, axes = plt.subplots(2, 2, figsize=(12, 8))
    with_header = images[images.original_spacing_xyz.notna()]
    for axis, column, label in ((axes[0, 0], "original_spacing_xyz", "spacing (mm)"),
                                (axes[0, 1], "extent_mm_xyz", "physical extent (mm)")):
        # 4D images (rejected at step 1) have four entries; only 3D geometry goes into the histograms.
        values = np.array([list(v) for v in with_header[column] if len(v) == 3], dtype=float).reshape(-1, 3)
        if len(values):
            bins = np.histogram_bin_edges(values, bins=20)
            for index, name in enumerate("xyz"):
                axis.hist(values[:, index], bins=bins, alpha=0.6, label=name)
        axis.set_xlabel(label)
        axis.set_ylabel("images")
        axis.legend()
    counts = masks[masks.status == "kept"].category.value_counts().head(TOP_CATEGORIES)
    axes[1, 0].barh(counts.index[::-1], counts.values[::-1])
    axes[1, 0].set_xlabel("kept masks")
    axes[1, 0].tick_params(axis="y", labelsize=7)
    rules = pd.DataFrame({
        "images": images.reason.map(rule_of).value_counts(),
        "masks": masks.reason.map(rule_of).value_counts(),
    }).fillna(0)
    positions = np.arange(len(rules))
    axes[1, 1].barh(positions - 0.2, rules.images, height=0.4, label="images")
    axes[1, 1].barh(positions + 0.2, rules.masks, height=0.4, label="masks")
    axes[1, 1].set_yticks(positions, rules.index)
    axes[1, 1].tick_params(axis="y", labelsize=7)
    axes[1, 1].set_xlabel("rows")
    axes[1, 1].legend()
    figure.suptitle(dataset)
    figure.subplots_adjust(left=0.2, right=0.98, wspace=0.45, hspace=0.3)
    figure.savefig(out, dpi=80)
    plt.close(figure)
    return out


def add_arguments(catalog_commands: argparse._SubParsersAction) -> None:
    """`sammed3d catalog report DIR [-o FOLDER]`."""
    report = catalog_commands.add_parser("report", help="per-dataset report: counts, reasons, histograms, duplicates")
    report.add_argument("root", help="catalog folder or s3:// URL")
    report.add_argument("-o", "--out", metavar="FOLDER", help="output folder (default report/ in the catalog)")


def run(args: argparse.Namespace) -> int:
    print(write_dataset_report(args.root, args.out))
    return 0
