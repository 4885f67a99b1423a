"""Simulated clicks: where a user would click next, given the current prediction and the target.

Three rules:

* :func:`training_clicks` - the training loop's rule, batched on torch tensors: a uniformly random
  voxel of the error region (false negatives and false positives together).
* :func:`paper_click` - the SAM-Med3D paper's evaluation rule: first click uniformly random inside the
  target, later clicks uniformly random in the error region.
* :func:`challenge_click` - the CVPR 2025 interactive 3D segmentation challenge rule: the centre (the
  voxel farthest from the border) of the largest connected error component.

Every point is a (z, y, x) voxel index, returned as floats because the network takes float
coordinates (see :mod:`model`); the voxel's centre is index + 0.5, which the prompt encoder adds.
Labels: 1 positive (the voxel should be inside: a miss, i.e. false negative), 0 negative (it should be
outside: an over-segmentation, i.e. false positive). Masks are boolean (True = inside).
"""

from __future__ import annotations

import cc3d
import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

POSITIVE = 1
NEGATIVE = 0


def training_clicks(
    pred: torch.Tensor, target: torch.Tensor, generators: list[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One new click per sample, uniformly random in that sample's error region.

    Args:
        pred (Tensor): (B, 1, D, H, W) bool, current prediction.
        target (Tensor): (B, 1, D, H, W) bool, ground truth.
        generators (list[torch.Generator]): B CPU generators, one per sample, so a sample's clicks do
            not depend on its position in the batch (a batch split across processes draws the same clicks).

    Returns:
        points (Tensor): (B, 1, 3) float32 (z, y, x) voxel indices, on ``pred``'s device.
        labels (Tensor): (B, 1) int64; 1 when the click falls in a false negative, 0 in a false positive.
        Where a sample has no error, the click is a random target voxel, label 1; where its target is
        empty too, a random voxel, label 0.
    """
    if pred.shape != target.shape or pred.ndim != 5 or pred.shape[1] != 1:
        raise ValueError(f"pred and target must both be (B, 1, D, H, W), got {tuple(pred.shape)} and {tuple(target.shape)}")
    if len(generators) != pred.shape[0]:
        raise ValueError(f"need one generator per sample: {len(generators)} for a batch of {pred.shape[0]}")
    if pred.device.type != "cpu":
        return device_training_clicks(pred, target, generators)
    shape = pred.shape[2:]
    points = torch.empty(pred.shape[0], 1, 3, dtype=torch.float32)
    labels = torch.empty(pred.shape[0], 1, dtype=torch.int64)
    for b, generator in enumerate(generators):
        p, t = pred[b, 0].bool(), target[b, 0].bool()
        candidates = (p ^ t).flatten().nonzero().flatten()
        if candidates.numel() == 0:
            candidates = t.flatten().nonzero().flatten()
        if candidates.numel() == 0:
            flat = int(torch.randint(t.numel(), (1,), generator=generator))
        else:
            pick = int(torch.randint(candidates.numel(), (1,), generator=generator))
            flat = int(candidates[pick])
        index = np.unravel_index(flat, tuple(shape))
        points[b, 0] = torch.tensor(index, dtype=torch.float32)
        labels[b, 0] = POSITIVE if bool(t[index]) else NEGATIVE
    return points.to(pred.device), labels.to(pred.device)


def device_training_clicks(
    pred: torch.Tensor, target: torch.Tensor, generators: list[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training rule of :func:`training_clicks` without reading anything back to the host.

    On a GPU, the per-sample `nonzero` and indexing of the host loop each wait for the device: with 11
    iterations that was most of a training step on an H100. Here one uniform number per sample (from its
    CPU generator, so the draw does not depend on the sample's batch position) picks the k-th voxel of the
    sample's candidate set through a cumulative sum, all on the device. Same rule and fallbacks; other draws
    than the host loop for the same seeds. Shapes and returns as :func:`training_clicks`.
    """
    batch, shape = pred.shape[0], pred.shape[2:]
    p = pred.reshape(batch, -1).bool()
    t = target.reshape(batch, -1).bool()
    error = p ^ t
    has_error, has_target = error.any(dim=1, keepdim=True), t.any(dim=1, keepdim=True)
    candidates = torch.where(has_error, error, torch.where(has_target, t, torch.ones_like(t)))
    cumulative = candidates.to(torch.int32).cumsum(dim=1, dtype=torch.int32)
    counts = cumulative[:, -1:]
    uniform = torch.stack([torch.rand((), generator=g) for g in generators]).to(pred.device, non_blocking=True)
    rank = torch.minimum((uniform[:, None] * counts).to(torch.int32), counts - 1)
    flat = torch.searchsorted(cumulative, rank + 1)  # first position where the count reaches rank + 1
    plane = shape[1] * shape[2]
    points = torch.cat([flat // plane, (flat // shape[2]) % shape[1], flat % shape[2]], dim=1).float()
    labels = t.gather(1, flat).to(torch.int64)
    return points[:, None, :], labels


def paper_click(pred: np.ndarray | None, target: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """The SAM-Med3D paper's evaluation click.

    Args:
        pred (ndarray | None): (D, H, W) bool current prediction; None before the first click.
        target (ndarray): (D, H, W) bool ground truth, not empty.
        rng (np.random.Generator): source of randomness.

    Returns:
        point (ndarray): (3,) float64 (z, y, x) voxel index.
        label (int): 1 for a target voxel / false negative, 0 for a false positive.
        First click: uniformly random target voxel, label 1. Later: uniformly random voxel of the error
        region (FN or FP); when there is no error, a random target voxel, label 1.
    """
    target = _boolean(target, "target")
    if not target.any():
        raise ValueError("the target is empty: there is nothing to click on")
    candidates = np.flatnonzero(target)
    if pred is not None:
        errors = np.flatnonzero(_boolean(pred, "pred", target.shape) ^ target)
        if errors.size:
            candidates = errors
    flat = int(candidates[rng.integers(candidates.size)])
    index = np.unravel_index(flat, target.shape)
    return np.asarray(index, dtype=np.float64), POSITIVE if target[index] else NEGATIVE


def challenge_click(pred: np.ndarray | None, target: np.ndarray) -> tuple[np.ndarray, int]:
    """The CVPR 2025 interactive challenge click: centre of the largest connected error component.

    False-negative and false-positive voxels form separate 26-connected components (a component has one
    sign), ranked together by voxel count; the click is the component voxel farthest (Euclidean, in
    voxels) from the component's border, found with ``distance_transform_edt``. The component is
    zero-padded before the transform, so the volume edge counts as border: the click lands inside
    what a user sees, not on the last slice of a component cut by the image edge. Ties (equal
    sizes, equal distances) go to the lowest component id / flat (z, y, x) index: deterministic.

    Args:
        pred (ndarray | None): (D, H, W) bool current prediction; None before the first click.
        target (ndarray): (D, H, W) bool ground truth, not empty.

    Returns:
        point (ndarray): (3,) float64 (z, y, x) voxel index.
        label (int): 1 for a miss (false negative) or the first click, 0 for an over-segmentation.
        First click, and any click when the prediction has no error: the same rule on the target
        (centre of its largest component), label 1.
    """
    target = _boolean(target, "target")
    if not target.any():
        raise ValueError("the target is empty: there is nothing to click on")
    if pred is not None:
        pred = _boolean(pred, "pred", target.shape)
        errors = np.zeros(target.shape, dtype=np.uint8)
        errors[target & ~pred] = 1
        errors[pred & ~target] = 2
        if errors.any():
            component = _largest_component(errors)
            label = POSITIVE if target[tuple(np.argwhere(component)[0])] else NEGATIVE
            return _farthest_from_border(component), label
    return _farthest_from_border(_largest_component(target.astype(np.uint8))), POSITIVE


def _boolean(array: np.ndarray, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"{name} must be a (D, H, W) array, got shape {array.shape}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, the target {shape}")
    return array.astype(bool, copy=False)


def _largest_component(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of the largest 26-connected component of a label map (components never mix values)."""
    components = cc3d.connected_components(labels, connectivity=26)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def _farthest_from_border(component: np.ndarray) -> np.ndarray:
    """(z, y, x) of the component voxel with the largest distance to any outside voxel, volume edge included."""
    coords = np.argwhere(component)
    low, high = coords.min(axis=0), coords.max(axis=0) + 1
    crop = component[tuple(slice(a, b) for a, b in zip(low, high))]
    distance = distance_transform_edt(np.pad(crop, 1))[1:-1, 1:-1, 1:-1]
    best = np.unravel_index(int(np.argmax(distance)), crop.shape)
    return (np.asarray(best) + low).astype(np.float64)
