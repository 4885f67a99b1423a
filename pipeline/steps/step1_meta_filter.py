"""Step 1: the meta filter. Decides from headers alone (no voxel read) whether an image is usable."""

from __future__ import annotations

import math

import numpy as np

from pipeline.config import CurationConfig
from pipeline.io import HeaderInfo


def check_image_header(image: HeaderInfo, config: CurationConfig) -> str | None:
    """Reason to reject an image from its header, or None when it passes.

    Rules (paper section 3.2): physical volume >= `min_volume_cm3` and physical extent along every axis
    >= `min_extent_mm`; plus what makes an image unusable at all: not 3D, vector pixels, bad spacing.
    """
    if image.dimension == 4 or (image.dimension == 3 and image.components > 1):
        return f"4D or multi-component image ({image.dimension}D, {image.components} components per voxel)"
    if image.dimension != 3:
        return f"image is {image.dimension}D, expected 3D"
    if not all(math.isfinite(s) and s > 0 for s in image.spacing_xyz):
        return f"non-finite or non-positive spacing {image.spacing_xyz}"
    if not all(math.isfinite(v) for v in image.origin_xyz + image.direction):
        return "non-finite origin or direction in the header"
    extent = image.extent_mm_xyz
    thin = [f"{axis}={value:.1f} mm" for axis, value in zip("xyz", extent) if value < config.min_extent_mm]
    if thin:
        return (
            f"physical extent below {config.min_extent_mm:g} mm along {', '.join(thin)} "
            f"(extent {extent[0]:.1f} x {extent[1]:.1f} x {extent[2]:.1f} mm)"
        )
    if image.volume_cm3 < config.min_volume_cm3:
        return f"physical volume {image.volume_cm3:.3f} cm³ below {config.min_volume_cm3:g} cm³"
    return None


def check_label_matches_image(image: HeaderInfo, label: HeaderInfo, config: CurationConfig) -> str | None:
    """Reason to reject when the label map does not lie on the image's voxel grid, else None."""
    if label.dimension != 3 or label.components != 1:
        return f"label map is not a scalar 3D image ({label.dimension}D, {label.components} components)"
    if label.size_xyz != image.size_xyz:
        return f"image/label size mismatch: image {image.size_xyz}, label {label.size_xyz}"
    tol = config.geometry_tolerance_mm
    spacing_gap = float(np.max(np.abs(np.subtract(image.spacing_xyz, label.spacing_xyz))))
    if spacing_gap > tol:
        return f"image/label spacing mismatch: {image.spacing_xyz} vs {label.spacing_xyz}"
    origin_gap = float(np.max(np.abs(np.subtract(image.origin_xyz, label.origin_xyz))))
    if origin_gap > tol:
        return f"image/label origin mismatch by {origin_gap:.3f} mm"
    direction_gap = float(np.max(np.abs(np.subtract(image.direction, label.direction))))
    if direction_gap > config.direction_tolerance:
        return f"image/label direction mismatch by {direction_gap:.4f}"
    return None
