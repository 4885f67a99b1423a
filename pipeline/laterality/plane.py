"""The mid-sagittal plane x = c (world mm, LPS: +x is the patient's left) of a case, from mirror symmetry.

Each voxel has a class: its label's base structure ("kidney left" and "kidney right" are one class), else
"body" where the image is above air, else none. A few thousand voxels with a class are drawn at random
(fixed seed); for each candidate c they are mirrored to x' = 2c - x, and the score is the fraction whose
mirror has their class. The best c wins, searched coarse to fine. The body outline anchors the plane when
the labels are one-sided (a tumour is symmetric about its own centre), and the labels sharpen it when the
body is not (arms, table). Nothing depends on where the field of view is centred. Only sampled voxels and
their mirrors are ever classified, so the cost does not grow with the image. The plane is perpendicular to
world x: a tilted head gets the best such plane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from pipeline.geometry import Geometry

_DRAWN = 30000  # voxels drawn at random; those with a class are the points
_POINTS = (1000, 3000, 6000)  # points mirrored in each search stage
_STEPS_MM = (4.0, 1.0, 0.25)  # search steps, coarse to fine
# Below this best score the case is not symmetric enough to place a plane by symmetry.
MIN_PLANE_SCORE = 0.35
_CT_BODY_THRESHOLD_HU = -500.0  # air is about -1000 HU, fat about -100 HU
_BODY = 1  # class of body voxels outside every label; label classes start at 2


@dataclass(frozen=True)
class MidSagittalPlane:
    """The plane world x = `x_mm` (LPS). `score`: fraction of mirrored points landing on their own class
    (1 = perfectly symmetric; None when not placed by symmetry); `source`: "symmetry", "body" (centroid of
    the voxels above air) or "field of view"."""

    x_mm: float
    score: float | None
    source: str


class _Classes:
    """Class of flat voxel indices of a (z, y, x) grid: label base class + 1, else body, else 0."""

    def __init__(self, label_array, class_of_value, image_array, modality, rng):
        self.labels = label_array.reshape(-1)
        self.class_of_value = class_of_value
        self.image = None if image_array is None else image_array.reshape(-1)
        if self.image is not None:
            self.threshold = _CT_BODY_THRESHOLD_HU if modality == "CT" else _otsu(self.image[rng.integers(0, self.image.size, 20000)])

    def __call__(self, flat: np.ndarray) -> np.ndarray:
        labels = self.class_of_value[self.labels[flat]]
        classes = np.where(labels > 0, labels + 1, 0)
        if self.image is not None:
            classes[(classes == 0) & (self.image[flat] > self.threshold)] = _BODY
        return classes


def estimate_plane(
    label_array: np.ndarray,
    geometry: Geometry,
    class_of_value: np.ndarray,
    image: sitk.Image | None,
    modality: str,
) -> MidSagittalPlane:
    """Mid-sagittal plane of a case from its (z, y, x) label map on `geometry` and its image (same grid).

    `class_of_value[v]`: the base-structure class (>= 1) of label value v, 0 for background. Falls back to
    the centroid of the body voxels, then to the centre of the field of view (`source` says which).
    """
    rng = np.random.default_rng(0)
    image_array = None
    if image is not None and tuple(image.GetSize()[::-1]) == label_array.shape:
        image_array = sitk.GetArrayViewFromImage(image)
    classify = _Classes(label_array, class_of_value, image_array, modality, rng)
    drawn = rng.integers(0, label_array.size, min(_DRAWN, label_array.size))
    own = classify(drawn)
    drawn, own = drawn[own > 0][: _POINTS[-1]], own[own > 0][: _POINTS[-1]]
    points = np.stack(np.unravel_index(drawn, label_array.shape), axis=1)
    if len(points) >= 50:
        plane = symmetry_plane(points, own, classify, label_array.shape, geometry)
        if plane is not None:
            return plane
        if image_array is not None and np.any(own == _BODY):
            centroid = points[own == _BODY].mean(axis=0)
            return MidSagittalPlane(float(geometry.index_zyx_to_world(centroid)[0]), None, "body")
    centre = (np.asarray(label_array.shape, dtype=float) - 1) / 2
    return MidSagittalPlane(float(geometry.index_zyx_to_world(centre)[0]), None, "field of view")


def symmetry_plane(points, own, classify, shape, geometry: Geometry) -> MidSagittalPlane | None:
    """Best plane x = c for (N, 3) (z, y, x) `points` of classes `own`, mirrored and looked up with
    `classify` (flat indices -> classes) on a grid of `shape`; None when the best score is below
    `MIN_PLANE_SCORE`."""
    world_x = geometry.index_zyx_to_world(points)[:, 0]
    low, high = np.percentile(world_x, [5, 95])
    half = max(0.25 * (high - low), 2 * _STEPS_MM[0])
    # Mirroring x -> 2c - x moves index (z, y, x) by (2c - 2x) times the world-x column of M^-1.
    step_zyx = np.linalg.inv(geometry.matrix)[:, 0][::-1]
    start = points - 2.0 * world_x[:, None] * step_zyx[None, :]
    candidates = np.arange(np.median(world_x) - half, np.median(world_x) + half + 1e-9, _STEPS_MM[0])
    values = _agreement(start[: _POINTS[0]], own[: _POINTS[0]], step_zyx, candidates, classify, shape)
    for previous, step, count in zip(_STEPS_MM, _STEPS_MM[1:], _POINTS[1:]):
        best = float(candidates[int(np.argmax(values))])
        candidates = best + np.arange(-previous, previous + 1e-9, step)
        values = _agreement(start[:count], own[:count], step_zyx, candidates, classify, shape)
    # Neighbouring candidates can tie where voxels round alike: take the middle of the best ones.
    top = np.flatnonzero(values >= values.max() - 1e-9)
    score = float(values.max())
    if score < MIN_PLANE_SCORE:
        return None
    return MidSagittalPlane(x_mm=float(candidates[top].mean()), score=score, source="symmetry")


def _agreement(start, own, step_zyx, candidates, classify, shape) -> np.ndarray:
    """Fraction of points (mirrored to `start` + 2c `step_zyx`) landing on their own class, per c: (C,)."""
    mirrored = np.rint(start[None] + (2.0 * candidates)[:, None, None] * step_zyx[None, None, :]).astype(np.int64)
    dims = np.asarray(shape)
    inside = np.all((mirrored >= 0) & (mirrored < dims), axis=2)
    flat = (mirrored * np.asarray([dims[1] * dims[2], dims[2], 1])).sum(axis=2)
    landed = classify(np.where(inside, flat, 0).ravel()).reshape(flat.shape)
    return np.count_nonzero(inside & (landed == own[None, :]), axis=1) / len(own)


def _otsu(values: np.ndarray, bins: int = 128) -> float:
    """Otsu's threshold of a sample of intensities (maximises the between-class variance)."""
    counts, edges = np.histogram(values.astype(np.float64), bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_low = sum_low / weight_low
        mean_high = (sum_low[-1] - sum_low) / weight_high
        between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[1:][int(np.nanargmax(between[:-1]))])
