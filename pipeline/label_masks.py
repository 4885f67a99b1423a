"""One label map from several binary mask files (one file per structure: SAM-Med3D, TotalSegmentator).

The catalog stores one label map per image, so voxels claimed by two masks must go to one of them.
Rule: the SMALLER mask (fewer voxels) wins the shared voxels; equal sizes go to the lower label value.
A lesion or cyst drawn inside its organ is then kept whole and the organ gets the hole, which is how a
multi-label map of the same structures (nnU-Net, Decathlon) would have drawn it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pipeline.io import UnreadableFileError, read_header, read_label_map


@dataclass
class MergedLabels:
    """`image`: the label map (the keys of `mask_paths`; 0 = background); `overlap_voxels`: voxels claimed twice."""

    image: sitk.Image
    overlap_voxels: int


def merge_binary_masks(mask_paths: dict[int, Path], tolerance_mm: float = 1e-3) -> MergedLabels:
    """Merge binary masks (label value -> file, nonzero = inside) lying on one voxel grid into a label map.

    Raises `UnreadableFileError` when a file cannot be read, holds NaN, or lies on another grid than the
    first mask (size, spacing, origin or direction differ beyond `tolerance_mm`).
    """
    if not mask_paths:
        raise UnreadableFileError("no label mask files")
    values = sorted(mask_paths)
    reference = read_header(mask_paths[values[0]])
    for value in values[1:]:
        header = read_header(mask_paths[value])
        _require_same_grid(reference, header, mask_paths[values[0]], mask_paths[value], tolerance_mm)
    # Voxel indices, not boolean volumes: a hundred whole-body masks would not fit in memory as volumes.
    inside: dict[int, np.ndarray] = {}
    for value in values:
        mask = read_label_map(mask_paths[value])  # held while its array view is in use
        array = sitk.GetArrayViewFromImage(mask)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise UnreadableFileError(f"label mask {mask_paths[value].name} contains NaN or infinite values")
        inside[value] = np.flatnonzero(array)
    dtype = np.uint8 if values[-1] < 256 else np.uint16 if values[-1] < 65536 else np.int32
    label = np.zeros(reference.size_xyz[::-1], dtype=dtype)
    flat = label.reshape(-1)
    overlap = 0
    # Paint the largest first so smaller masks overwrite it; among equal sizes the lower value paints last.
    for value in sorted(values, key=lambda v: (-len(inside[v]), -v)):
        overlap += int(np.count_nonzero(flat[inside[value]]))
        flat[inside[value]] = value
    image = sitk.GetImageFromArray(label)
    image.SetSpacing(reference.spacing_xyz)
    image.SetOrigin(reference.origin_xyz)
    image.SetDirection(reference.direction)
    return MergedLabels(image=image, overlap_voxels=overlap)


def _require_same_grid(reference, header, reference_path: Path, path: Path, tolerance_mm: float) -> None:
    same = (
        header.dimension == reference.dimension == 3
        and header.size_xyz == reference.size_xyz
        and np.allclose(header.spacing_xyz, reference.spacing_xyz, atol=tolerance_mm)
        and np.allclose(header.origin_xyz, reference.origin_xyz, atol=tolerance_mm)
        and np.allclose(header.direction, reference.direction, atol=1e-4)
    )
    if not same:
        raise UnreadableFileError(f"label masks {reference_path.name} and {path.name} lie on different voxel grids")
