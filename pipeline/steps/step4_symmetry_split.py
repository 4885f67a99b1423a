"""Step 4: left/right symmetry. Split unsided paired masks in PATIENT coordinates, and check sides.

World coordinates are SimpleITK's LPS: +x points to the patient's LEFT. Which array axis that is, and in
which direction, depends on the direction cosines; nothing here looks at array indices alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np
import SimpleITK as sitk

from pipeline.geometry import Geometry
from pipeline.steps.step2_mask_cleaning import ComponentTable
from pipeline.vocabulary import Side, parse_label_name

# Air is about -1000 HU and fat about -100 HU; -500 separates the body from air in any CT.
_CT_BODY_THRESHOLD_HU = -500.0


def body_midline_x(image: sitk.Image, modality: str) -> float | None:
    """World x (mm) of the centroid of the body outline, or None when no body is found.

    The body is the largest connected region above an air threshold (-500 HU for CT, Otsu's threshold
    otherwise), which ignores the table and the air around the patient.
    """
    array = sitk.GetArrayViewFromImage(image)
    if modality == "CT":
        threshold = _CT_BODY_THRESHOLD_HU
    else:
        otsu = sitk.OtsuThresholdImageFilter()
        otsu.Execute(sitk.Cast(image, sitk.sitkFloat32))
        threshold = otsu.GetThreshold()
    body = np.asarray(array > threshold)
    if not body.any():
        return None
    largest = cc3d.largest_k(body, k=1, connectivity=6)
    centroid_zyx = np.argwhere(largest).mean(axis=0) if largest.any() else np.argwhere(body).mean(axis=0)
    return float(Geometry.of(image).index_zyx_to_world(centroid_zyx)[0])


def field_of_view_centre_x(shape_zyx: tuple[int, ...], geometry: Geometry) -> float:
    centre = (np.asarray(shape_zyx, dtype=float) - 1) / 2
    return float(geometry.index_zyx_to_world(centre)[0])


def is_paired_structure(base: str, paired: tuple[str, ...]) -> bool:
    """True for "lung upper lobe" given "lung": whole-word prefixes, so "hip" does not match "hippocampus"."""
    return any(base == p or base.startswith(p + " ") for p in paired)


@dataclass(frozen=True)
class SidePiece:
    """Part of one component on one side: `voxels`, inclusive `bbox` [z0,z1,y0,y1,x0,x1], `centroid_zyx`."""

    component: int
    side: Side
    voxels: int
    bbox: tuple[int, int, int, int, int, int]
    centroid_zyx: tuple[float, float, float]
    cut: bool


def split_components_by_side(
    table: ComponentTable,
    component_ids: np.ndarray,
    geometry: Geometry,
    midline_x: float,
    straddle_fraction: float,
) -> list[SidePiece]:
    """Assign each component to the patient's left or right of the midline plane x = midline_x.

    A component whose smaller side holds at least `straddle_fraction` of its voxels (e.g. a merged pair
    that touches across the midline) is cut at the plane; any other goes whole to its majority side.
    """
    pieces = []
    for cid in component_ids:
        z0, z1, y0, y1, x0, x1 = (int(v) for v in table.bbox[cid])
        inside = table.components[z0 : z1 + 1, y0 : y1 + 1, x0 : x1 + 1] == cid
        on_left = geometry.world_x_of_box(z0, z1 + 1, y0, y1 + 1, x0, x1 + 1) > midline_x
        left_count = int(np.count_nonzero(inside & on_left))
        total = int(table.voxels[cid])
        if min(left_count, total - left_count) >= straddle_fraction * total and 0 < left_count < total:
            for side, selection in (("left", inside & on_left), ("right", inside & ~on_left)):
                pieces.append(_piece_from_selection(int(cid), side, selection, (z0, y0, x0)))
        else:
            side = "left" if left_count * 2 > total else "right"
            box = tuple(int(v) for v in table.bbox[cid])
            centroid = tuple(float(v) for v in table.centroid_zyx[cid])
            pieces.append(SidePiece(int(cid), side, total, box, centroid, cut=False))
    return pieces


def _piece_from_selection(cid: int, side: Side, selection: np.ndarray, offset: tuple[int, int, int]) -> SidePiece:
    points = np.argwhere(selection)
    low = points.min(axis=0) + offset
    high = points.max(axis=0) + offset
    centroid = points.mean(axis=0) + offset
    box = (int(low[0]), int(high[0]), int(low[1]), int(high[1]), int(low[2]), int(high[2]))
    return SidePiece(cid, side, len(points), box, tuple(float(v) for v in centroid), cut=True)


@dataclass(frozen=True)
class SideCheck:
    """Outcome of comparing left- and right-named partners: `disagreeing` lists the base names."""

    pairs: int
    disagreeing: tuple[str, ...]

    @property
    def suspect(self) -> bool:
        return self.pairs > 0 and len(self.disagreeing) * 2 > self.pairs


def check_sides(centroids_world: dict[str, np.ndarray]) -> SideCheck:
    """Compare every "X left" with its "X right" partner: the left one must lie at larger world x (LPS).

    `centroids_world` maps normalised category -> world (x, y, z) centroid in mm.
    """
    by_base: dict[str, dict[str, np.ndarray]] = {}
    for category, centroid in centroids_world.items():
        parsed = parse_label_name(category)
        if parsed.side:
            by_base.setdefault(parsed.base, {})[parsed.side] = centroid
    pairs = 0
    disagreeing = []
    for base, sides in sorted(by_base.items()):
        if "left" in sides and "right" in sides:
            pairs += 1
            if sides["left"][0] <= sides["right"][0]:
                disagreeing.append(base)
    return SideCheck(pairs=pairs, disagreeing=tuple(disagreeing))
