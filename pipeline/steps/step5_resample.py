"""Step 5: resample to the target spacing (linear for images, nearest for label maps).

The new grid keeps the direction and covers the same physical box as the source: its first voxel
centre moves by half the spacing difference, so the outer faces of the volume stay where they were.
Because the direction is kept, the mapping is separable per array axis: output index i along an axis
samples the source at continuous index (i + 0.5) * t / s - 0.5 (t: target, s: source spacing). That is
what ITK's resampler computes for this grid; doing it per axis (torch for linear, NumPy gathers for
nearest) gives the same values several times faster.
"""

from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass

import cc3d
import numpy as np
import SimpleITK as sitk
import torch

from pipeline.geometry import Geometry


@dataclass(frozen=True)
class ResampledGrid:
    """Target grid of a source grid: `shape_zyx`, `geometry`, and per-axis scale factors s / t (z, y, x)."""

    shape_zyx: tuple[int, int, int]
    geometry: Geometry
    factors_zyx: tuple[float, float, float]

    def nearest_indices(self, axis: int, source_length: int) -> np.ndarray:
        """Source index sampled by each output index along `axis` (nearest neighbour, ITK's rounding)."""
        # floor(x + 0.5) of x = (i + 0.5) / factor - 0.5: ITK's round-half-up nearest neighbour.
        source = np.floor((np.arange(self.shape_zyx[axis]) + 0.5) / self.factors_zyx[axis]).astype(np.intp)
        return np.clip(source, 0, source_length - 1)


def target_grid(source: Geometry, shape_zyx: tuple[int, ...], spacing_xyz: tuple[float, float, float]) -> ResampledGrid:
    """The resampled grid of a (z, y, x) source grid at `spacing_xyz` mm."""
    old = np.asarray(source.spacing_xyz)
    new = np.asarray(spacing_xyz, dtype=float)
    size_xyz = np.maximum(1, np.round(np.asarray(shape_zyx[::-1]) * old / new)).astype(int)
    direction = np.asarray(source.direction).reshape(3, 3)
    origin = np.asarray(source.origin_xyz) + direction @ ((new - old) / 2)
    geometry = Geometry(tuple(new.tolist()), tuple(origin.tolist()), source.direction)
    factors = tuple(float(v) for v in (old / new)[::-1])
    return ResampledGrid(tuple(int(v) for v in size_xyz[::-1]), geometry, factors)


def resample_labels(array: np.ndarray, grid: ResampledGrid) -> np.ndarray:
    """Nearest-neighbour resampling of a (z, y, x) label map onto `grid`."""
    for axis in range(3):
        array = np.take(array, grid.nearest_indices(axis, array.shape[axis]), axis=axis)
    return np.ascontiguousarray(array)


def resample_image(array: np.ndarray, grid: ResampledGrid, out: torch.Tensor | None = None) -> np.ndarray:
    """Trilinear resampling of a (z, y, x) image onto `grid`; float32 out. Samples up to half a voxel past
    the last voxel centre repeat the edge voxel, as ITK does.

    torch's scale factors fix the coordinate mapping and yield floor(n * factor) voxels, so the end is
    padded with edge values until that reaches the wanted size, then cropped. `out`: a float32 buffer of at
    least `output_voxels(...)` voxels to write into (see `ScratchOutputs`); the result is then a view of it.
    """
    shape, factors = grid.shape_zyx, grid.factors_zyx
    pad, size = _padding_and_output_size(array.shape, grid)
    tensor = torch.from_numpy(np.array(array, dtype=np.float32))[None, None]
    if any(pad):
        tensor = torch.nn.functional.pad(tensor, (0, pad[2], 0, pad[1], 0, pad[0]), mode="replicate")
    if out is None:
        result = torch.nn.functional.interpolate(
            tensor, scale_factor=factors, mode="trilinear", align_corners=False, recompute_scale_factor=False
        )
    else:
        result = out[: math.prod(size)].view(1, 1, *size)
        torch.ops.aten.upsample_trilinear3d.out(tensor, size, False, *factors, out=result)
    return result[0, 0, : shape[0], : shape[1], : shape[2]].numpy()


class ScratchOutputs:
    """Reusable float32 buffers for `resample_image`'s output, shared by the threads of a process.

    Upsampling a small CT to 1.5 mm writes tens of MB; fresh memory costs a page fault per 4 KiB, a third
    of the resampling time here. Keeps at most `keep` buffers (the largest) once given back, none larger
    than `max_bytes` (so a process does not hold on to the memory of an unusually large image).
    """

    def __init__(self, keep: int = 2, max_bytes: int = 256 << 20) -> None:
        self.keep = keep
        self.max_bytes = max_bytes
        self._free: list[torch.Tensor] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def buffer(self, voxels: int):
        """A 1-D float32 tensor of at least `voxels` elements, returned to the pool on exit."""
        with self._lock:
            fitting = [b for b in self._free if b.numel() >= voxels]
            chosen = min(fitting, key=torch.Tensor.numel) if fitting else None
            if chosen is not None:
                self._free = [b for b in self._free if b is not chosen]
        if chosen is None:
            chosen = torch.empty(voxels, dtype=torch.float32)
        try:
            yield chosen
        finally:
            with self._lock:
                if chosen.numel() * chosen.element_size() <= self.max_bytes:
                    self._free.append(chosen)
                self._free.sort(key=torch.Tensor.numel)
                del self._free[: max(0, len(self._free) - self.keep)]


