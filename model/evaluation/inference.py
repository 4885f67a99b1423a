"""Inference without ground truth: clicks on an image file in, a mask in the image's own geometry out.

A network of the published convention (published SAM-Med3D weights) gets its windows the published way
instead (``model.input_convention``): on the image's 1.5 mm grid turned to RAS, (R, A, S) axis order,
z-scored over voxels > 0 without CT clipping, and an all-zero mask prompt with the first click.

Clicks are given either as (z, y, x) voxel indices of the image file's own array (the order of
``SimpleITK.GetArrayFromImage``, i.e. NumPy order; fractions allowed) or, with ``world=True``, as
(x, y, z) world coordinates in mm in the LPS frame SimpleITK uses (+x patient's left, +y posterior,
+z superior; a NIfTI viewer's RAS coordinates are (-x, -y, z) here). Every click must lie inside the
image. The first click must be positive; it is the centre of the first window.

A window is a 128^3 patch at 1.5 mm in the image's own direction (``model.evaluation.crop.PatchGrid``),
resampled linearly, zero outside the image (as training pads), and normalised by modality
(``model.intensity.normalize_intensity``): CT when the image's minimum is at most -500 (air in
Hounsfield units), MR otherwise, unless the caller names it. In each window the network gets the
clicks that fall inside it, one decode per click, each with every click so far and the previous
low-resolution logits (how ``model.training.click_loop`` trains it).

Targets larger than a window are followed: when the window's prediction touches a patch face (at
least 10 voxels on it, inside the image), the neighbouring window half a patch (96 mm) further
along that axis is processed too, prompted first with a positive click at the centre (the voxel
farthest from the border) of the mask found so far inside it, then the user's clicks inside it.
Windows form a half-patch lattice around the first, each visited once, at most ``max_windows``.
Each window's probabilities are pasted back into the image grid (linear, threshold 0.5) and the
masks are joined. Clicks outside every visited window are reported as unused.
"""

from __future__ import annotations

import argparse
import pickle
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from model.clicks import challenge_click
from model.evaluation.crop import PATCH_SIZE, PatchGrid, paste_back_region
from model.input_convention import click_crop, first_mask_prompt, sample_crop
from model.intensity import normalize_intensity
from model.network.loading import load_network
from model.predictor import Predictor
from pipeline.geometry import Geometry

CT_MINIMUM_HU = -500.0
MIN_BORDER_VOXELS = 10
MAX_WINDOWS = 8
_CHECKPOINT_ERRORS = (RuntimeError, ValueError, KeyError, TypeError, EOFError, OSError, pickle.UnpicklingError)


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; anything else as torch.device understands it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"unknown device {name!r}") from error


def load_predictor(checkpoint: str | Path, device: str = "auto") -> Predictor:
    """The network of a checkpoint (ours or the published SAM-Med3D layout, ``model.network.loading``) in a Predictor.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a loadable checkpoint of ours.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        model = load_network(path)
    except _CHECKPOINT_ERRORS as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path} is not a usable model checkpoint: {reason}") from error
    return Predictor(model.to(resolve_device(device)))


def read_image(path: str | Path) -> sitk.Image:
    """A 3D scalar image file; FileNotFoundError / ValueError with one sentence otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise ValueError(f"{path} is not an image SimpleITK can read") from error
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{path} is not a 3D single-channel image")
    return image


def guess_modality(image: sitk.Image) -> str:
    """"CT" when the minimum is at most -500 (air in HU), else "MR"."""
    return "CT" if float(sitk.GetArrayViewFromImage(image).min()) <= CT_MINIMUM_HU else "MR"


def clicks_in_world(image: sitk.Image, points, world: bool) -> np.ndarray:
    """(N, 3) clicks -> (N, 3) LPS world (x, y, z) mm; ValueError for a click outside the image.

    Args:
        points (array-like): (N, 3) (z, y, x) voxel indices of the image array, or (x, y, z) mm if `world`.
    """
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError("give at least one click of three coordinates")
    geometry = Geometry.of(image)
    index = geometry.world_to_index_zyx(points) if world else points
    shape = np.asarray(image.GetSize()[::-1])
    for point, position in zip(points, index):
        if np.any(position < -0.5) or np.any(position > shape - 0.5):
            unit = "mm (x, y, z, LPS)" if world else "voxels (z, y, x)"
            raise ValueError(
                f"click {tuple(float(v) for v in point)} {unit} lies outside the image "
                f"({' x '.join(str(int(n)) for n in shape)} voxels, z y x)"
            )
    return points if world else geometry.index_zyx_to_world(points)


def checked_labels(labels: Sequence[int], clicks: int) -> list[int]:
    """Labels as ints; ValueError unless one 0/1 label per click and the first is positive."""
    labels = [int(v) for v in labels]
    if len(labels) != clicks or any(v not in (0, 1) for v in labels):
        raise ValueError("give one label, 1 (positive) or 0 (negative), per click")
    if labels[0] != 1:
        raise ValueError("the first click must be positive: it places the first window")
    return labels


