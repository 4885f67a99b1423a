"""Tests for pipeline.phantoms.

Arrays are (z, y, x); world positions are LPS mm (+x = patient's left). Centroids are
computed here from the label images through SimpleITK's own index-to-world transform, not
through the generator's code, so a geometry bug in the generator cannot hide itself.
"""

import json
from pathlib import Path

import cc3d
import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from pipeline import phantoms
from pipeline.phantoms import CT_DATASET, CT_LABELS, MR_DATASET, MR_LABELS


@pytest.fixture(scope="module")
def default_set(tmp_path_factory) -> tuple[Path, Path]:
    ct_dir, mr_dir = phantoms.write_phantom_datasets(tmp_path_factory.mktemp("phantoms"))
    return ct_dir, mr_dir


def _read(path: Path) -> tuple[sitk.Image, np.ndarray]:
    image = sitk.ReadImage(str(path))
    return image, sitk.GetArrayFromImage(image)


def _ct_case(ct_dir: Path, case: str):
    image, hu = _read(ct_dir / "imagesTr" / f"{case}_0000.nii.gz")
    label_image, label = _read(ct_dir / "labelsTr" / f"{case}.nii.gz")
    return image, hu, label_image, label


def _world_centroid(image: sitk.Image, mask: np.ndarray) -> np.ndarray:
    """LPS centroid (mm) of a (z, y, x) mask; the index-to-world map is affine, so map the mean index."""
    zyx = np.argwhere(mask).mean(axis=0)
    return np.array(image.TransformContinuousIndexToPhysicalPoint(zyx[::-1].tolist()))


def _world_x(image: sitk.Image, mask: np.ndarray) -> np.ndarray:
    """World x (mm) of every voxel in a (z, y, x) mask."""
    xyz = np.argwhere(mask)[:, ::-1].astype(float)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return image.GetOrigin()[0] + (xyz * image.GetSpacing()) @ direction[0]


def _components(mask: np.ndarray) -> list[np.ndarray]:
    labels, n = cc3d.connected_components(mask.astype(np.uint8), return_N=True)
    return [labels == i for i in range(1, n + 1)]


def _case_ids(dataset_dir: Path) -> list[str]:
    return sorted(p.name.removesuffix(".nii.gz") for p in (dataset_dir / "labelsTr").iterdir())


def test_layout_and_dataset_json(default_set):
    for dataset_dir, name, channels, labels in (
        (default_set[0], CT_DATASET, {"0": "CT"}, CT_LABELS),
        (default_set[1], MR_DATASET, {"0": "T1", "1": "FLAIR"}, MR_LABELS),
    ):
        assert dataset_dir.name == name and "Synthetic" in name
        meta = json.loads((dataset_dir / "dataset.json").read_text())
        assert meta["synthetic"] is True
        assert meta["description"].startswith("SYNTHETIC phantom")
        assert meta["channel_names"] == channels
        assert meta["labels"] == labels and meta["labels"]["background"] == 0
        assert meta["file_ending"] == ".nii.gz"
        cases = _case_ids(dataset_dir)
        assert meta["numTraining"] == len(cases) > 0
        assert all(case.startswith("phantom") for case in cases)
        expected_images = {f"{c}_{int(ch):04d}.nii.gz" for c in cases for ch in channels}
        assert {p.name for p in (dataset_dir / "imagesTr").iterdir()} == expected_images
        truth = json.loads((dataset_dir / "truth.json").read_text())
        assert sorted(truth["cases"]) == cases
    assert len(_case_ids(default_set[0])) == 4 and len(_case_ids(default_set[1])) == 3


def test_same_seed_identical_other_seed_differs(tmp_path):
    runs = {
        key: phantoms.write_phantom_datasets(tmp_path / key, seed=seed, n_ct=2, n_mr=1, size_scale=0.5)
        for key, seed in (("a", 7), ("b", 7), ("c", 8))
    }
    for dataset_a, dataset_b, dataset_c in zip(runs["a"], runs["b"], runs["c"]):
        files = sorted(p.relative_to(dataset_a) for p in dataset_a.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(dataset_b) for p in dataset_b.rglob("*") if p.is_file())
        for rel in files:
            assert (dataset_a / rel).read_bytes() == (dataset_b / rel).read_bytes(), rel
        for rel in (f for f in files if f.name.endswith(".nii.gz")):
            image_a, array_a = _read(dataset_a / rel)
            image_c, array_c = _read(dataset_c / rel)
            assert image_a.GetSize() == image_c.GetSize()
            assert not np.array_equal(array_a, array_c), rel


