"""Step 4: left/right symmetry. Split unsided bilateral masks in PATIENT coordinates, and check sides.

World coordinates are SimpleITK's LPS: +x points to the patient's LEFT. Which array axis that is, and in
which direction, depends on the direction cosines; nothing here looks at array indices alone. Whether a
mask is bilateral comes from its name and from its data (`pipeline.laterality`): the mid-sagittal plane
x = c of the case, and the mask's mass, mirror symmetry and profile about it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.laterality.evidence import BilateralEvidence
from pipeline.laterality.names import NameLaterality
from pipeline.laterality.surface import CutSurface
from pipeline.steps.step2_mask_cleaning import ComponentTable
from pipeline.vocabulary import Side, parse_label_name

# How a split mask's sides were decided (masks.parquet `side_source`); "dataset" is a side in the name.
SPLIT_BY_NAME, SPLIT_BY_DATA, SPLIT_BY_BOTH = "name", "data", "both"
SPLIT_SOURCES = (SPLIT_BY_NAME, SPLIT_BY_DATA, SPLIT_BY_BOTH)


@dataclass(frozen=True)
class BilateralThresholds:
    """When the data call a mask bilateral (see `pipeline.laterality.evidence`)."""

    min_balance: float
    min_symmetry: float
    max_dip: float


def split_source(
    kind: NameLaterality | None, evidence: BilateralEvidence | None, thresholds: BilateralThresholds
) -> str | None:
    """How an unsided mask is split, or None to keep it whole.

    A known paired name is always split ("both" when its data agree, else "name"); a known midline or
    single structure never is; an unknown name is split when its data say bilateral ("data").
    """
    by_data = evidence is not None and evidence.is_bilateral(
        thresholds.min_balance, thresholds.min_symmetry, thresholds.max_dip
    )
    if kind == "paired":
        return SPLIT_BY_BOTH if by_data else SPLIT_BY_NAME
    if kind is None and by_data:
        return SPLIT_BY_DATA
    return None


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
    table: ComponentTable, component_ids: np.ndarray, cut: CutSurface, straddle_fraction: float
) -> list[SidePiece]:
    """Assign each component to the patient's left or right of the `cut` (the mid-sagittal plane, bent
    along the gaps between touching halves: `pipeline.laterality.surface`).

    A component whose smaller side holds at least `straddle_fraction` of its voxels (e.g. a merged pair
    that touches across the midline) is cut there; any other goes whole to its majority side.
    """
    pieces = []
    for cid in component_ids:
        z0, z1, y0, y1, x0, x1 = (int(v) for v in table.bbox[cid])
        inside = table.components[z0 : z1 + 1, y0 : y1 + 1, x0 : x1 + 1] == cid
        on_left = cut.on_left(z0, z1 + 1, y0, y1 + 1, x0, x1 + 1)
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

    `centroids_world` maps normalised category -> world (x, y, z) centroid in mm. Pass only sides named by
    the dataset: halves split here lie on their sides by construction and would outvote them.
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
