"""Deterministic synthetic phantoms in the nnU-Net v2 raw layout, for the demo and fast tests.

Nothing here is patient data: dataset names contain "Synthetic", case ids start with
"phantom", every dataset.json says ``"synthetic": true`` and its description starts with
"SYNTHETIC phantom".

Conventions used throughout:

* numpy arrays are indexed (z, y, x); SimpleITK sizes, spacings and indices are (x, y, z).
* World coordinates are millimetres in LPS, as SimpleITK uses: +x = patient's left,
  +y = posterior, +z = superior.
* Anatomy is placed in world coordinates relative to the body (or head) centre and then
  sampled onto whatever voxel grid was asked for, so it stays anatomically correct under
  any direction matrix (LPS, RAS-on-disk, oblique). Code that derives sides from array
  indices, or from the field-of-view centre instead of the body outline, gets them wrong.

Layout written by :func:`write_phantom_datasets`::

    <root>/Dataset901_SyntheticTorsoCT/{dataset.json, truth.json, imagesTr/, labelsTr/}
    <root>/Dataset902_SyntheticHeadMR/{dataset.json, truth.json, imagesTr/, labelsTr/}

``truth.json`` (read it with :func:`phantom_truth`) holds, per case, the body midline x,
the field-of-view centre and direction, and for each paired structure the world centroid
and voxel count of each side as actually voxelised in the label image.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk

CT_DATASET = "Dataset901_SyntheticTorsoCT"
MR_DATASET = "Dataset902_SyntheticHeadMR"
FILE_ENDING = ".nii.gz"

CT_LABELS = {
    "background": 0,
    "liver": 1,
    "spleen": 2,
    "kidney": 3,
    "lung": 4,
    "vertebrae": 5,
    "aorta": 6,
    "liver_lesion": 7,
    "adrenal_gland_left": 8,
    "adrenal_gland_right": 9,
}
MR_LABELS = {
    "background": 0,
    "brain": 1,
    "lateral_ventricle_left": 2,
    "lateral_ventricle_right": 3,
    "tumor": 4,
    "edema": 5,
}

LPS_DIRECTION = np.eye(3)
# How SimpleITK reports a NIfTI stored RAS (index i towards the patient's right, j towards
# anterior): the same anatomy, with the array flipped relative to LPS storage.
RAS_ON_DISK_DIRECTION = np.diag([-1.0, -1.0, 1.0])

CT_SIZE = (96, 96, 64)  # voxels, (x, y, z)
CT_SPACING = (2.5, 2.5, 3.0)  # mm, (x, y, z)
MR_SIZE = (80, 96, 80)  # voxels, (x, y, z)
MR_SPACING = (1.2, 1.2, 1.2)  # mm, (x, y, z)

_AIR_HU = -1000
_CT_NOISE_HU = 8.0
_MR_NOISE = 15.0
_MR_BACKGROUND_NOISE = 8.0
_TRUTH_FILE = "truth.json"

Seed = int | Sequence[int]


class _Grid:
    """A voxel grid and the LPS world position (mm) of every voxel centre.

    ``world`` is a tuple of three float arrays (world x, y, z), each shaped (z, y, x) like
    the image arrays.
    """

    def __init__(self, size, spacing, direction, fov_centre):
        self.size = tuple(int(n) for n in size)
        self.spacing = tuple(float(s) for s in spacing)
        self.direction = np.asarray(direction, dtype=float).reshape(3, 3)
        if len(self.size) != 3 or len(self.spacing) != 3:
            raise ValueError("size and spacing must have three (x, y, z) entries")
        # Column c of `step` is the world displacement of one voxel along index axis c.
        self._step = self.direction * np.asarray(self.spacing)
        half_extent = self._step @ ((np.asarray(self.size) - 1) / 2.0)
        self.origin = np.asarray(fov_centre, dtype=float) - half_extent
        ix, iy, iz = (np.arange(n, dtype=float) for n in self.size)
        self.shape = self.size[::-1]
        self.world = tuple(
            self.origin[r]
            + self._step[r, 0] * ix[None, None, :]
            + self._step[r, 1] * iy[None, :, None]
            + self._step[r, 2] * iz[:, None, None]
            for r in range(3)
        )

    def ellipsoid(self, centre, semi_axes) -> np.ndarray:
        """Voxels inside a world-axis-aligned ellipsoid; an infinite semi-axis makes a cylinder."""
        total = np.zeros(self.shape)
        for w, c, a in zip(self.world, centre, semi_axes):
            if np.isfinite(a):
                total += ((w - c) / a) ** 2
        return total <= 1.0

    def nearest_index(self, point) -> tuple[int, int, int]:
        """(z, y, x) array index of the voxel nearest a world point; ValueError if outside."""
        continuous = np.linalg.solve(self._step, np.asarray(point, dtype=float) - self.origin)
        ijk = np.rint(continuous).astype(int)
        if np.any(ijk < 0) or np.any(ijk >= np.asarray(self.size)):
            raise ValueError(f"world point {tuple(point)} mm lies outside the field of view")
        return int(ijk[2]), int(ijk[1]), int(ijk[0])

    def centroid(self, mask: np.ndarray) -> list[float]:
        return [round(float(w[mask].mean()), 3) for w in self.world]

    def to_image(self, array: np.ndarray) -> sitk.Image:
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(self.spacing)
        image.SetOrigin(tuple(float(o) for o in self.origin))
        image.SetDirection(tuple(float(d) for d in self.direction.ravel()))
        return image


def _side_truth(grid: _Grid, mask: np.ndarray) -> dict:
    return {"centroid_mm": grid.centroid(mask), "voxels": int(mask.sum())}


def _jitter(rng: np.random.Generator, centre, semi_axes, shift_mm=3.0, scale=0.08):
    """Per-case variation: centre moved up to ±shift_mm per axis, each semi-axis scaled ±scale."""
    centre = np.asarray(centre, dtype=float) + rng.uniform(-shift_mm, shift_mm, 3)
    semi_axes = np.asarray(semi_axes, dtype=float) * rng.uniform(1 - scale, 1 + scale, 3)
    return centre, semi_axes


def make_torso_ct_case(
    *,
    seed: Seed,
    size: Sequence[int] = CT_SIZE,
    spacing: Sequence[float] = CT_SPACING,
    direction=LPS_DIRECTION,
    fov_centre: Sequence[float] = (0.0, 0.0, 0.0),
    body_offset_x: float | None = None,
    kidneys: Literal["both", "right"] = "both",
) -> tuple[sitk.Image, sitk.Image, dict]:
    """Build one CT-like torso phantom in memory.

    Args:
        seed: anything ``numpy.random.default_rng`` accepts (an int or a sequence of ints).
        size: voxels along index axes (x, y, z), SimpleITK order.
        spacing: mm along index axes (x, y, z).
        direction: any non-singular 3x3 direction matrix (nested rows or 9 values row-major,
            SimpleITK's layout); column c is the world direction of index axis c.
        fov_centre: LPS world position (mm) of the centre of the voxel grid.
        body_offset_x: world x (mm) of the body centre minus that of the FOV centre; by
            default ±(28..34) mm drawn from the seed, large enough that a left/right split
            at the FOV centre cuts through a lung and a kidney.
        kidneys: "right" leaves out the left kidney.

    Returns:
        (image, label, truth). image is int16 HU, label uint8 with :data:`CT_LABELS`, both on
        the same grid. truth is the per-case record described in :func:`phantom_truth`.
    """
    rng = np.random.default_rng(seed)
    grid = _Grid(size, spacing, direction, fov_centre)
    if body_offset_x is None:
        body_offset_x = float(rng.choice([-1.0, 1.0]) * rng.uniform(28.0, 34.0))
    # The body is a cylinder along world z, so its centre z is arbitrary: use the FOV's.
    body_centre = np.asarray(fov_centre, dtype=float) + [body_offset_x, 0.0, 0.0]

    image = np.full(grid.shape, _AIR_HU, dtype=float)
    label = np.zeros(grid.shape, dtype=np.uint8)

    def organ(offset, semi_axes):
        centre, semi = _jitter(rng, offset, semi_axes)
        return grid.ellipsoid(body_centre + centre, semi)

    def paint(mask, name, hu):
        # Later organs overwrite earlier ones: the order below resolves the small overlaps
        # that per-case jitter can create without splitting any organ into pieces.
        image[mask] = hu
        if name is not None:
            label[mask] = CT_LABELS[name]

    body_semi = np.array([82.0, 62.0, np.inf]) * [*rng.uniform(0.97, 1.03, 2), 1.0]
    body = grid.ellipsoid(body_centre, body_semi)
    fat_mm = 8.0
    inner = grid.ellipsoid(body_centre, body_semi - [fat_mm, fat_mm, 0.0])
    paint(body, None, -100)
    paint(inner, None, 40)

    liver_centre, liver_semi = _jitter(rng, (-36.0, -12.0, -18.0), (34.0, 36.0, 30.0))
    paint(grid.ellipsoid(body_centre + liver_centre, liver_semi) & inner, "liver", 60)
    # Tied to the liver's own centre and size so the lesion always stays inside it.
    lesion_centre = liver_centre + np.array([-8.0, -4.0, -2.0]) * (liver_semi / [34.0, 36.0, 30.0])
    lesion_radius = 7.0 * rng.uniform(0.8, 1.2)
    paint(grid.ellipsoid(body_centre + lesion_centre, [lesion_radius] * 3), "liver_lesion", 10)

    paint(organ((54.0, 5.0, -6.0), (14.0, 20.0, 20.0)) & inner, "spleen", 50)

    kidney_sides = {"right": -1.0} if kidneys == "right" else {"right": -1.0, "left": 1.0}
    kidney_masks = {
        side: organ((sign * 42.0, 26.0, -42.0), (13.0, 11.0, 24.0)) & inner
        for side, sign in kidney_sides.items()
    }
    for mask in kidney_masks.values():
        paint(mask, "kidney", 35)
    for side, sign in (("right", -1.0), ("left", 1.0)):
        paint(organ((sign * 32.0, 22.0, -12.0), (4.0, 6.0, 8.0)), f"adrenal_gland_{side}", 30)

    lung_masks = {
        side: organ((sign * 46.0, 2.0, 50.0), (25.0, 38.0, 36.0)) & inner
        for side, sign in (("right", -1.0), ("left", 1.0))
    }
    for mask in lung_masks.values():
        paint(mask, "lung", -850)

    # Vertebral body plus spinous process, continuous along z so the spine is one piece.
    spine = grid.ellipsoid(body_centre + [0.0, 34.0, 0.0], [15.0, 13.0, np.inf])
    spine |= grid.ellipsoid(body_centre + [0.0, 50.0, 0.0], [5.0, 8.0, np.inf])
    paint(spine, "vertebrae", 700)
    aorta_centre = np.array([6.0, 10.0, 0.0]) + [*rng.uniform(-1.0, 1.0, 2), 0.0]
    paint(grid.ellipsoid(body_centre + aorta_centre, [8.0, 8.0, np.inf]), "aorta", 200)

    # A stray liver-labelled speck in the left anterior abdominal wall: the kind of
    # annotation fragment that cleanup must drop. Image intensities stay soft tissue.
    z, y, x = grid.nearest_index(body_centre + [30.0, -40.0, -50.0])
    label[z, y, x : x + 2] = CT_LABELS["liver"]

    image += rng.normal(0.0, _CT_NOISE_HU, grid.shape)
    hu = np.clip(np.rint(image), -1024, 3071).astype(np.int16)

    kidney_label = label == CT_LABELS["kidney"]
    lung_label = label == CT_LABELS["lung"]
    truth = {
        "body_midline_x_mm": round(float(body_centre[0]), 3),
        "fov_centre_mm": [round(float(c), 3) for c in fov_centre],
        "direction": [float(d) for d in grid.direction.ravel()],
        "paired": {
            "kidney": {s: _side_truth(grid, m & kidney_label) for s, m in kidney_masks.items()},
            "lung": {s: _side_truth(grid, m & lung_label) for s, m in lung_masks.items()},
        },
    }
    return grid.to_image(hu), grid.to_image(label), truth


def write_torso_ct_case(path_image, path_label, **kwargs) -> dict:
    """Write one torso CT phantom (image and label, compressed NIfTI) and return its truth.

    Takes the keyword arguments of :func:`make_torso_ct_case` (``seed`` is required).
    """
    image, label, truth = make_torso_ct_case(**kwargs)
    sitk.WriteImage(image, str(path_image), useCompression=True)
    sitk.WriteImage(label, str(path_label), useCompression=True)
    return truth


def make_head_mr_case(
    *,
    seed: Seed,
    tumor_side: Literal["left", "right"],
    size: Sequence[int] = MR_SIZE,
    spacing: Sequence[float] = MR_SPACING,
    direction=LPS_DIRECTION,
    fov_centre: Sequence[float] = (0.0, 0.0, 0.0),
) -> tuple[sitk.Image, sitk.Image, sitk.Image, dict]:
    """Build one two-channel head MR phantom in memory.

    Geometry arguments are as in :func:`make_torso_ct_case` ((x, y, z) order, mm, LPS).
    The tumour sits in the ``tumor_side`` hemisphere (left = world x above the midline),
    with oedema around it clipped to the brain.

    Returns:
        (t1, flair, label, truth): float32 MR-like intensities (background ~0, brain
        ~300-800), uint8 label with :data:`MR_LABELS`, all on the same grid.
    """
    rng = np.random.default_rng(seed)
    grid = _Grid(size, spacing, direction, fov_centre)
    head_centre = np.asarray(fov_centre, dtype=float) + rng.uniform([-4, -3, -3], [4, 3, 3])

    t1 = np.zeros(grid.shape)
    flair = np.zeros(grid.shape)
    label = np.zeros(grid.shape, dtype=np.uint8)

    def paint(mask, name, t1_value, flair_value):
        t1[mask] = t1_value
        flair[mask] = flair_value
        if name is not None:
            label[mask] = MR_LABELS[name]

    head_semi = np.array([40.0, 50.0, 40.0]) * rng.uniform(0.97, 1.03, 3)
    head = grid.ellipsoid(head_centre, head_semi)
    paint(head, None, 780, 350)  # scalp
    paint(grid.ellipsoid(head_centre, head_semi - 3.0), None, 60, 40)  # skull
    brain = grid.ellipsoid(head_centre, head_semi - 7.0)
    paint(brain, "brain", 620, 480)

    sign = 1.0 if tumor_side == "left" else -1.0
    tumor_centre = head_centre + [sign * 20.0, 18.0, 10.0] + rng.uniform(-2.0, 2.0, 3)
    tumor_radius = 7.0 * rng.uniform(0.85, 1.2)
    edema_radius = tumor_radius + rng.uniform(5.0, 7.0)
    paint(grid.ellipsoid(tumor_centre, [edema_radius] * 3) & brain, "edema", 520, 880)
    paint(grid.ellipsoid(tumor_centre, [tumor_radius] * 3), "tumor", 420, 700)

    # Painted last so each ventricle stays one intact piece, a few mm off the midline.
    ventricles = {}
    for side, side_sign in (("right", -1.0), ("left", 1.0)):
        centre, semi = _jitter(rng, (side_sign * 8.0, -4.0, 6.0), (4.5, 15.0, 7.0), 1.5, 0.1)
        ventricles[side] = grid.ellipsoid(head_centre + centre, semi)
        paint(ventricles[side], f"lateral_ventricle_{side}", 180, 90)

    in_head = head.astype(float)
    # Magnitude images carry Rician-like, strictly non-negative background noise.
    background = np.abs(rng.normal(0.0, _MR_BACKGROUND_NOISE, (2, *grid.shape)))
    t1 = t1 + in_head * rng.normal(0.0, _MR_NOISE, grid.shape) + (1 - in_head) * background[0]
    flair = flair + in_head * rng.normal(0.0, _MR_NOISE, grid.shape) + (1 - in_head) * background[1]

    truth = {
        "body_midline_x_mm": round(float(head_centre[0]), 3),
        "fov_centre_mm": [round(float(c), 3) for c in fov_centre],
        "direction": [float(d) for d in grid.direction.ravel()],
        "tumor_side": tumor_side,
        "paired": {
            "lateral_ventricle": {
                side: _side_truth(grid, label == MR_LABELS[f"lateral_ventricle_{side}"])
                for side in ventricles
            }
        },
    }
    return (
        grid.to_image(t1.astype(np.float32)),
        grid.to_image(flair.astype(np.float32)),
        grid.to_image(label),
        truth,
    )


def _scaled_grid(size, spacing, size_scale: float):
    """Scale the voxel count by size_scale while keeping the physical field of view."""
    scaled = tuple(max(8, round(n * size_scale)) for n in size)
    return scaled, tuple(s * n / m for s, n, m in zip(spacing, size, scaled))


def _prepare_dataset_dir(root: Path, name: str) -> Path:
    folder = root / name
    if folder.exists():
        # Only ever delete a folder this module wrote; anything else is someone's data.
        meta = folder / "dataset.json"
        if not meta.is_file() or json.loads(meta.read_text(encoding="utf-8")).get("synthetic") is not True:
            raise FileExistsError(f"{folder} exists and is not a synthetic phantom dataset")
        shutil.rmtree(folder)
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    return folder


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def _write_dataset_meta(folder, name, channels, labels, n_cases, description, truth_cases):
    _write_json(
        folder / "dataset.json",
        {
            "name": name,
            "description": description,
            "synthetic": True,
            "channel_names": channels,
            "labels": labels,
            "numTraining": n_cases,
            "file_ending": FILE_ENDING,
        },
    )
    _write_json(
        folder / _TRUTH_FILE,
        {
            "coordinate_system": "LPS world mm: +x patient left, +y posterior, +z superior",
            "body_midline_x_mm": "world x of the body (head) centre; left side is x above it",
            "paired": "per structure and side, centroid (LPS mm) and count of label voxels",
            "cases": truth_cases,
        },
    )


def write_phantom_datasets(
    root, *, seed: int = 0, n_ct: int = 4, n_mr: int = 3, size_scale: float = 1.0
) -> list[Path]:
    """Write the torso CT and head MR phantom datasets under root; return their folders.

    Cases alternate between LPS and RAS-on-disk storage (CT) and between left and right
    tumours (MR); the body sits ±(28..34) mm off the FOV centre in world x, alternating
    sign. When n_ct >= 2 the last CT case has a right kidney only. size_scale multiplies
    the voxel count per axis while the field of view in mm stays fixed (spacing grows as
    the grid shrinks), so anatomy and truth are comparable across scales.

    An existing phantom dataset folder of the same name is replaced; any other existing
    folder of that name raises FileExistsError.
    """
    root = Path(root)
    ct_size, ct_spacing = _scaled_grid(CT_SIZE, CT_SPACING, size_scale)
    mr_size, mr_spacing = _scaled_grid(MR_SIZE, MR_SPACING, size_scale)

    ct_dir = _prepare_dataset_dir(root, CT_DATASET)
    ct_truth = {}
    for i in range(n_ct):
        rng = np.random.default_rng([seed, 901, i, 0])
        case = f"phantom_ct_{i:03d}"
        # Offset sign follows i % 4 in (0, 3) so it is not tied to the storage orientation.
        offset_sign = 1.0 if i % 4 in (0, 3) else -1.0
        ct_truth[case] = write_torso_ct_case(
            ct_dir / "imagesTr" / f"{case}_0000{FILE_ENDING}",
            ct_dir / "labelsTr" / f"{case}{FILE_ENDING}",
            seed=[seed, 901, i, 1],
            size=ct_size,
            spacing=ct_spacing,
            direction=LPS_DIRECTION if i % 2 == 0 else RAS_ON_DISK_DIRECTION,
            # An arbitrary table position, so world x = 0 is not the midline either.
            fov_centre=rng.uniform([-10, -10, -300], [10, 10, -100]),
            body_offset_x=offset_sign * rng.uniform(28.0, 34.0),
            kidneys="right" if n_ct >= 2 and i == n_ct - 1 else "both",
        )
    _write_dataset_meta(
        ct_dir,
        "SyntheticTorsoCT",
        {"0": "CT"},
        CT_LABELS,
        n_ct,
        "SYNTHETIC phantom torso CT (HU) generated by pipeline.phantoms; not patient data.",
        ct_truth,
    )

    mr_dir = _prepare_dataset_dir(root, MR_DATASET)
    mr_truth = {}
    for i in range(n_mr):
        rng = np.random.default_rng([seed, 902, i, 0])
        case = f"phantom_mr_{i:03d}"
        t1, flair, label, mr_truth[case] = make_head_mr_case(
            seed=[seed, 902, i, 1],
            tumor_side="left" if i % 2 == 0 else "right",
            size=mr_size,
            spacing=mr_spacing,
            fov_centre=rng.uniform([-10, -10, 50], [10, 10, 150]),
        )
        for channel, image in enumerate((t1, flair)):
            path = mr_dir / "imagesTr" / f"{case}_{channel:04d}{FILE_ENDING}"
            sitk.WriteImage(image, str(path), useCompression=True)
        sitk.WriteImage(label, str(mr_dir / "labelsTr" / f"{case}{FILE_ENDING}"), useCompression=True)
    _write_dataset_meta(
        mr_dir,
        "SyntheticHeadMR",
        {"0": "T1", "1": "FLAIR"},
        MR_LABELS,
        n_mr,
        "SYNTHETIC phantom head MR (T1, FLAIR; arbitrary units) generated by pipeline.phantoms;"
        " not patient data.",
        mr_truth,
    )
    return [ct_dir, mr_dir]


def phantom_truth(dataset_dir, case_id: str) -> dict:
    """Ground truth recorded for one phantom case, read from the dataset's truth.json.

    Returns a dict with:
        body_midline_x_mm: LPS world x (mm) of the body/head centre; the patient's left is
            world x above it. This is the midline a split must use, not the FOV centre.
        fov_centre_mm: LPS world position (mm) of the grid centre, (x, y, z).
        direction: the image's 3x3 direction, 9 values row-major (SimpleITK layout).
        paired: {structure: {side: {"centroid_mm": [x, y, z], "voxels": n}}} for each side
            of a paired structure present in the label image (CT: "kidney" and "lung", a
            missing kidney side is absent; MR: "lateral_ventricle").
        tumor_side: MR only, "left" or "right".
    """
    truth = json.loads((Path(dataset_dir) / _TRUTH_FILE).read_text(encoding="utf-8"))
    return truth["cases"][case_id]
