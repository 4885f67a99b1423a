"""The published SAM-Med3D input convention: which 128^3 crop a published network sees, and the way back.

Networks loaded from published weights (``Sam3D.convention == "published"``) were trained and are run on
crops prepared like this (the published inference preprocessing):

1. the image is resampled to 1.5 mm on a grid of ``ceil(size * spacing / 1.5)`` voxels per axis, in its own
   direction, whose first voxel sits at the source's continuous index ``0.5 * (1.5 / spacing - 1)``
   (the outer faces of both grids coincide);
2. that grid is reoriented to canonical RAS: array axis 0 increases towards the patient's Right, 1 towards
   Anterior, 2 towards Superior: the torch order (x, y, z), not SimpleITK's (z, y, x);
3. a 128^3 window is cut from it (zero outside), centred on the bounding box of the target (the centre
   rounded down to a voxel) or, without a target, on a click;
4. the crop is z-scored with the mean and standard deviation of its voxels > 0, applied to all voxels,
   with no CT clipping;
5. the first click goes with an all-zero mask prompt (1, 1, 32, 32, 32), not the learned no-mask embedding.

Here the crop is a :class:`model.evaluation.crop.PatchGrid` whose array axes are (R, A, S) (its SimpleITK
direction has the R axis as its third column), so sampling an image onto it, mapping clicks between it and
world coordinates, and pasting a prediction back into any image use the same code as our own crops. The
crop is sampled in one linear resampling straight from the source image at the points step 1-2 would
produce: the same points, one interpolation. Networks trained here ("native") use our own crops instead
(image direction, (z, y, x), per-modality normalisation).
"""

from __future__ import annotations

import itertools

import numpy as np
import SimpleITK as sitk
import torch

from model.evaluation.crop import PATCH_SIZE, PATCH_SPACING_MM, PatchGrid
from model.intensity import normalize_intensity
from pipeline.geometry import Geometry

# The modality name under which model.intensity z-scores over voxels > 0 without clipping, as the published
# code does (any name but "CT" would do; this one says why).
PUBLISHED_MODALITY = "published"
# World (LPS) unit vectors of the RAS axes R, A, S.
_RAS_IN_LPS = np.diag([-1.0, -1.0, 1.0])


def ras_grid(source: Geometry, size_xyz, spacing_mm: float = PATCH_SPACING_MM) -> tuple[Geometry, tuple[int, ...]]:
    """The published resampling grid of an image (steps 1-2 of the module docstring).

    Args:
        source (Geometry): the image's grid.
        size_xyz (sequence of int): the image's SimpleITK size (x, y, z).
        spacing_mm (float): the published grid's isotropic spacing.

    Returns:
        grid (Geometry): array axes (R, A, S); SimpleITK direction columns (S, A, R) in LPS world.
        shape (tuple of int): the grid's array shape (R, A, S).
    """
    spacing = np.asarray(source.spacing_xyz, dtype=float)
    counts = np.ceil(np.asarray(size_xyz, dtype=float) * spacing / spacing_mm - 1e-6).astype(int)
    first = 0.5 * (spacing_mm / spacing - 1.0)  # continuous source index (x, y, z) of the first voxel
    cosines = np.asarray(source.direction, dtype=float).reshape(3, 3)  # columns: source axes in LPS
    in_ras = _RAS_IN_LPS @ cosines  # rows R, A, S; columns the source axes
    # The source axis closest to each RAS axis, and whether it points the same way.
    axes = max(itertools.permutations(range(3)), key=lambda p: sum(abs(in_ras[r, p[r]]) for r in range(3)))
    signs = [1.0 if in_ras[r, axes[r]] > 0 else -1.0 for r in range(3)]
    start_xyz = first.copy()
    vectors = []
    for r in range(3):
        a = axes[r]
        step = spacing_mm / spacing[a]  # one resampled voxel in source voxels along axis a
        if signs[r] < 0:
            start_xyz[a] = first[a] + (counts[a] - 1) * step
        vectors.append(signs[r] * cosines[:, a])
    origin = source.index_zyx_to_world(start_xyz[::-1])
    direction = np.stack([vectors[2], vectors[1], vectors[0]], axis=1)  # columns: SimpleITK i, j, k = S, A, R
    grid = Geometry((float(spacing_mm),) * 3, tuple(origin.tolist()), tuple(direction.ravel().tolist()))
    return grid, tuple(int(counts[axes[r]]) for r in range(3))


def crop_start(low, high, size: int = PATCH_SIZE) -> np.ndarray:
    """First voxel of a `size` window centred on the box [low, high] (inclusive voxel indices), per axis.

    The box centre (low + high + 1) / 2 is rounded down to a voxel; the window starts `size` / 2 before it.
    """
    low, high = np.asarray(low, dtype=int), np.asarray(high, dtype=int)
    return (low + high + 1) // 2 - size // 2