def output_voxels(array_shape: tuple[int, ...], grid: ResampledGrid) -> int:
    """Voxels `resample_image` computes (before cropping) for a source of `array_shape` onto `grid`."""
    return math.prod(_padding_and_output_size(array_shape, grid)[1])


def _padding_and_output_size(array_shape: tuple[int, ...], grid: ResampledGrid) -> tuple[list[int], list[int]]:
    """Edge voxels `resample_image` appends per (z, y, x) axis, and the size torch then computes."""
    pad = [0, 0, 0]
    for axis in range(3):
        while math.floor((array_shape[axis] + pad[axis]) * grid.factors_zyx[axis]) < grid.shape_zyx[axis]:
            pad[axis] += 1
    return pad, [math.floor((n + p) * f) for n, p, f in zip(array_shape, pad, grid.factors_zyx)]


def resample(image: sitk.Image, spacing_xyz: tuple[float, float, float], *, is_label: bool) -> sitk.Image:
    """SimpleITK convenience wrapper of `resample_labels` / `resample_image`."""
    array = sitk.GetArrayViewFromImage(image)
    grid = target_grid(Geometry.of(image), array.shape, spacing_xyz)
    out = resample_labels(np.asarray(array), grid) if is_label else resample_image(array, grid)
    result = sitk.GetImageFromArray(out)
    result.SetSpacing(grid.geometry.spacing_xyz)
    result.SetOrigin(grid.geometry.origin_xyz)
    result.SetDirection(grid.geometry.direction)
    return result


def resample_labels_with_statistics(label_map: np.ndarray, grid: ResampledGrid, n_values: int):
    """`resample_labels` plus the voxel count and inclusive box [z0, z1, y0, y1, x0, x1] of values 0..n_values
    in the resampled map, computed on the smaller of the two grids.

    Nearest neighbour drops the source indices no output voxel samples and repeats each other one over a
    run of consecutive output indices. So the output is the reduced source (dropped indices removed) with
    each index repeated; counts are reduced-grid counts weighted by run lengths, and a box maps to the span
    of the runs of its first and last index. Returns (resampled (z, y, x), counts (n+1,), boxes (n+1, 6)).
    """
    reduced = label_map
    runs = []
    for axis in range(3):
        indices = grid.nearest_indices(axis, label_map.shape[axis])
        hit, first, lengths = np.unique(indices, return_index=True, return_counts=True)
        if len(hit) < reduced.shape[axis]:
            reduced = np.take(reduced, hit, axis=axis)
        runs.append((first, first + lengths - 1, lengths))
    reduced = np.ascontiguousarray(reduced)
    stats = cc3d.statistics(reduced, no_slice_conversion=True)
    if all((lengths == lengths[0]).all() for _, _, lengths in runs):
        # Every voxel repeated the same number of times (1 when downsampling, 2 from 3 mm to 1.5 mm):
        # the counts are the reduced grid's, scaled.
        counts = np.zeros(n_values + 1, dtype=np.int64)
        found = stats["voxel_counts"][: n_values + 1]
        counts[: len(found)] = found * int(np.prod([int(lengths[0]) for _, _, lengths in runs]))
    else:
        weights = runs[0][2][:, None, None].astype(np.int64) * runs[1][2][None, :, None] * runs[2][2][None, None, :]
        counts = np.bincount(reduced.ravel(), weights=weights.ravel(), minlength=n_values + 1)
    resampled = reduced
    for axis, (_, _, lengths) in enumerate(runs):
        if (lengths > 1).any():
            resampled = np.repeat(resampled, lengths, axis=axis)
    resampled = np.ascontiguousarray(resampled)
    boxes = np.zeros((n_values + 1, 6), dtype=np.int64)
    present = np.flatnonzero(stats["voxel_counts"][: n_values + 1])  # absent values have sentinel boxes
    reduced_boxes = stats["bounding_boxes"][present].astype(np.intp)
    for axis in range(3):
        starts, ends, _ = runs[axis]
        boxes[present, 2 * axis] = starts[reduced_boxes[:, 2 * axis]]
        boxes[present, 2 * axis + 1] = ends[reduced_boxes[:, 2 * axis + 1]]
    return resampled, counts[: n_values + 1].astype(np.int64), boxes


def storage_dtype(array: np.ndarray, source_is_integer: bool) -> np.dtype:
    """dtype to store a resampled (z, y, x) image in: int16 when the source held integers (CT in HU) and the
    values fit, else float32 (`pipeline.fingerprint.store_and_hash` converts)."""
    if source_is_integer and array.size:
        # torch.aminmax: one multi-threaded pass instead of NumPy's two single-threaded ones.
        low, high = (float(v) for v in torch.aminmax(torch.from_numpy(np.asarray(array, dtype=np.float32))))
        if low >= np.iinfo(np.int16).min and high <= np.iinfo(np.int16).max:
            return np.dtype(np.int16)
    return np.dtype(np.float32)

