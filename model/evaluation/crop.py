"""The network's field of view in world space: a 128^3 patch at 1.5 mm cut from any image, and back.

A :class:`PatchGrid` is the voxel grid of one patch: isotropic spacing (1.5 mm by default), the
direction cosines of the image it is cut from, and an origin chosen so that a given world point
falls on the patch's centre voxel, index ``size // 2`` on every axis (the convention of
``catalog.reader.Catalog.read_patch``, whose first voxel is at ``center - size // 2``). Keeping the
image's own direction means an axis-aligned image (LPS, RAS, LAS, ...) is cut without rotating its
voxels, and an oblique image gives an equally oblique patch.

:meth:`PatchGrid.sample` resamples an image onto the patch; :func:`paste_back` maps a patch
prediction (probabilities or a mask) into the geometry of any reference image with SimpleITK's
resampler, so a prediction lands where its voxels are in the world, whatever the storage
orientation. Arrays are (z, y, x); world coordinates are mm in LPS, (x, y, z); SimpleITK sizes,
spacings and indices are (x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from pipeline.geometry import Geometry

PATCH_SIZE = 128
PATCH_SPACING_MM = 1.5


@dataclass(frozen=True)
class PatchGrid:
    """The voxel grid of a cubic patch: `geometry` (spacing, origin, direction) and edge `size` in voxels."""

    geometry: Geometry
    size: int = PATCH_SIZE

    @classmethod
    def centred_on(
        cls,
        world_xyz,
        direction,
        spacing_mm: float = PATCH_SPACING_MM,
        size: int = PATCH_SIZE,
    ) -> "PatchGrid":
        """The patch whose centre voxel (index size // 2 on each axis) lies at `world_xyz`.

        Args:
            world_xyz (array-like): (3,) LPS world point, mm.
            direction (array-like): 9 row-major direction cosines (SimpleITK layout) of the image.
            spacing_mm (float): isotropic patch spacing.
            size (int): patch edge in voxels.
        """
        matrix = np.asarray(direction, dtype=float).reshape(3, 3) * spacing_mm
        origin = np.asarray(world_xyz, dtype=float) - matrix @ np.full(3, size // 2, dtype=float)
        cosines = tuple(float(d) for d in np.ravel(direction))
        geometry = Geometry((float(spacing_mm),) * 3, tuple(origin.tolist()), cosines)
        return cls(geometry, size)

    @classmethod
    def from_window(cls, grid: Geometry, start_zyx, size: int = PATCH_SIZE) -> "PatchGrid":
        """The sub-grid of `grid` whose first voxel is `grid`'s voxel `start_zyx` (may lie outside it).

        Used for patches read from the catalog's stored arrays with ``Catalog.read_patch``.
        """
        origin = grid.index_zyx_to_world(np.asarray(start_zyx, dtype=float))
        return cls(Geometry(grid.spacing_xyz, tuple(origin.tolist()), grid.direction), size)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.size,) * 3

    def index_zyx_to_world(self, index_zyx) -> np.ndarray:
        """(..., 3) continuous patch (z, y, x) indices -> (..., 3) world (x, y, z) mm."""
        return self.geometry.index_zyx_to_world(index_zyx)

    def world_to_index_zyx(self, world_xyz) -> np.ndarray:
        """(..., 3) world (x, y, z) mm -> (..., 3) continuous patch (z, y, x) indices."""
        return self.geometry.world_to_index_zyx(world_xyz)

    def contains_index(self, index_zyx) -> np.ndarray:
        """(...,) bool: the continuous (z, y, x) indices fall in a patch voxel."""
        index = np.asarray(index_zyx, dtype=float)
        return np.all((index >= -0.5) & (index < self.size - 0.5), axis=-1)

    def sample(
        self,
        image: sitk.Image,
        interpolator: int = sitk.sitkLinear,
        default_value: float = 0.0,
    ) -> np.ndarray:
        """Resample `image` onto the patch.

        Args:
            image (sitk.Image): any 3D scalar image, any direction.
            interpolator (int): a SimpleITK interpolator, e.g. sitk.sitkLinear (intensities,
                probabilities) or sitk.sitkNearestNeighbor (label maps).
            default_value (float): value where the patch leaves the image.

        Returns:
            ndarray (size, size, size) float32, (z, y, x).
        """
        resampled = sitk.Resample(
            sitk.Cast(image, sitk.sitkFloat32),
            (self.size,) * 3,
            sitk.Transform(),
            interpolator,
            self.geometry.origin_xyz,
            self.geometry.spacing_xyz,
            self.geometry.direction,
            float(default_value),
            sitk.sitkFloat32,
        )
        return sitk.GetArrayFromImage(resampled)

    def to_image(self, array: np.ndarray) -> sitk.Image:
        """A (size, size, size) (z, y, x) array as a SimpleITK image with this grid's geometry."""
        if tuple(array.shape) != self.shape:
            raise ValueError(f"expected a {self.shape} patch array, got {tuple(array.shape)}")
        image = sitk.GetImageFromArray(np.ascontiguousarray(array))
        image.SetSpacing(self.geometry.spacing_xyz)
        image.SetOrigin(self.geometry.origin_xyz)
        image.SetDirection(self.geometry.direction)
        return image

    def footprint(self, reference: Geometry, reference_shape_zyx) -> tuple[slice, slice, slice] | None:
        """The (z, y, x) index box of `reference` voxels the patch can reach, clipped to the reference.

        Computed from the patch's 8 corners (half a voxel outside the outer voxel centres) plus one
        voxel of margin for interpolation; None when the patch misses the reference grid.
        """
        edge = np.array([-0.5, self.size - 0.5])
        corners = np.stack(np.meshgrid(edge, edge, edge, indexing="ij"), axis=-1).reshape(-1, 3)
        index = reference.world_to_index_zyx(self.index_zyx_to_world(corners))
        low = np.maximum(np.floor(index.min(axis=0)).astype(int) - 1, 0)
        high = np.minimum(np.ceil(index.max(axis=0)).astype(int) + 2, np.asarray(reference_shape_zyx))
        if np.any(high <= low):
            return None
        return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def paste_back_region(
    values: np.ndarray,
    grid: PatchGrid,
    reference: Geometry,
    region: tuple[slice, slice, slice],
    interpolator: int = sitk.sitkLinear,
) -> np.ndarray:
    """Resample patch `values` onto the `region` of a reference grid and threshold at 0.5.

    Args:
        values (ndarray): (size, size, size) (z, y, x) probabilities in [0, 1] or a 0/1 mask.
        grid (PatchGrid): the patch's grid.
        reference (Geometry): the target grid.
        region (tuple of slices): (z, y, x) index box of `reference` to fill.
        interpolator (int): sitk.sitkLinear (probabilities, smooth boundaries) or sitk.sitkNearestNeighbor.

    Returns:
        ndarray bool shaped like the region; False where the patch does not reach.
    """
    start_zyx = np.array([s.start for s in region], dtype=float)
    size_xyz = [int(s.stop - s.start) for s in region][::-1]
    origin = reference.index_zyx_to_world(start_zyx)
    resampled = sitk.Resample(
        grid.to_image(np.asarray(values, dtype=np.float32)),
        size_xyz,
        sitk.Transform(),
        interpolator,
        tuple(origin.tolist()),
        reference.spacing_xyz,
        reference.direction,
        0.0,
        sitk.sitkFloat32,
    )
    return sitk.GetArrayViewFromImage(resampled) >= 0.5


def paste_back(
    values: np.ndarray,
    grid: PatchGrid,
    reference: sitk.Image,
    interpolator: int = sitk.sitkLinear,
) -> sitk.Image:
    """Map a patch prediction into the geometry of `reference` (any orientation, any spacing).

    Resamples onto the whole reference grid, as the published paste-back does: where a reference voxel lies
    exactly half-way between two patch voxels (a 1 mm grid under a 1.5 mm patch), nearest-neighbour ties then
    fall the same way as there, to the last bit (`paste_back_region`, which resamples only the patch's
    footprint from a shifted origin, breaks about a third of those ties the other way).

    Args:
        values (ndarray): (size, size, size) (z, y, x) probabilities in [0, 1] or a 0/1 mask.
        grid (PatchGrid): the patch's grid.
        reference (sitk.Image): image whose grid the mask is wanted on (only its geometry is used).
        interpolator (int): sitk.sitkLinear (then threshold 0.5) or sitk.sitkNearestNeighbor.

    Returns:
        sitk.Image uint8 0/1 mask with the reference's size, spacing, origin and direction.
    """
    resampled = sitk.Resample(
        grid.to_image(np.asarray(values, dtype=np.float32)), reference, sitk.Transform(), interpolator, 0.0,
        sitk.sitkFloat32,
    )
    image = sitk.GetImageFromArray((sitk.GetArrayViewFromImage(resampled) >= 0.5).astype(np.uint8))
    image.CopyInformation(reference)
    return image