def target_crop(image: sitk.Image, target: sitk.Image, size: int = PATCH_SIZE) -> PatchGrid:
    """The published crop around a target (steps 1-3): a PatchGrid with array axes (R, A, S).

    Args:
        image (sitk.Image): the image (only its geometry is used).
        target (sitk.Image): the target mask (non-zero inside) on any grid, usually the image's.
        size (int): crop edge in voxels.

    Raises:
        ValueError: the target is empty on the published grid.
    """
    grid, shape = ras_grid(Geometry.of(image), image.GetSize())
    # The target on the published grid (nearest neighbour, as the published code resamples labels).
    on_grid = sitk.Resample(
        sitk.Cast(target != 0, sitk.sitkUInt8), shape[::-1], sitk.Transform(), sitk.sitkNearestNeighbor,
        grid.origin_xyz, grid.spacing_xyz, grid.direction, 0, sitk.sitkUInt8,
    )
    voxels = np.argwhere(sitk.GetArrayViewFromImage(on_grid))
    if not len(voxels):
        raise ValueError("the target is empty on the published 1.5 mm grid")
    return PatchGrid.from_window(grid, crop_start(voxels.min(axis=0), voxels.max(axis=0), size), size)


def click_crop(image: sitk.Image, click_world_xyz, size: int = PATCH_SIZE) -> PatchGrid:
    """The published-convention crop whose centre voxel (index size // 2) is the grid voxel nearest a click.

    Args:
        image (sitk.Image): the image (only its geometry is used).
        click_world_xyz (array-like): (3,) LPS world mm.
    """
    grid, _ = ras_grid(Geometry.of(image), image.GetSize())
    voxel = np.rint(grid.world_to_index_zyx(np.asarray(click_world_xyz, dtype=float))).astype(int)
    return PatchGrid.from_window(grid, voxel - size // 2, size)


def zscore_foreground(crop: np.ndarray) -> np.ndarray:
    """Step 4: (S, S, S) crop z-scored with the mean and std of its voxels > 0 (no clipping), float32."""
    return normalize_intensity(crop, modality=PUBLISHED_MODALITY)


def sample_crop(image: sitk.Image, grid: PatchGrid) -> np.ndarray:
    """Steps 1-4 on a crop grid: (S, S, S) float32, axes (R, A, S), zero outside the image before the z-score."""
    return zscore_foreground(grid.sample(image, sitk.sitkLinear, 0.0))


def first_mask_prompt(model, batch: int = 1, device=None) -> torch.Tensor | None:
    """The mask prompt of a network's first decode.

    Step 5 for a network of the published convention: the all-zero low-resolution mask, (batch, 1, S/4, S/4,
    S/4) for its input edge S; None (the learned no-mask embedding) for a network trained here, or any model
    without a ``convention``.
    """
    if getattr(model, "convention", "native") != "published":
        return None
    edge = model.image_size // 4
    return torch.zeros(batch, 1, edge, edge, edge, device=device)


def ras_order(direction) -> tuple[tuple[int, int, int], tuple[int, ...]]:
    """How to turn a (z, y, x) array of a grid with these direction cosines into (R, A, S) order.

    Args:
        direction (sequence of float): 9 row-major SimpleITK direction cosines.

    Returns:
        order (tuple of 3 int): array axis that becomes axis R, A, S (for ``np.transpose``).
        flips (tuple of int): axes of the transposed array to reverse.
    """
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    in_ras = _RAS_IN_LPS @ matrix[:, ::-1]  # rows R, A, S; columns array axes 0, 1, 2
    order = max(itertools.permutations(range(3)), key=lambda p: sum(abs(in_ras[r, p[r]]) for r in range(3)))
    return tuple(order), tuple(r for r in range(3) if in_ras[r, order[r]] < 0)


def ras_tensor(volume: torch.Tensor, order, flips) -> torch.Tensor:
    """A (C, D, H, W) tensor turned to (R, A, S) order with :func:`ras_order`'s result."""
    volume = volume.permute(0, *(1 + a for a in order))
    return volume.flip([1 + r for r in flips]) if flips else volume


def ras_view(arrays: list[np.ndarray], grid: PatchGrid) -> tuple[list[np.ndarray], PatchGrid]:
    """Our crop (array axes along its image's axes) turned to the published (R, A, S) axis order, exactly.

    Only permutes and flips axes, so no voxel is interpolated; for an oblique image each axis goes to the
    RAS axis it is closest to (as the published reorientation does).

    Args:
        arrays (list of ndarray): (S, S, S) arrays on `grid` (image, target, label map, ...).
        grid (PatchGrid): their grid.

    Returns:
        (the arrays as (R, A, S) views, the PatchGrid of those views).
    """
    order, flips = ras_order(grid.geometry.direction)
    direction = np.asarray(grid.geometry.direction, dtype=float).reshape(3, 3)
    vectors = [direction[:, 2 - a] for a in range(3)]  # LPS world direction of array axis a
    origin = np.asarray(grid.geometry.origin_xyz, dtype=float)
    spacing = np.asarray(grid.geometry.spacing_xyz, dtype=float)[::-1]  # per array axis
    new_vectors = []
    for r in range(3):
        a = order[r]
        if r in flips:  # the axis runs against R/A/S: start from its last voxel and step backwards
            origin = origin + vectors[a] * spacing[a] * (grid.size - 1)
            new_vectors.append(-vectors[a])
        else:
            new_vectors.append(vectors[a])
    views = []
    for array in arrays:
        view = np.transpose(array, order)
        views.append(np.flip(view, axis=flips) if flips else view)
    new_spacing = tuple(float(spacing[order[r]]) for r in (2, 1, 0))  # SimpleITK (i, j, k) = (S, A, R)
    new_direction = np.stack([new_vectors[2], new_vectors[1], new_vectors[0]], axis=1)
    geometry = Geometry(new_spacing, tuple(origin.tolist()), tuple(new_direction.ravel().tolist()))
    return views, PatchGrid(geometry, grid.size)
