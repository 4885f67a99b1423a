"""Human-readable summaries of a catalog: counts by dataset, modality, group, status, and by curation rule."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from catalog.reader import Catalog

ORIENTATION_SUSPECT = "orientation_suspect"

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
        f"# Curation report: `{Path(root).name}`",
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
        f"- step 4 (left/right split): {(kept_masks.side_source == 'split').sum()} masks made by splitting; "
        f"{images['flags'].map(lambda f: ORIENTATION_SUSPECT in list(f)).sum()} images flagged orientation_suspect",
        f"- categories outside the vocabulary (group 'other'): {kept_masks[kept_masks.group == 'other'].category.nunique()}",
        "",
        "## Kept masks by group",
        _counts(kept_masks, ["group"], "modality").to_markdown(),
    ]
    return "\n".join(lines) + "\n"