def test_ct_sides_are_correct_in_world(default_set):
    ct_dir = default_set[0]
    directions = set()
    for case in _case_ids(ct_dir):
        image, _, label_image, label = _ct_case(ct_dir, case)
        truth = phantoms.phantom_truth(ct_dir, case)
        directions.add(image.GetDirection())
        assert label_image.GetDirection() == image.GetDirection()
        midline = truth["body_midline_x_mm"]

        liver = max(_components(label == CT_LABELS["liver"]), key=np.sum)
        assert _world_centroid(image, liver)[0] < midline - 10, case
        assert _world_centroid(image, label == CT_LABELS["spleen"])[0] > midline + 10, case
        assert _world_centroid(image, label == CT_LABELS["adrenal_gland_left"])[0] > midline, case
        assert _world_centroid(image, label == CT_LABELS["adrenal_gland_right"])[0] < midline, case

        for structure in ("lung", "kidney"):
            pieces = _components(label == CT_LABELS[structure])
            recorded = truth["paired"][structure]
            assert len(pieces) == len(recorded), (case, structure)
            for piece in pieces:
                centroid = _world_centroid(image, piece)
                side = "left" if centroid[0] > midline else "right"
                assert np.allclose(centroid, recorded[side]["centroid_mm"], atol=0.01), (case, structure)
                assert piece.sum() == recorded[side]["voxels"]
    assert directions == {
        tuple(phantoms.LPS_DIRECTION.ravel()),
        tuple(phantoms.RAS_ON_DISK_DIRECTION.ravel()),
    }


def test_one_case_has_right_kidney_only(default_set):
    ct_dir = default_set[0]
    single = [
        case
        for case in _case_ids(ct_dir)
        if set(phantoms.phantom_truth(ct_dir, case)["paired"]["kidney"]) == {"right"}
    ]
    assert len(single) == 1
    image, _, _, label = _ct_case(ct_dir, single[0])
    kidney_x = _world_x(image, label == CT_LABELS["kidney"])
    assert kidney_x.size > 0
    assert np.all(kidney_x < phantoms.phantom_truth(ct_dir, single[0])["body_midline_x_mm"])


def test_fov_centre_split_would_be_wrong(default_set):
    ct_dir = default_set[0]
    for case in _case_ids(ct_dir):
        image, _, _, label = _ct_case(ct_dir, case)
        truth = phantoms.phantom_truth(ct_dir, case)
        fov_x = truth["fov_centre_mm"][0]
        centre_index = [(n - 1) / 2 for n in image.GetSize()]
        centre_x = image.TransformContinuousIndexToPhysicalPoint(centre_index)[0]
        assert centre_x == pytest.approx(fov_x, abs=0.01)
        assert abs(truth["body_midline_x_mm"] - fov_x) > 25
        # Some lung lies on the far side of the FOV centre from where the body outline puts it.
        straddling = [
            piece
            for piece in _components(label == CT_LABELS["lung"])
            if _world_x(image, piece).min() < fov_x < _world_x(image, piece).max()
        ]
        assert straddling, case


def test_liver_has_one_isolated_speck(default_set):
    ct_dir = default_set[0]
    for case in _case_ids(ct_dir):
        image, _, _, label = _ct_case(ct_dir, case)
        pieces = sorted(_components(label == CT_LABELS["liver"]), key=np.sum)
        assert len(pieces) == 2, case
        speck, liver = pieces
        assert 1 <= speck.sum() <= 3
        gap = np.linalg.norm(_world_centroid(image, speck) - _world_centroid(image, liver))
        assert gap > 40


def test_ct_intensities_plausible(default_set):
    ct_dir = default_set[0]
    expected = {
        "liver": (45, 75),
        "spleen": (35, 65),
        "kidney": (20, 50),
        "lung": (-900, -800),
        "vertebrae": (600, 800),
        "aorta": (150, 250),
        "liver_lesion": (-10, 30),
    }
    for case in _case_ids(ct_dir):
        image, hu, _, label = _ct_case(ct_dir, case)
        assert image.GetPixelID() == sitk.sitkInt16
        assert -1024 <= hu.min() and hu.max() < 1000
        assert -1020 < hu[0, 0, 0] < -980  # a corner is air
        for name, (low, high) in expected.items():
            assert low < np.median(hu[label == CT_LABELS[name]]) < high, (case, name)
        extent_mm = np.array(image.GetSize()) * image.GetSpacing()
        assert np.all(extent_mm > 15) and np.prod(extent_mm) > 1000


