"""The phantom datasets on disk, in the nnU-Net v2 raw layout, with the truth each case was built from.

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
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pipeline.phantoms.grid import LPS_DIRECTION, RAS_ON_DISK_DIRECTION
from pipeline.phantoms.head_mr import MR_LABELS, MR_SIZE, MR_SPACING, make_head_mr_case
from pipeline.phantoms.torso_ct import CT_LABELS, CT_SIZE, CT_SPACING, write_torso_ct_case

CT_DATASET = "Dataset901_SyntheticTorsoCT"
MR_DATASET = "Dataset902_SyntheticHeadMR"
FILE_ENDING = ".nii.gz"

_TRUTH_FILE = "truth.json"


def _scaled_grid(size, spacing, size_scale: float):
    """Scale the voxel count by size_scale while keeping the physical field of view."""
    scaled = tuple(max(8, round(n * size_scale)) for n in size)
    return scaled, tuple(s * n / m for s, n, m in zip(spacing, size, scaled))


def prepare_dataset_dir(root: Path, name: str) -> Path:
    """An empty `root/name` with imagesTr/ and labelsTr/; replaces only a SYNTHETIC dataset written here."""
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


def write_dataset_json(folder: Path, name: str, channels: dict, labels: dict, n_cases: int, description: str) -> None:
    """dataset.json of a SYNTHETIC phantom dataset (nnU-Net v2 fields plus ``"synthetic": true``)."""
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


def _write_dataset_meta(folder, name, channels, labels, n_cases, description, truth_cases):
    write_dataset_json(folder, name, channels, labels, n_cases, description)
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

    ct_dir = prepare_dataset_dir(root, CT_DATASET)
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

    mr_dir = prepare_dataset_dir(root, MR_DATASET)
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
