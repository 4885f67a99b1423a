"""Human-readable summaries of a catalog: counts by dataset, modality, group, status, and by curation rule."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from catalog.reader import Catalog
from catalog.schema import SPLIT_SIDE_SOURCES

ORIENTATION_SUSPECT = "orientation_suspect"
# How a split was decided (masks.parquet side_source) -> the rule, in words.
_SPLIT_RULES = {
    "name": "name: known paired structure (its data alone did not say bilateral)",
    "both": "both: known paired structure, bilateral by its data too",
    "data": "data: unknown name, bilateral by its data",
}

# Reason text -> the curation rule that produced it (first match wins).
_RULES = (
    ("image rejected", "image rejected (step 1 or unreadable input)"),
    ("absent from the label map", "step 2: label absent from the map"),
    ("voxels (minimum", "step 2: fewer voxels than the minimum"),
    ("mm³ below", "step 2: volume below the minimum"),
    ("background fraction", "step 2: background fraction too high"),
    ("vanished when resampled", "step 5: vanished when resampled"),
    ("physical extent", "step 1: physical extent too small"),
    ("physical volume", "step 1: physical volume too small"),
    ("mismatch", "step 1: image/label geometry mismatch"),
    ("4D", "step 1: 4D or multi-component image"),
    ("missing", "input: file missing"),
    ("unreadable", "input: unreadable file"),
    ("label map", "input: invalid label map"),
)


def rule_of(reason: str | None) -> str:
    if not isinstance(reason, str) or not reason:
        return "kept"
    for needle, rule in _RULES:
        if needle in reason:
            return rule
    return "other: " + re.sub(r"\d+(\.\d+)?", "N", reason)[:60]


def rule_counts(frame: pd.DataFrame) -> pd.Series:
    return frame.reason.map(rule_of).value_counts().sort_index()


def side_split_table(masks: pd.DataFrame) -> pd.DataFrame:
    """Kept masks made by the left/right split, per rule: how many halves, of how many categories, and
    their median evidence (mirror symmetry, midline fraction, dip at the plane)."""
    split = masks[(masks.status == "kept") & masks.side_source.isin(SPLIT_SIDE_SOURCES)]
    if split.empty:
        return pd.DataFrame()
    table = split.groupby("side_source").agg(
        halves=("mask_id", "size"),
        categories=("base_category", "nunique"),
        median_symmetry=("side_symmetry", "median"),
        median_midline_fraction=("side_midline_fraction", "median"),
        median_dip=("side_dip", "median"),
    )
    table.index = [_SPLIT_RULES.get(source, source) for source in table.index]
    table.index.name = "split by"
    return table.round(3)


def summary_tables(root: str | Path) -> dict[str, pd.DataFrame]:
    """Counts by dataset, modality, group, status and reason (the `sammed3d catalog summary` tables)."""
    catalog = Catalog(root)
    images, masks = catalog.images(), catalog.masks()
    return {
        "images by dataset, modality and status": _counts(images, ["dataset", "modality"], "status"),
        "image reasons": rule_counts(images).to_frame("images"),
        "masks by group and status": _counts(masks, ["group"], "status"),
        "masks by modality and status": _counts(masks, ["modality"], "status"),
        "masks by split (kept)": _counts(masks[masks.status == "kept"], ["split"], "modality"),
        "mask reasons": rule_counts(masks).to_frame("masks"),
        "left/right split by rule (kept halves)": side_split_table(masks),
    }


def print_summary(root: str | Path) -> None:
    """Print the `summary_tables` of a catalog (the `sammed3d catalog summary` command)."""
    with pd.option_context("display.width", 160, "display.max_rows", 200, "display.max_colwidth", 70):
        for title, table in summary_tables(root).items():
            print(f"\n== {title}")
            print(table.to_string() if not table.empty else "(none)")


def _counts(frame: pd.DataFrame, rows: list[str], column: str) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame()
    return frame.groupby(rows + [column]).size().unstack(fill_value=0)


def curation_report_markdown(root: str | Path, *, curated: int, skipped: int) -> str:
    """The flow's artifact: what each rule kept and dropped, plus the step 3/4 effects."""
    catalog = Catalog(root)
    images, masks = catalog.images(), catalog.masks()
    kept_masks = masks[masks.status == "kept"]
    lines = [
        f"# Curation report: `{catalog.location.name}`",
        "",
        f"This run curated {curated} images and skipped {skipped} unchanged ones. The catalog holds "
        f"{len(images)} images ({(images.status == 'kept').sum()} kept) and {len(masks)} masks "
        f"({len(kept_masks)} kept).",
        "",
        "## Images by rule",
        rule_counts(images).to_frame("images").to_markdown(),
        "",
        "## Masks by rule",
        rule_counts(masks).to_frame("masks").to_markdown(),
        "",
        "## Steps 3 and 4",
        f"- step 3 (keep the largest components): {int(kept_masks.removed_voxels.sum())} voxels removed "
        f"from {(kept_masks.removed_voxels > 0).sum()} masks",
        f"- step 4 (left/right split): {kept_masks.side_source.isin(SPLIT_SIDE_SOURCES).sum()} masks made by "
        f"splitting; {images['flags'].map(lambda f: ORIENTATION_SUSPECT in list(f)).sum()} images flagged "
        "orientation_suspect",
        f"- categories outside the vocabulary (group 'other'): {kept_masks[kept_masks.group == 'other'].category.nunique()}",
        "",
        "## Left/right split by rule",
        _markdown_or_none(side_split_table(masks)),
        "",
        "## Kept masks by group",
        _counts(kept_masks, ["group"], "modality").to_markdown(),
    ]
    return "\n".join(lines) + "\n"


def _markdown_or_none(table: pd.DataFrame) -> str:
    return table.to_markdown() if not table.empty else "(none)"
