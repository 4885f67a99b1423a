"""Steps 2-4 on one case's label map: the case's masks, cleaned, split into sides, and their stored map.

A case's masks are shared by all its channels (each channel is its own catalog image); `CaseMask` holds
what becomes one masks.parquet row per channel. A mask's label value in the stored map is its position in
the case's mask list (1-based), kept or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.geometry import Geometry
from pipeline.laterality.evidence import BilateralEvidence, bilateral_evidence
from pipeline.laterality.names import laterality_names_for
from pipeline.laterality.plane import MidSagittalPlane, estimate_plane
from pipeline.laterality.surface import estimate_cut_surface
from pipeline.records import CaseRecord
from pipeline.steps.step2_mask_cleaning import MaskStatistics, mask_statistics, rejection_reason
from pipeline.steps.step3_label_quality import largest_component_ids
from pipeline.steps.step4_symmetry_split import (
    SPLIT_SOURCES,
    BilateralThresholds,
    SidePiece,
    check_sides,
    split_components_by_side,
    split_source,
)
from pipeline.steps.step5_resample import resample_labels_with_statistics
from pipeline.vocabulary import Vocabulary, parse_label_name, with_side

ORIENTATION_SUSPECT = "orientation_suspect"
MIDLINE_FROM_FIELD_OF_VIEW = "midline_from_field_of_view"
OVERLAPPING_MASKS = "overlapping_masks"
# Most named pairs contradict the world axes: split halves take the names' convention, not the world's.
SPLIT_SIDES_FOLLOW_NAMES = "split_sides_follow_names"


@dataclass
class CaseMask:
    """A mask of the case, shared by all its channels; becomes one row per kept-or-rejected image."""

    source_label: int
    source_name: str
    base: str
    side: str | None
    side_source: str | None  # "dataset" (side in the name), "name" / "data" / "both" (split), None
    group: str
    status: str = "kept"
    evidence: BilateralEvidence | None = None  # data about the mid-sagittal plane, where looked at
    reason: str | None = None
    pieces: list[SidePiece] | None = None  # for split halves: this side's pieces of the source mask
    stats: MaskStatistics | None = None
    source_voxels: int = 0
    voxels: int = 0
    removed_voxels: int = 0
    volume_ml: float = 0.0
    top_sizes: list[int] = field(default_factory=list)
    other_voxels: int = 0
    components: int = 0
    bg_fraction_bbox: float | None = None
    bg_fraction_volume: float | None = None
    centroid_world: list[float] | None = None
    label_value: int = 0
    stored_voxels: int = 0
    stored_bbox: list[int] | None = None

    @property
    def category(self) -> str:
        return with_side(self.base, self.side) if self.side else self.base

    def reject(self, reason: str) -> None:
        if self.status == "kept":
            self.status, self.reason = "rejected", reason


def unprocessed_masks(case: CaseRecord, vocabulary: Vocabulary) -> list[CaseMask]:
    """Masks named by the dataset, for rows of images whose voxels were never read."""
    masks = []
    for value, name in sorted(case.label_names.items()):
        parsed = parse_label_name(name)
        masks.append(
            CaseMask(value, name, parsed.base, parsed.side, "dataset" if parsed.side else None,
                  vocabulary.group_of(parsed.base), status="rejected", reason="not processed")
        )
    return masks


def clean_and_split(case, label_array, label_image, table, reference, modality, config, vocabulary):
    """Steps 2-4 on the source grid, from the label map's component `table` (`find_components`).
    Returns masks, the final (z, y, x) map of mask values, flags, side check, mid-sagittal plane (None
    when nothing needed it)."""
    geometry = Geometry.of(label_image)
    voxel_mm3 = float(np.prod(geometry.spacing_xyz))
    statistics = mask_statistics(table)
    names = dict(case.label_names)
    for value in statistics:
        names.setdefault(value, f"label {value}")
    parsed_names = {value: parse_label_name(name) for value, name in names.items()}
    laterality = laterality_names_for(tuple(config.paired_structures))
    thresholds = BilateralThresholds(
        config.bilateral_min_balance, config.bilateral_min_symmetry, config.bilateral_max_dip
    )

    flags = []
    plane: MidSagittalPlane | None = None
    masks: list[CaseMask] = []
    to_split: list[tuple[CaseMask, str]] = []  # (the unsided mask, how its split was decided)
    for value, name in sorted(names.items()):
        parsed = parsed_names[value]
        sided = "dataset" if parsed.side else None
        mask = CaseMask(value, name, parsed.base, parsed.side, sided, vocabulary.group_of(parsed.base))
        masks.append(mask)
        mask.stats = statistics.get(value)
        if mask.stats is None:
            mask.reject(f"label value {value} absent from the label map")
            continue
        kind = laterality.kind_of(parsed.base) if parsed.side is None else None
        if parsed.side is None and (kind == "paired" or (kind is None and config.split_unknown_by_data)):
            if plane is None:
                plane = estimate_plane(label_array, geometry, _base_classes(parsed_names, table), reference, modality)
                if plane.source == "field of view":
                    flags.append(MIDLINE_FROM_FIELD_OF_VIEW)
            mask.evidence = bilateral_evidence(
                table, mask.stats.component_ids[: config.keep_largest_components], geometry, plane.x_mm
            )
            source = split_source(kind, mask.evidence, thresholds)
            if source is not None:
                to_split.append((mask, source))
    cut = None
    if to_split:
        crossing = [c for mask, _ in to_split for c in _crossing_components(table, mask.stats, geometry, plane.x_mm)]
        cut = estimate_cut_surface(table, crossing, geometry, plane.x_mm, label_array.shape)
    for whole, source in to_split:
        # Split masks are judged per side: over the bounding box of a merged pair (two ribs, say)
        # the background fraction says nothing about either side's quality.
        pieces = split_components_by_side(table, whole.stats.component_ids, cut, config.straddle_fraction)
        halves = []
        for side in ("left", "right"):
            side_pieces = [p for p in pieces if p.side == side]
            if side_pieces:
                halves.append(CaseMask(whole.source_label, whole.source_name, whole.base, side, source, whole.group,
                                       evidence=whole.evidence, pieces=side_pieces))
        at = next(i for i, mask in enumerate(masks) if mask is whole)
        masks[at : at + 1] = halves

    lut = np.zeros(table.count + 1, dtype=np.uint16)
    cut_pieces: list[tuple[SidePiece, int]] = []
    k = config.keep_largest_components
    # A mask's value is its position in the case's mask list (1-based), kept or not, so a threshold
    # change that flips one mask leaves every other mask's value, and catalog row, as it was.
    for position, mask in enumerate(masks, start=1):
        if mask.pieces is not None:
            _summarise_pieces(mask, mask.pieces, k, label_array.size)
        elif mask.stats is not None:
            _summarise_stats(mask, mask.stats, k)
        if mask.status == "kept":
            reason = rejection_reason(
                mask.source_voxels, mask.bg_fraction_bbox, mask.bg_fraction_volume, voxel_mm3, config
            )
            if reason:
                split_note = f"{mask.side} side after the left/right split: " if mask.pieces is not None else ""
                mask.reject(split_note + reason)
        mask.volume_ml = mask.voxels * voxel_mm3 / 1000.0
        if mask.status != "kept":
            continue
        mask.label_value = position
        if mask.pieces is not None:
            for piece in _largest_pieces(mask.pieces, k):
                if piece.cut:
                    cut_pieces.append((piece, mask.label_value))
                else:
                    lut[piece.component] = mask.label_value
        else:
            lut[largest_component_ids(mask.stats, k)] = mask.label_value
    final_map = lut[table.components]
    for piece, value in cut_pieces:
        z0, z1, y0, y1, x0, x1 = (int(v) for v in table.bbox[piece.component])
        box = (slice(z0, z1 + 1), slice(y0, y1 + 1), slice(x0, x1 + 1))
        on_left = cut.on_left(z0, z1 + 1, y0, y1 + 1, x0, x1 + 1)
        on_side = on_left if piece.side == "left" else ~on_left
        final_map[box][(table.components[box] == piece.component) & on_side] = value

    kept = [m for m in masks if m.status == "kept"]
    for mask in kept:
        if mask.pieces is not None:
            chosen = _largest_pieces(mask.pieces, k)
            weights = np.array([p.voxels for p in chosen], dtype=float)
            centroids = np.array([p.centroid_zyx for p in chosen])
        else:
            ids = largest_component_ids(mask.stats, k)
            weights, centroids = table.voxels[ids].astype(float), table.centroid_zyx[ids]
        centroid_zyx = weights @ centroids / weights.sum()
        mask.centroid_world = [float(v) for v in geometry.index_zyx_to_world(centroid_zyx)]
    side_check = check_sides({m.category: np.asarray(m.centroid_world) for m in kept if m.side_source == "dataset"})
    if side_check.suspect:
        flags.append(ORIENTATION_SUSPECT)
        # The dataset's own names say its left is the world's right: halves split here follow the names,
        # so that one image never calls two places "left" (the flag says the world axes are in doubt).
        split = [m for m in masks if m.side_source in SPLIT_SOURCES]
        for mask in split:
            old, mask.side = mask.side, "right" if mask.side == "left" else "left"
            if mask.reason:
                mask.reason = mask.reason.replace(f"{old} side after", f"{mask.side} side after", 1)
        if split:
            flags.append(SPLIT_SIDES_FOLLOW_NAMES)
    return masks, final_map, flags, side_check, plane


def _crossing_components(table, stats: MaskStatistics, geometry: Geometry, plane_x_mm: float) -> list[int]:
    """Components of a mask whose bounding box spans the plane x = plane_x_mm (world mm)."""
    crossing = []
    for cid in stats.component_ids:
        z0, z1, y0, y1, x0, x1 = (int(v) for v in table.bbox[cid])
        corners = np.array([(z, y, x) for z in (z0, z1) for y in (y0, y1) for x in (x0, x1)], dtype=float)
        world_x = geometry.index_zyx_to_world(corners)[:, 0]
        if world_x.min() < plane_x_mm < world_x.max():
            crossing.append(int(cid))
    return crossing


def _base_classes(parsed_names: dict, table) -> np.ndarray:
    """Label value -> class of its base structure (>= 1; "X left" and "X right" share one), 0 for none."""
    size = int(max(max(parsed_names, default=0), int(table.label_of.max(initial=0)))) + 1
    classes = np.zeros(size, dtype=np.int64)
    ids: dict[str, int] = {}
    for value, parsed in parsed_names.items():
        if value > 0:
            classes[value] = ids.setdefault(parsed.base, len(ids) + 1)
    return classes


def _largest_pieces(pieces: list[SidePiece], k: int) -> list[SidePiece]:
    return sorted(pieces, key=lambda p: (-p.voxels, p.component))[:k]


def _summarise_stats(mask: CaseMask, stats: MaskStatistics, k: int) -> None:
    mask.source_voxels = stats.voxels
    mask.top_sizes = stats.top_sizes(k)
    mask.other_voxels = stats.other_voxels(k)
    mask.components = len(stats.component_ids)
    mask.voxels = sum(mask.top_sizes)
    mask.removed_voxels = mask.other_voxels
    mask.bg_fraction_bbox = stats.bg_fraction_bbox
    mask.bg_fraction_volume = stats.bg_fraction_volume


def _summarise_pieces(mask: CaseMask, pieces: list[SidePiece], k: int, total_voxels: int) -> None:
    """Statistics of one side of a split mask, from its pieces (whole components or cut halves)."""
    sizes = sorted((p.voxels for p in pieces), reverse=True)
    boxes = np.asarray([p.bbox for p in pieces])
    box_volume = int(np.prod(boxes[:, 1::2].max(axis=0) - boxes[:, 0::2].min(axis=0) + 1))
    mask.source_voxels = int(sum(sizes))
    mask.top_sizes = [int(s) for s in sizes[:k]]
    mask.other_voxels = int(sum(sizes[k:]))
    mask.components = len(sizes)
    mask.voxels = sum(mask.top_sizes)
    mask.removed_voxels = mask.other_voxels
    mask.bg_fraction_bbox = 1.0 - mask.source_voxels / box_volume
    mask.bg_fraction_volume = 1.0 - mask.source_voxels / total_voxels


def store_label(final_map: np.ndarray, grid, masks: list[CaseMask], config) -> np.ndarray:
    """Resample the final mask map (nearest) to the target grid and record stored voxels and boxes."""
    dtype = np.uint8 if len(masks) < 256 else np.uint16
    final_map = final_map.astype(dtype, copy=False)
    stored, counts, boxes = resample_labels_with_statistics(final_map, grid, len(masks) + 1)
    for mask in masks:
        if mask.status != "kept":
            continue
        voxels = int(counts[mask.label_value])
        if voxels == 0:
            mask.reject(f"vanished when resampled to {config.target_spacing_mm} mm")
            continue
        z0, z1, y0, y1, x0, x1 = (int(v) for v in boxes[mask.label_value])
        mask.stored_voxels = voxels
        mask.stored_bbox = [z0, y0, x0, z1 + 1, y1 + 1, x1 + 1]
    return stored
