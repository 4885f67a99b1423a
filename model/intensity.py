"""Per-sample intensity normalisation, as the network expects its input, computed slab by slab.

Every training sample, evaluation crop and inference window is normalised on its own (never over a batch):
CT is clipped to [-1000, 1000] HU, then the intensities are z-scored with the mean and standard deviation of
the voxels above 0 (the foreground of MR, and of CT tissue denser than water), or of all voxels when none is
above 0.

This runs once per sample on a DataLoader worker, where it was most of the work: a whole-volume float32
computation makes a dozen passes over 8 MiB arrays, and two workers on two cores then wait on memory. Here
the volume is taken a few slices at a time, so each slab's float32 copy stays in the core's cache: one pass
gathers the moments, one writes the result, both reading the raw (usually int16) patch.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

CT_WINDOW_HU = (-1000.0, 1000.0)

# Voxels per slab: 512 KiB of float32, well inside one core's L2 cache here (1 MiB).
_SLAB_VOXELS = 1 << 17
# The moments are summed around a reference level taken from a 4x-strided subsample, usually a small
# fraction of a standard deviation from the mean. When it is farther than this many standard deviations (a
# foreground the subsample missed), the variance would lose digits to cancellation (a factor of 1 + 3² at
# this bound), so the moments are summed again around the mean.
_MAX_SHIFT_IN_STD = 3.0

_BUFFERS = threading.local()


def thread_buffer(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """This thread's reusable buffer `name`, replaced when the shape or dtype changes.

    Fresh arrays of a few MiB cost their page faults on every sample, about as much as reading a cached
    patch; a DataLoader worker (or any thread) keeps its buffers from sample to sample instead.
    """
    buffers = _BUFFERS.__dict__.setdefault("buffers", {})
    buffer = buffers.get(name)
    if buffer is None or buffer.shape != tuple(shape) or buffer.dtype != np.dtype(dtype):
        buffer = buffers[name] = np.empty(shape, dtype=dtype)
    return buffer


def normalize_intensity(patch: np.ndarray, modality: str) -> np.ndarray:
    """Z-score one sample's intensities (see the module docstring).

    Args:
        patch (ndarray): (D, H, W) raw stored intensities (CT in HU), any real dtype and strides.
        modality (str): the catalog's modality of the image ("CT", "MR", ...).

    Returns:
        ndarray (D, H, W) float32, a new array.
    """
    out = np.empty(patch.shape, dtype=np.float32)
    normalize_into(patch, modality, torch.from_numpy(out))
    return out


def normalize_into(patch: np.ndarray, modality: str, out: torch.Tensor) -> torch.Tensor:
    """:func:`normalize_intensity` of `patch` written into `out`.

    Args:
        patch (ndarray): (D, H, W) raw stored intensities, any real dtype and strides (a flipped view is
            normalised as the flipped patch).
        modality (str): the catalog's modality ("CT" is clipped first).
        out (Tensor): (D, H, W) contiguous CPU float32, float16 or bfloat16: the float32 result, rounded to
            nearest when narrower.

    Returns:
        Tensor: `out`.
    """
    if patch.ndim != 3 or tuple(out.shape) != patch.shape:
        raise ValueError(
            f"a (D, H, W) patch and an output of its shape are needed, got {patch.shape} and {tuple(out.shape)}"
        )
    if not out.is_contiguous() or out.device.type != "cpu" or not out.dtype.is_floating_point:
        raise ValueError("out must be a contiguous floating-point CPU tensor")
    clip = CT_WINDOW_HU if modality == "CT" else None
    sample = np.asarray(patch[::4, ::4, ::4], dtype=np.float32)
    if clip:
        np.clip(sample, *clip, out=sample)
    foreground = sample[sample > 0]
    reference = float((foreground if foreground.size else sample).mean(dtype=np.float64))
    count, mean, variance = _moments(patch, clip, reference, foreground_only=True)
    foreground_only = count > 0
    if not foreground_only:  # then the subsample has none either, and `reference` is its overall mean
        count, mean, variance = _moments(patch, clip, reference, foreground_only=False)
    if (mean - reference) ** 2 > _MAX_SHIFT_IN_STD**2 * variance:
        count, mean, variance = _moments(patch, clip, mean, foreground_only)
    std = variance**0.5
    shift, scale = np.float32(mean), np.float32(1.0 / (std if std > 0 else 1.0))
    direct = out.dtype == torch.float32
    out_array = out.numpy() if direct else None
    for start, stop, values in _float_slabs(patch, clip):
        target = out_array[start:stop] if direct else values
        np.subtract(values, shift, out=target)
        np.multiply(target, scale, out=target)
        if not direct:
            out[start:stop].copy_(torch.from_numpy(values))
    return out


def _float_slabs(patch: np.ndarray, clip: tuple[float, float] | None):
    """(start, stop, float32 (stop - start, H, W) clipped copy of patch[start:stop]) over the first axis;
    the copy is a reused buffer, valid until the next slab."""
    depth, height, width = patch.shape
    step = max(1, _SLAB_VOXELS // max(1, height * width))
    for start in range(0, depth, step):
        stop = min(depth, start + step)
        values = thread_buffer("slab", (stop - start, height, width), np.float32)
        np.copyto(values, patch[start:stop], casting="unsafe")
        if clip:
            np.clip(values, *clip, out=values)
        yield start, stop, values


def _moments(
    patch: np.ndarray, clip: tuple[float, float] | None, reference: float, foreground_only: bool
) -> tuple[int, float, float]:
    """(voxel count, mean, population variance) of the (clipped) patch, over its voxels above 0 when
    `foreground_only`; sums taken around `reference` (float32 within a slab, float64 across slabs)."""
    count, first, second = 0, 0.0, 0.0
    level = np.float32(reference)
    for _, _, values in _float_slabs(patch, clip):
        deviation = thread_buffer("deviation", values.shape, np.float32)
        np.subtract(values, level, out=deviation)
        if foreground_only:
            inside = np.greater(values, 0, out=thread_buffer("inside", values.shape, np.bool_))
            count += int(np.count_nonzero(inside))
            np.multiply(deviation, inside, out=deviation)
        else:
            count += values.size
        flat = deviation.reshape(-1)
        first += float(flat.sum(dtype=np.float64))
        second += float(np.dot(flat, flat))
    if count == 0:
        return 0, reference, 0.0
    offset = first / count
    return count, float(level) + offset, max(second / count - offset * offset, 0.0)
