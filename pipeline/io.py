"""Reading images and label maps with SimpleITK (NIfTI, NRRD, MHA, anything ITK reads, DICOM series).

Geometry follows SimpleITK: sizes, spacings and origins in (x, y, z) order, world coordinates in mm in
the LPS frame (+x = patient's left, +y = posterior, +z = superior), direction as 9 row-major cosines.
Arrays returned by `read_volume` are NumPy arrays in (z, y, x) index order.

An image path may be a folder holding one DICOM series (`pipeline.importers.dicom`), and a channel may
be one volume of a 4D file (`component`: index along the 4th dimension, the Decathlon's channel axis).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path

import nibabel
import numpy as np
import SimpleITK as sitk
from zlib_ng import gzip_ng


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


def read_header(path: str | Path, component: int | None = None) -> HeaderInfo:
    """Header-only read. Raises `UnreadableFileError` with the reader's message for a bad file.

    `path` may be a DICOM series folder. With `component`, the header is that of the 3D volume at this
    index of the 4D file's 4th dimension.
    """
    path = Path(path)
    if path.is_dir():
        return _dicom_series_header(path)
    _require_file(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise UnreadableFileError(f"cannot read header of {path.name}: {_first_line(error)}") from error
    header = HeaderInfo(
        path=str(path),
        dimension=reader.GetDimension(),
        size_xyz=tuple(int(v) for v in reader.GetSize()),
        spacing_xyz=tuple(float(v) for v in reader.GetSpacing()),
        origin_xyz=tuple(float(v) for v in reader.GetOrigin()),
        direction=tuple(float(v) for v in reader.GetDirection()),
        components=reader.GetNumberOfComponents(),
        pixel_type=sitk.GetPixelIDValueAsString(reader.GetPixelID()),
    )
    return header if component is None else _component_header(header, component)


def _check_component(name: str, dimension: int, components: int, size: tuple[int, ...], component: int) -> None:
    if dimension != 4 or components != 1:
        raise UnreadableFileError(
            f"{name} is {dimension}D with {components} components per voxel; "
            f"channel {component} was expected along the 4th dimension of a 4D file"
        )
    if not 0 <= component < size[3]:
        raise UnreadableFileError(f"{name} holds {size[3]} volumes; channel {component} is not one of them")


def _component_header(header: HeaderInfo, component: int) -> HeaderInfo:
    """The 3D header of one volume of a 4D file: the first three axes of its geometry."""
    _check_component(Path(header.path).name, header.dimension, header.components, header.size_xyz, component)
    direction = np.asarray(header.direction).reshape(4, 4)[:3, :3]
    return HeaderInfo(
        path=header.path,
        dimension=3,
        size_xyz=header.size_xyz[:3],
        spacing_xyz=header.spacing_xyz[:3],
        origin_xyz=header.origin_xyz[:3],
        direction=tuple(float(v) for v in direction.ravel()),
        components=1,
        pixel_type=header.pixel_type,
    )


def read_volume(path: str | Path, component: int | None = None) -> sitk.Image:
    """Full read of a scalar 3D image (or DICOM series folder, or one `component` of a 4D file).

    Raises `UnreadableFileError` (truncated gzip, bad header...).
    """
    path = Path(path)
    if path.is_dir():
        return _read_dicom_series(path)
    _require_file(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise UnreadableFileError(f"cannot read {path.name}: {_first_line(error)}") from error
    if path.name.endswith(".nii.gz"):
        voxel_bytes = image.GetNumberOfPixels() * image.GetNumberOfComponentsPerPixel() * image.GetSizeOfPixelComponent()
        _check_nifti_gzip_complete(path, voxel_bytes)
    if component is None:
        return image
    _check_component(path.name, image.GetDimension(), image.GetNumberOfComponentsPerPixel(), image.GetSize(), component)
    size = list(image.GetSize())
    size[3] = 0  # a zero extent along an axis makes Extract drop that axis
    return sitk.Extract(image, size=size, index=[0, 0, 0, component])


def dicom_series_files(folder: str | Path) -> list[str]:
    """The files of the one DICOM series in `folder`, sorted by slice position (GDCM's order)."""
    folder = Path(folder)
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise UnreadableFileError(f"no DICOM series in {folder.name}/")
    if len(series) > 1:
        raise UnreadableFileError(f"{len(series)} DICOM series in {folder.name}/; expected one per image folder")
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))


