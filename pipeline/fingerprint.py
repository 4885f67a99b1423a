"""Fingerprints of a stored image, for finding the same scan twice in a catalog (`catalog.leaks`).

Two fingerprints per kept image:
- `stored_sha256`: sha256 of the stored (resampled) array's dtype, shape and bytes. Equal for the same
  scan released twice, whatever the file format, pixel type or label map beside it.
- a slice signature: the stored image turned to the patient frame (array axes increasing toward Superior,
  Posterior, Left: "SPL"; permutations and flips only, chosen from the direction cosines), then each
  axial slice reduced to the means of a 4 x 4 grid of in-plane blocks: shape (n_slices, 4, 4), float32,
  inferior slice first. At the 1.5 mm stored spacing that is 64 bytes per 1.5 mm of patient length.
  A crop along the body axis keeps the slices it keeps, so its signature is a run of the original's:
  `catalog.leaks` finds it by sliding one signature along the other, which needs neither a correct
  origin in the header nor equal lengths.
"""

from __future__ import annotations

import hashlib

import numpy as np

from pipeline.io import orientation_code

SIGNATURE_BLOCKS = 4

# Orientation letter of an index axis -> (world axis, sign) in LPS: "R" means the axis points to the right.
_WORLD_AXIS = {"L": (0, 1), "R": (0, -1), "P": (1, 1), "A": (1, -1), "S": (2, 1), "I": (2, -1)}


def stored_image_sha256(array: np.ndarray) -> str:
    """sha256 of a stored (z, y, x) array: its dtype and shape, then its bytes in C order."""
    digest = hashlib.sha256(f"{array.dtype.str}:{tuple(array.shape)}:".encode())
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def to_patient_axes(array: np.ndarray, direction: tuple[float, ...] | list[float]) -> np.ndarray:
    """View of a (z, y, x) array with axes reordered and flipped to (S, P, L): index 0 of axis 0 is the most
    inferior slice, of axis 1 the most anterior row, of axis 2 the patient's rightmost column.

    Uses the closest axes of the direction cosines (`direction`: 9 row-major values); no interpolation.
    """
    axes = [_WORLD_AXIS[letter] for letter in orientation_code(direction)]  # per index axis x, y, z
    view = array
    for index_axis, (_, sign) in enumerate(axes):
        if sign < 0:
            view = np.flip(view, axis=2 - index_axis)
    order = [2 - next(i for i, (world, _) in enumerate(axes) if world == target) for target in (2, 1, 0)]
    return view.transpose(order)


def slice_signature(
    array: np.ndarray, direction: tuple[float, ...] | list[float]
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Slice signature of a stored (z, y, x) image: ((n_S, 4, 4) float32 block means, (S, P, L) shape).

    Blocks split the posterior and left axes into 4 nearly equal runs of voxels (fewer when an axis is
    shorter than 4 voxels).
    """
    patient = to_patient_axes(array, direction)
    starts = []
    for axis in (1, 2):
        runs = np.array_split(np.arange(patient.shape[axis]), min(SIGNATURE_BLOCKS, patient.shape[axis]))
        starts.append(np.array([run[0] for run in runs]))
    sums = np.add.reduceat(patient, starts[0], axis=1, dtype=np.float64)
    sums = np.add.reduceat(sums, starts[1], axis=2)
    rows = np.diff(np.append(starts[0], patient.shape[1]))
    columns = np.diff(np.append(starts[1], patient.shape[2]))
    means = sums / (rows[None, :, None] * columns[None, None, :])
    return means.astype(np.float32), tuple(int(n) for n in patient.shape)