def test_mr_channels_geometry_and_sides(default_set):
    mr_dir = default_set[1]
    sides = []
    for case in _case_ids(mr_dir):
        label_image, label = _read(mr_dir / "labelsTr" / f"{case}.nii.gz")
        truth = phantoms.phantom_truth(mr_dir, case)
        midline = truth["body_midline_x_mm"]
        for channel in (0, 1):
            image, values = _read(mr_dir / "imagesTr" / f"{case}_{channel:04d}.nii.gz")
            assert image.GetPixelID() == sitk.sitkFloat32
            for getter in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
                assert getattr(image, getter)() == getattr(label_image, getter)()
            assert 300 < np.median(values[label == MR_LABELS["brain"]]) < 800
            assert abs(np.median(values[0])) < 30  # the first slice is background
        assert label_image.GetDirection() == tuple(np.eye(3).ravel())

        left = _world_centroid(label_image, label == MR_LABELS["lateral_ventricle_left"])
        right = _world_centroid(label_image, label == MR_LABELS["lateral_ventricle_right"])
        assert right[0] < midline < left[0]
        for side, centroid in (("left", left), ("right", right)):
            recorded = truth["paired"]["lateral_ventricle"][side]["centroid_mm"]
            assert np.allclose(centroid, recorded, atol=0.01)

        sign = 1 if truth["tumor_side"] == "left" else -1
        for name in ("tumor", "edema"):
            offsets = _world_x(label_image, label == MR_LABELS[name]) - midline
            assert np.all(sign * offsets > 0), (case, name)
        sides.append(truth["tumor_side"])
    assert sides == ["left", "right", "left"]


def test_oblique_case_keeps_anatomy(tmp_path):
    direction = Rotation.from_euler("zx", [25.0, 12.0], degrees=True).as_matrix()
    truth = phantoms.write_torso_ct_case(
        tmp_path / "img.nii.gz",
        tmp_path / "lab.nii.gz",
        seed=3,
        size=(64, 64, 48),
        spacing=(4.0, 4.0, 4.0),
        direction=direction,
        fov_centre=(20.0, -15.0, 100.0),
        body_offset_x=-30.0,
    )
    image = sitk.ReadImage(str(tmp_path / "img.nii.gz"))
    label = sitk.ReadImage(str(tmp_path / "lab.nii.gz"))
    assert np.allclose(image.GetDirection(), direction.ravel())
    assert np.allclose(label.GetDirection(), direction.ravel())
    labels = sitk.GetArrayFromImage(label)
    midline = truth["body_midline_x_mm"]
    assert midline == pytest.approx(-10.0)
    liver = max(_components(labels == CT_LABELS["liver"]), key=np.sum)
    assert _world_centroid(label, liver)[0] < midline
    assert _world_centroid(label, labels == CT_LABELS["spleen"])[0] > midline
    assert truth["paired"]["kidney"]["left"]["centroid_mm"][0] > midline
    assert truth["paired"]["kidney"]["right"]["centroid_mm"][0] < midline


def test_size_scale_keeps_field_of_view(tmp_path, default_set):
    small_ct, _ = phantoms.write_phantom_datasets(tmp_path, n_ct=1, n_mr=1, size_scale=0.5)
    full, _ = _read(default_set[0] / "imagesTr" / "phantom_ct_000_0000.nii.gz")
    small, _ = _read(small_ct / "imagesTr" / "phantom_ct_000_0000.nii.gz")
    assert small.GetSize() == (48, 48, 32)
    assert np.allclose(
        np.array(small.GetSize()) * small.GetSpacing(), np.array(full.GetSize()) * full.GetSpacing()
    )


def test_refuses_to_replace_foreign_folder(tmp_path):
    (tmp_path / CT_DATASET).mkdir()
    (tmp_path / CT_DATASET / "dataset.json").write_text(json.dumps({"name": "real data"}))
    with pytest.raises(FileExistsError):
        phantoms.write_phantom_datasets(tmp_path, n_ct=1, n_mr=1, size_scale=0.5)