def _dicom_series_header(folder: Path) -> HeaderInfo:
    """Series geometry from the first and last slices' headers (no pixel data read), as ImageSeriesReader
    builds it: origin of the first slice, slice spacing = distance of the outer slices / (n - 1)."""
    files = dicom_series_files(folder)
    first, last = read_header(files[0]), read_header(files[-1])
    if len(files) == 1:  # a multi-frame file holds the whole volume
        return replace(first, path=str(folder))
    if first.size_xyz[2] != 1 or last.size_xyz[:2] != first.size_xyz[:2]:
        raise UnreadableFileError(f"DICOM series in {folder.name}/ does not consist of single 2D slices of one size")
    spacing_z = float(np.linalg.norm(np.subtract(last.origin_xyz, first.origin_xyz))) / (len(files) - 1)
    return HeaderInfo(
        path=str(folder),
        dimension=3,
        size_xyz=(first.size_xyz[0], first.size_xyz[1], len(files)),
        spacing_xyz=(first.spacing_xyz[0], first.spacing_xyz[1], spacing_z),
        origin_xyz=first.origin_xyz,
        direction=first.direction,
        components=first.components,
        pixel_type=first.pixel_type,
    )


def _read_dicom_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(dicom_series_files(folder))
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise UnreadableFileError(f"cannot read the DICOM series in {folder.name}/: {_first_line(error)}") from error


def read_label_map(path: str | Path, header: HeaderInfo | None = None) -> sitk.Image:
    """Full read of a label map. Float NIfTI label maps are decoded with nibabel's header: ITK's NIfTI reader
    turns NaN voxels into 0 without a word, and a label map with NaN must be caught, not silently repaired.
    `header`: the file's `read_header` result when the caller has it already."""
    path = Path(path)
    header = header or read_header(path)
    if not (path.name.endswith((".nii", ".nii.gz")) and "float" in header.pixel_type and header.dimension == 3):
        return read_volume(path)
    try:
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            # zlib-ng: 3-5x faster than the zlib that gzip/nibabel use (a BraTS label map: 66 kB -> 35 MB)
            raw = gzip_ng.decompress(raw)
        stream = io.BytesIO(raw)
        version = _nifti_version(raw)
        if version is None:
            raise ValueError("not a NIfTI header")
        nifti = (nibabel.Nifti1Header if version[0] == 348 else nibabel.Nifti2Header).from_fileobj(stream)
        data = np.asanyarray(nifti.data_from_fileobj(stream))
    except Exception as error:  # gzip and nibabel raise several types for a damaged file; all mean unreadable
        raise UnreadableFileError(f"cannot read {path.name}: {error}") from error
    # NIfTI voxel (i, j, k) is ITK index (x, y, z), so the transposed array is in (z, y, x) order.
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.T))
    image.SetSpacing(header.spacing_xyz)
    image.SetOrigin(header.origin_xyz)
    image.SetDirection(header.direction)
    return image


def _nifti_version(head: bytes) -> tuple[int, str] | None:
    """(sizeof_hdr, struct byte order) of the bytes a NIfTI file starts with: 348 for NIfTI-1, 540 for
    NIfTI-2; None when they are no NIfTI header."""
    for order in "<>":
        if len(head) >= 4 and struct.unpack(f"{order}i", head[:4])[0] in (348, 540):
            return struct.unpack(f"{order}i", head[:4])[0], order
    return None


def _check_nifti_gzip_complete(path: Path, voxel_bytes: int) -> None:
    """ITK reads a truncated .nii.gz without complaint and fills the missing voxels with zeros. A complete
    gzip stream ends with the uncompressed length (mod 2^32), which for NIfTI is the voxel offset plus the
    voxel bytes: comparing the two catches truncation without decompressing the file a second time."""
    with gzip.open(path, "rb") as stream:
        head = stream.read(176)
    version = _nifti_version(head)
    if version is None:
        raise UnreadableFileError(f"cannot read {path.name}: not a NIfTI header")
    size, order = version
    if size == 348:
        offset = int(struct.unpack(f"{order}f", head[108:112])[0])
    else:
        offset = struct.unpack(f"{order}q", head[168:176])[0]
    with open(path, "rb") as raw:
        raw.seek(-4, os.SEEK_END)
        stored_length = struct.unpack("<I", raw.read(4))[0]
    if stored_length != (offset + voxel_bytes) % 2**32:
        raise UnreadableFileError(f"cannot read {path.name}: truncated or corrupt gzip stream")


def sha256_of(path: str | Path) -> str:
    """sha256 of a file; of a folder (a DICOM series), sha256 over its files' relative names and sha256s."""
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for member in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{member.relative_to(path).as_posix()}:{sha256_of(member)}\n".encode())
        return digest.hexdigest()
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _first_line(error: Exception) -> str:
    """ITK errors span many lines of C++ context; the useful sentence is the last non-empty one."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
