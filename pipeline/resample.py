"""Step 5: resample to the target spacing (linear for images, nearest for label maps).

The new grid keeps the direction and covers the same physical box as the source: its first voxel
centre moves by half the spacing difference, so the outer faces of the volume stay where they were.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from pipeline.geometry import Geometry


def target_grid(image: sitk.Image, spacing_xyz: tuple[float, float, float]) -> tuple[tuple[int, ...], Geometry]:
    """Size (x, y, z) and geometry of the resampled grid for `image` at `spacing_xyz` mm."""
    source = Geometry.of(image)
    old = np.asarray(source.spacing_xyz)
    new = np.asarray(spacing_xyz, dtype=float)
    size = np.maximum(1, np.round(np.asarray(image.GetSize()) * old / new)).astype(int)
    direction = np.asarray(source.direction).reshape(3, 3)
    origin = np.asarray(source.origin_xyz) + direction @ ((new - old) / 2)
    return tuple(int(v) for v in size), Geometry(tuple(new.tolist()), tuple(origin.tolist()), source.direction)


def resample(image: sitk.Image, spacing_xyz: tuple[float, float, float], *, is_label: bool) -> sitk.Image:
    """Resample a scalar 3D image onto the grid of `target_grid`.

    Images: linear interpolation, output float32, outside value = the image minimum.
    Label maps: nearest neighbour, same pixel type, outside value 0.
    """
    size, geometry = target_grid(image, spacing_xyz)
    if is_label:
        interpolator, default, pixel = sitk.sitkNearestNeighbor, 0.0, image.GetPixelID()
    else:
        interpolator, pixel = sitk.sitkLinear, sitk.sitkFloat32
        default = float(sitk.GetArrayViewFromImage(image).min())
    return sitk.Resample(
        image,
        size,
        sitk.Transform(),
        interpolator,
        geometry.origin_xyz,
        geometry.spacing_xyz,
        geometry.direction,
        default,
        pixel,
    )


def storage_array(resampled: sitk.Image, source_is_integer: bool) -> np.ndarray:
    """(z, y, x) array to store: int16 when the source held integers (CT in HU) and the values fit, else float32."""
    array = sitk.GetArrayFromImage(resampled)
    if source_is_integer:
        rounded = np.rint(array)
        if rounded.size == 0 or (rounded.min() >= np.iinfo(np.int16).min and rounded.max() <= np.iinfo(np.int16).max):
            return rounded.astype(np.int16)
    return array.astype(np.float32, copy=False)
