"""A classical click-driven baseline: region growing from the clicks, evaluated beside the network.

Given the normalised patch and every click so far it returns a binary mask, like the network:

1. The patch's noise level sigma is estimated once, robustly: the median absolute deviation of
   the differences between neighbouring voxels (zero differences, from padding or clipping,
   left out), divided by sqrt(2), scaled to a standard deviation, median over the three axes.
2. Each positive click grows its own region (SimpleITK ``ConnectedThreshold``, face connectivity)
   inside the window median ± max(2.5 sigma, 0.1) (z-score units), where the median is over the
   (2r+1)^3 cube around the click. A median and a patch-wide noise level, rather than the cube's
   mean and standard deviation, keep a click next to an edge from opening the window across it.
   The growth runs on the unsmoothed patch: smoothing would blur the object's boundary.
3. Noise voxels outside the window leave holes: each region's holes are filled
   (``BinaryFillhole``). The mask is the union of the regions.
4. A negative click removes the connected component of the mask it falls in when that component
   holds no positive click; when it does hold some, the component is cut between the clicks: each
   of its voxels goes to the nearest click (Euclidean, in voxels; the patch is isotropic) and the
   voxels nearest a negative click are removed.

The baseline has no memory beyond the clicks: every step recomputes the mask from all clicks so far.
Arrays are (z, y, x); clicks are (z, y, x) voxel indices of the patch; labels 1 positive, 0 negative.
"""

from __future__ import annotations

import cc3d
import numpy as np
import SimpleITK as sitk


class RegionGrowingBaseline:
    """Region growing from the clicks (see the module docstring).

    Args:
        neighbourhood_radius (int): r, half the edge of the cube whose median centres a click's window.
        window_stds (float): window half-width in noise standard deviations.
        min_half_width (float): smallest window half-width, in normalised intensity units.
    """

    def __init__(
        self,
        neighbourhood_radius: int = 2,
        window_stds: float = 2.5,
        min_half_width: float = 0.1,
    ) -> None:
        self.neighbourhood_radius = neighbourhood_radius
        self.window_stds = window_stds
        self.min_half_width = min_half_width
        self._image: sitk.Image | None = None
        self._noise = 0.0

    def start(self, patch: np.ndarray) -> None:
        """Take a new patch: (D, H, W) float, normalised intensities."""
        patch = np.asarray(patch, dtype=np.float32)
        self._image = sitk.GetImageFromArray(patch)
        self._noise = noise_sigma(patch)

    def step(self, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The mask for all clicks so far.

        Args:
            points (ndarray): (N, 3) (z, y, x) voxel indices of the patch.
            labels (ndarray): (N,) 1 positive, 0 negative.

        Returns:
            ndarray (D, H, W) float32, 1 inside the mask, 0 outside.
        """
        if self._image is None:
            raise RuntimeError("call start(patch) before step")
        intensities = sitk.GetArrayViewFromImage(self._image)
        shape = np.asarray(intensities.shape)
        seeds = np.clip(np.rint(np.asarray(points, dtype=float).reshape(-1, 3)).astype(int), 0, shape - 1)
        labels = np.asarray(labels).reshape(-1)
        positives, negatives = seeds[labels == 1], seeds[labels == 0]
        mask = np.zeros(intensities.shape, dtype=bool)
        for seed in positives:
            mask |= self._grow(intensities, seed)
        if negatives.size and mask.any():
            mask = self._cut_at_negatives(mask, positives, negatives)
        return mask.astype(np.float32)

    def _grow(self, intensities: np.ndarray, seed: np.ndarray) -> np.ndarray:
        r = self.neighbourhood_radius
        cube = intensities[tuple(slice(max(c - r, 0), c + r + 1) for c in seed)]
        half_width = max(self.window_stds * self._noise, self.min_half_width)
        centre = float(np.median(cube))
        grown = sitk.ConnectedThreshold(
            self._image,
            seedList=[tuple(int(c) for c in seed[::-1])],
            lower=centre - half_width,
            upper=centre + half_width,
            replaceValue=1,
        )
        region = sitk.GetArrayFromImage(sitk.BinaryFillhole(grown)).astype(bool)
        region[tuple(seed)] = True  # the click itself is inside, even when its own voxel is an outlier
        return region

    @staticmethod
    def _cut_at_negatives(mask: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
        components = cc3d.connected_components(mask, connectivity=6)
        for component_id in np.unique(components[tuple(negatives.T)]):
            if component_id == 0:
                continue
            inside = components == component_id
            own_positives = positives[inside[tuple(positives.T)]] if positives.size else positives
            own_negatives = negatives[inside[tuple(negatives.T)]]
            if own_positives.size == 0:
                mask[inside] = False
                continue
            voxels = np.argwhere(inside)
            nearest_positive = _nearest_squared_distance(voxels, own_positives)
            nearest_negative = _nearest_squared_distance(voxels, own_negatives)
            removed = voxels[nearest_negative < nearest_positive]
            mask[tuple(removed.T)] = False
        return mask


def noise_sigma(patch: np.ndarray) -> float:
    """Robust noise standard deviation of a (D, H, W) patch from neighbour differences (0 if flat)."""
    estimates = []
    for axis in range(patch.ndim):
        differences = np.diff(patch, axis=axis).ravel()
        differences = differences[differences != 0]
        if differences.size:
            deviation = np.median(np.abs(differences - np.median(differences)))
            # 1.4826 turns a median absolute deviation into a Gaussian sigma; a difference has twice the variance.
            estimates.append(1.4826 * float(deviation) / np.sqrt(2.0))
    return float(np.median(estimates)) if estimates else 0.0


def _nearest_squared_distance(voxels: np.ndarray, clicks: np.ndarray) -> np.ndarray:
    """(V,) squared distance from each of (V, 3) voxels to the nearest of (C, 3) clicks."""
    best = np.full(len(voxels), np.inf)
    for click in clicks:
        np.minimum(best, ((voxels - click) ** 2).sum(axis=1), out=best)
    return best
