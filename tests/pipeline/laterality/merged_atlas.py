"""Test helper: a copy of a real dataset whose left/right label pairs are merged into one unsided label."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pipeline.vocabulary import parse_label_name


def merge_sides(
    source: Path, target: Path, keep_named: tuple[str, ...] = (), hide_names: bool = False, merge: bool = True
) -> dict:
    """Write `target` (nnU-Net v2 layout) from the dataset folder `source`, each left/right pair of labels
    merged into the left one's value under its name without the side. Bases in `keep_named` stay sided.
    With `hide_names`, every label is renamed "structure <value>" (only the data can tell); with
    `merge=False` no pair is merged (only the names are hidden).

    Images are linked, not copied. Returns {base name: merged label value} of the merged pairs.
    """
    meta = json.loads((source / "dataset.json").read_text())
    by_base: dict[str, dict[str, tuple[str, int]]] = {}
    for name, value in meta["labels"].items():
        parsed = parse_label_name(name)
        if parsed.side and parsed.base not in keep_named:
            by_base.setdefault(parsed.base, {})[parsed.side] = (name, int(value))
    pairs = {base: sides for base, sides in by_base.items() if merge and set(sides) == {"left", "right"}}
    labels = dict(meta["labels"])
    remap = {}
    for base, sides in pairs.items():
        (left_name, left_value), (right_name, right_value) = sides["left"], sides["right"]
        del labels[left_name], labels[right_name]
        labels[f"structure {left_value}" if hide_names else _without_side(left_name)] = left_value
        remap[right_value] = left_value
    if hide_names:
        labels = {("background" if v == 0 else f"structure {v}"): v for v in labels.values()}
    for folder in ("imagesTr", "labelsTr"):
        (target / folder).mkdir(parents=True, exist_ok=True)
    for image in sorted((source / "imagesTr").iterdir()):
        (target / "imagesTr" / image.name).symlink_to(image)
    for label_path in sorted((source / "labelsTr").iterdir()):
        if not remap:
            (target / "labelsTr" / label_path.name).symlink_to(label_path)
            continue
        label = sitk.ReadImage(str(label_path))
        array = sitk.GetArrayFromImage(label)
        merged = array.copy()
        for old, new in remap.items():
            merged[array == old] = new
        out = sitk.GetImageFromArray(merged)
        out.CopyInformation(label)
        sitk.WriteImage(out, str(target / "labelsTr" / label_path.name))
    (target / "dataset.json").write_text(json.dumps({**meta, "labels": labels}, indent=1))
    return {base: sides["left"][1] for base, sides in pairs.items()}


def _without_side(name: str) -> str:
    """"Left-Putamen" -> "Putamen", "Precentral_L" -> "Precentral" (FreeSurfer and AAL spellings)."""
    for prefix in ("Left-", "Right-"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    for suffix in ("_L", "_R"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    raise ValueError(f"no side marker in label name {name!r}")


def recovered_sides(original_masks: list[dict], merged_masks: list[dict], bases, max_mm=3.0, max_volume=0.06):
    """Compare the kept sides of `bases` in the original rows with the merged case's rows of the same
    category. Returns (recovered, total, failures), a side recovered when its centroid lies within
    `max_mm` and its volume within `max_volume` (relative) of the original's."""
    merged = {m["category"]: m for m in merged_masks if m["status"] == "kept"}
    recovered, total, failures = 0, 0, []
    for mask in original_masks:
        if mask["status"] != "kept" or mask["base_category"] not in bases or mask["side_source"] != "dataset":
            continue
        total += 1
        twin = merged.get(mask["category"])
        if twin is None:
            failures.append((mask["category"], "missing"))
            continue
        distance = float(np.linalg.norm(np.subtract(twin["centroid_world_xyz"], mask["centroid_world_xyz"])))
        volume = abs(twin["volume_ml"] - mask["volume_ml"]) / mask["volume_ml"]
        if distance <= max_mm and volume <= max_volume:
            recovered += 1
        else:
            failures.append((mask["category"], f"{distance:.2f} mm, volume {volume:+.1%}"))
    return recovered, total, failures