@dataclass
class SegmentationResult:
    """mask: uint8 0/1 image with the input's geometry; windows: (3,) world centres (mm) of the
    windows processed, in order; unused_clicks: indices of clicks that fell in no window."""

    mask: sitk.Image
    windows: list[np.ndarray]
    unused_clicks: list[int]


def _published(predictor) -> bool:
    return getattr(getattr(predictor, "model", None), "convention", "native") == "published"


def _predict_window(predictor, patch: np.ndarray, points: list[np.ndarray], labels: list[int]) -> np.ndarray:
    """One decode per click, each with all clicks so far and the previous low-res logits -> (S, S, S) probabilities."""
    predictor.set_image(torch.from_numpy(np.ascontiguousarray(patch, dtype=np.float32)))
    # Stand-in predictors (tests) may carry no network: no convention, no mask prompt.
    lowres = first_mask_prompt(getattr(predictor, "model", None), device=getattr(predictor, "device", None))
    for count in range(1, len(points) + 1):
        logits, _, lowres = predictor.predict(
            np.asarray(points[:count], dtype=np.float32), np.asarray(labels[:count]), mask_input=lowres
        )
    return torch.sigmoid(logits[0, 0].float()).cpu().numpy()


def _touched_faces(
    prediction: np.ndarray, grid: PatchGrid, image_geometry: Geometry, shape_zyx
) -> list[tuple[int, int]]:
    """(axis, +1 or -1) of the patch faces the prediction touches with MIN_BORDER_VOXELS voxels inside the image."""
    touched = []
    for axis in range(3):
        for side, position in ((-1, 0), (1, grid.size - 1)):
            face = np.argwhere(np.take(prediction, position, axis=axis))
            if len(face) < MIN_BORDER_VOXELS:
                continue
            index = np.insert(face, axis, position, axis=1).astype(float)
            in_image = image_geometry.world_to_index_zyx(grid.index_zyx_to_world(index))
            inside = np.all((in_image >= -0.5) & (in_image <= np.asarray(shape_zyx) - 0.5), axis=1)
            if inside.sum() >= MIN_BORDER_VOXELS:
                touched.append((axis, side))
    return touched


def segment_image(
    image: sitk.Image,
    clicks_world: np.ndarray,
    labels: Sequence[int],
    predictor,
    modality: str,
    max_windows: int = MAX_WINDOWS,
) -> SegmentationResult:
    """Segment from clicks, following the target across windows (see the module docstring).

    Args:
        image (sitk.Image): 3D image, any orientation and spacing.
        clicks_world (ndarray): (N, 3) LPS world (x, y, z) mm, inside the image; the first positive.
        labels (sequence of int): (N,) 1 positive, 0 negative.
        predictor: a :class:`model.predictor.Predictor` (or an object with its set_image/predict).
        modality (str): "CT" or "MR", for the intensity normalisation.
        max_windows (int): most windows processed.
    """
    labels = checked_labels(labels, len(clicks_world))
    geometry = Geometry.of(image)
    shape = image.GetSize()[::-1]
    direction = image.GetDirection()
    half = PATCH_SIZE // 2
    published = _published(predictor)
    first = click_crop(image, clicks_world[0]) if published else PatchGrid.centred_on(clicks_world[0], direction)
    merged = np.zeros(shape, dtype=bool)
    queue, visited = deque([(0, 0, 0)]), {(0, 0, 0)}
    windows, used = [], set()
    while queue and len(windows) < max_windows:
        key = queue.popleft()
        grid = PatchGrid.from_window(first.geometry, half * np.asarray(key))
        centre = grid.index_zyx_to_world(np.full(3, float(half)))
        points, point_labels = [], []
        if windows:
            known = grid.sample(_as_image(merged, image), sitk.sitkNearestNeighbor) >= 0.5
            if not known.any():
                continue
            points.append(challenge_click(None, known)[0])
            point_labels.append(1)
        index = grid.world_to_index_zyx(clicks_world)
        for i in np.flatnonzero(grid.contains_index(index)):
            points.append(index[i])
            point_labels.append(labels[i])
            used.add(int(i))
        if published:
            patch = sample_crop(image, grid)
        else:
            patch = normalize_intensity(grid.sample(image, sitk.sitkLinear, 0.0), modality)
        probability = _predict_window(predictor, patch, points, point_labels)
        windows.append(centre)
        region = grid.footprint(geometry, shape)
        if region is not None:
            merged[region] |= paste_back_region(probability, grid, geometry, region)
        for axis, side in _touched_faces(probability >= 0.5, grid, geometry, shape):
            neighbour = list(key)
            neighbour[axis] += side
            if tuple(neighbour) not in visited:
                visited.add(tuple(neighbour))
                queue.append(tuple(neighbour))
    return SegmentationResult(_as_image(merged, image), windows, sorted(set(range(len(labels))) - used))


