"""Reading images and label maps with SimpleITK (NIfTI, NRRD, MHA, anything ITK reads).

Geometry follows SimpleITK: sizes, spacings and origins in (x, y, z) order, world coordinates in mm in
the LPS frame (+x = patient's left, +y = posterior, +z = superior), direction as 9 row-major cosines.
Arrays returned by `read_volume` are NumPy arrays in (z, y, x) index order.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import nibabel
import numpy as np
import SimpleITK as sitk


class UnreadableFileError(Exception):
    """A file is missing, truncated, or not an image ITK can read."""


@dataclass(frozen=True)
class HeaderInfo:
    """What `ImageFileReader.ReadImageInformation` tells without reading voxels."""

    path: str
    dimension: int
    size_xyz: tuple[int, ...]
    spacing_xyz: tuple[float, ...]
    origin_xyz: tuple[float, ...]
    direction: tuple[float, ...]
    components: int
    pixel_type: str

    @property
    def extent_mm_xyz(self) -> tuple[float, ...]:
        return tuple(n * s for n, s in zip(self.size_xyz, self.spacing_xyz))

    @property
    def volume_cm3(self) -> float:
        return float(np.prod(self.extent_mm_xyz)) / 1000.0

    @property
    def orientation(self) -> str:
        """Three-letter code of the axes' directions, e.g. "RAS" (ITK convention); "" when not 3D."""
        if self.dimension != 3:
            return ""
        return orientation_code(self.direction)


def orientation_code(direction: tuple[float, ...] | list[float]) -> str:
    """ITK orientation code ("LPS", "RAS", ...) of 3×3 direction cosines (closest axes for oblique ones)."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines([float(d) for d in direction])


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise UnreadableFileError(f"file not found: {path}")


def read_header(path: str | Path) -> HeaderInfo:
    """Header-only read. Raises `UnreadableFileError` with the reader's message for a bad file."""
    path = Path(path)
    _require_file(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise UnreadableFileError(f"cannot read header of {path.name}: {_first_line(error)}") from error
    return HeaderInfo(
        path=str(path),
        dimension=reader.GetDimension(),
        size_xyz=tuple(int(v) for v in reader.GetSize()),
        spacing_xyz=tuple(float(v) for v in reader.GetSpacing()),
        origin_xyz=tuple(float(v) for v in reader.GetOrigin()),
        direction=tuple(float(v) for v in reader.GetDirection()),
        components=reader.GetNumberOfComponents(),
        pixel_type=sitk.GetPixelIDValueAsString(reader.GetPixelID()),
    )


def read_volume(path: str | Path) -> sitk.Image:
    """Full read of a scalar 3D image. Raises `UnreadableFileError` (truncated gzip, bad header...)."""
    path = Path(path)
    _require_file(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise UnreadableFileError(f"cannot read {path.name}: {_first_line(error)}") from error
    if path.name.endswith(".nii.gz"):
        voxel_bytes = image.GetNumberOfPixels() * image.GetNumberOfComponentsPerPixel() * image.GetSizeOfPixelComponent()
        _check_nifti_gzip_complete(path, voxel_bytes)
    return image


def read_label_map(path: str | Path) -> sitk.Image:
    """Full read of a label map. Float NIfTI label maps are read with nibabel: ITK's NIfTI reader turns NaN
    voxels into 0 without a word, and a label map with NaN must be caught, not silently repaired."""
    path = Path(path)
    header = read_header(path)
    if not (path.name.endswith((".nii", ".nii.gz")) and "float" in header.pixel_type and header.dimension == 3):
        return read_volume(path)
    try:
        data = np.asanyarray(nibabel.load(str(path)).dataobj)
    except Exception as error:  # nibabel raises several types for a damaged file; all mean unreadable
        raise UnreadableFileError(f"cannot read {path.name}: {error}") from error
    # NIfTI voxel (i, j, k) is ITK index (x, y, z), so the transposed array is in (z, y, x) order.
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.T))
    image.SetSpacing(header.spacing_xyz)
    image.SetOrigin(header.origin_xyz)
    image.SetDirection(header.direction)
    return image


def _check_nifti_gzip_complete(path: Path, voxel_bytes: int) -> None:
    """ITK reads a truncated .nii.gz without complaint and fills the missing voxels with zeros. A complete
    gzip stream ends with the uncompressed length (mod 2^32), which for NIfTI is the voxel offset plus the
    voxel bytes: comparing the two catches truncation without decompressing the file a second time."""
    with gzip.open(path, "rb") as stream:
        head = stream.read(176)
    if len(head) >= 4 and struct.unpack("<i", head[:4])[0] in (348, 540):
        little = True
    elif len(head) >= 4 and struct.unpack(">i", head[:4])[0] in (348, 540):
        little = False
    else:
        raise UnreadableFileError(f"cannot read {path.name}: not a NIfTI header")
    order = "<" if little else ">"
    if struct.unpack(f"{order}i", head[:4])[0] == 348:
        offset = int(struct.unpack(f"{order}f", head[108:112])[0])
    else:
        offset = struct.unpack(f"{order}q", head[168:176])[0]
    with open(path, "rb") as raw:
        raw.seek(-4, os.SEEK_END)
        stored_length = struct.unpack("<I", raw.read(4))[0]
    if stored_length != (offset + voxel_bytes) % 2**32:
        raise UnreadableFileError(f"cannot read {path.name}: truncated or corrupt gzip stream")


def sha256_of(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _first_line(error: Exception) -> str:
    """ITK errors span many lines of C++ context; the useful sentence is the last non-empty one."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