def _as_image(mask: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(reference)
    return image


def segment(
    image_path: str | Path,
    points,
    *,
    checkpoint: str | Path,
    out_path: str | Path,
    world: bool = False,
    labels: Sequence[int] | None = None,
    modality: str | None = None,
    max_windows: int = MAX_WINDOWS,
    device: str = "auto",
) -> SegmentationResult:
    """Segment the target under the clicks in an image file and write the mask.

    Args:
        image_path (str | Path): 3D image (NIfTI, NRRD, MHA, ...).
        points (array-like): (N, 3) clicks: (z, y, x) voxel indices of the image array, or (x, y, z)
            LPS world mm when `world`.
        checkpoint (str | Path): model checkpoint (ours, or a published SAM-Med3D ``vit_b_ori`` file).
        out_path (str | Path): mask file to write (uint8 0/1, the image's size, spacing, origin and
            direction; format from the suffix).
        labels (sequence of int | None): per click 1 positive, 0 negative; default all positive.
        modality (str | None): "CT" or "MR"; None guesses from the intensities (see the module docstring).
        max_windows (int): most 128^3 windows used to follow a large target.
        device (str): "auto", "cpu", "cuda", ...

    Returns:
        SegmentationResult (the written mask, window centres, unused clicks).
    """
    image = read_image(image_path)
    clicks = clicks_in_world(image, points, world)
    labels = checked_labels([1] * len(clicks) if labels is None else labels, len(clicks))
    if modality is not None and modality not in ("CT", "MR"):
        raise ValueError(f"modality must be CT or MR, got {modality!r}")
    if max_windows < 1:
        raise ValueError("max_windows must be at least 1")
    predictor = load_predictor(checkpoint, device)
    result = segment_image(image, clicks, labels, predictor, modality or guess_modality(image), max_windows)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(result.mask, str(out), useCompression=True)
    return result


class _ClickAction(argparse.Action):
    """Appends (coordinates, label) to one list, so positive and negative clicks keep their order."""

    def __call__(self, parser, namespace, value, option_string=None):
        try:
            coordinates = [float(v) for v in value.split(",")]
        except ValueError:
            coordinates = []
        if len(coordinates) != 3:
            parser.error(f"{option_string} needs three comma-separated numbers, got {value!r}")
        clicks = list(getattr(namespace, self.dest) or [])
        clicks.append((coordinates, self.const))
        setattr(namespace, self.dest, clicks)


def add_arguments(subparsers) -> argparse.ArgumentParser:
    """Add the ``segment`` subcommand to a ``sammed3d`` subparsers object."""
    parser = subparsers.add_parser(
        "segment",
        help="segment a target in an image file from clicks",
        description="Clicks are z,y,x voxel indices of the image array, or x,y,z LPS world mm with --world; "
        "write a negative coordinate as --point=-12.5,30,40.",
    )
    parser.add_argument("image", help="3D image file (NIfTI, NRRD, MHA, ...)")
    parser.add_argument("--point", dest="clicks", action=_ClickAction, const=1, required=True, metavar="Z,Y,X",
                        help="positive click, repeatable; the first one centres the first window")
    parser.add_argument("--negative", dest="clicks", action=_ClickAction, const=0, metavar="Z,Y,X",
                        help="negative click (not the target), repeatable")
    parser.add_argument("--world", action="store_true", help="clicks are x,y,z world mm (LPS) instead of voxels")
    parser.add_argument(
        "--checkpoint", required=True, help="model checkpoint (sammed3d format or a published SAM-Med3D .pth)"
    )
    parser.add_argument("-o", "--output", required=True, help="mask file to write, e.g. mask.nii.gz")
    parser.add_argument("--modality", choices=("CT", "MR"), help="intensity normalisation (default: guessed)")
    parser.add_argument("--max-windows", type=int, default=MAX_WINDOWS, help="windows to follow a large target")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the ``segment`` subcommand; bad input raises FileNotFoundError/ValueError with one sentence."""
    points = [coordinates for coordinates, _ in args.clicks]
    labels = [label for _, label in args.clicks]
    result = segment(
        args.image,
        points,
        checkpoint=args.checkpoint,
        out_path=args.output,
        world=args.world,
        labels=labels,
        modality=args.modality,
        max_windows=args.max_windows,
        device=args.device,
    )
    voxels = int(sitk.GetArrayViewFromImage(result.mask).sum())
    volume_ml = voxels * float(np.prod(result.mask.GetSpacing())) / 1000.0
    print(f"wrote {args.output}: {voxels} voxels ({volume_ml:.1f} ml) from {len(result.windows)} window(s)")
    if result.unused_clicks:
        unused = ", ".join(str(i + 1) for i in result.unused_clicks)
        print(f"note: clicks {unused} fell outside every window and were not used")
    return 0
