"""Layouts other than nnU-Net v2 give the same curation as the nnU-Net copy of the same REAL cases.

Each test converts real sample cases (../shared/data/raw, read-only) into another layout under tmp_path,
curates both records with `curate_case`, and compares rows and stored arrays. Columns left out of the
comparison, and why:
- identities: image_id, dataset, case_id, mask_id, image_path, label_path, shard_path (other names);
- source bytes: image_sha256, label_sha256, source_hash (other files: a 4D file, a DICOM series, masks);
- split: assigned over the whole catalog later (null here);
- source_label, label_value: the label values each layout assigns (Decathlon keeps them; the mask-file
  layouts number structures in name order), and the mask's position that follows from them.
Reasons are compared exactly except the value quoted in "label value N absent from the label map".
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.case_masks import OVERLAPPING_MASKS
from pipeline.config import CurationConfig
from pipeline.curate import curate_case
from pipeline.importers import DatasetLayoutError, detect_layout, discover_dataset_dirs, read_dataset
from pipeline.io import read_header, read_volume
from pipeline.label_masks import merge_binary_masks
from pipeline.phantoms import CT_LABELS, make_torso_ct_case

IMAGE_IDENTITY = {"image_id", "dataset", "case_id", "image_path", "label_path", "shard_path", "image_sha256",
                  "label_sha256", "source_hash", "split"}
MASK_IDENTITY = {"mask_id", "image_id", "dataset", "case_id", "split", "source_label", "label_value"}
CONFIG = CurationConfig()


def nnunet_case(raw_data: Path, dataset: str, case_id: str):
    return next(c for c in read_dataset(raw_data / dataset) if c.case_id == case_id)


def binary_masks(label_path: Path) -> dict[int, sitk.Image]:
    """Label value -> binary mask (uint8) of every value present in a label map."""
    label = sitk.ReadImage(str(label_path))
    array = sitk.GetArrayFromImage(label)
    masks = {}
    for value in np.unique(array[array != 0]).astype(int):
        mask = sitk.GetImageFromArray((array == value).astype(np.uint8))
        mask.CopyInformation(label)
        masks[int(value)] = mask
    return masks


def _normalise(value):
    if isinstance(value, str):
        return re.sub(r"label value \d+ absent", "label value N absent", value)
    return value


def assert_rows_equal(expected: dict, actual: dict, ignore: set[str]) -> None:
    for column in sorted(set(expected) - ignore):
        e, a = _normalise(expected[column]), _normalise(actual[column])
        numeric = isinstance(e, float) or (isinstance(e, list) and e and isinstance(e[0], float))
        if numeric:
            assert np.allclose(e, a, rtol=1e-6, atol=1e-4), f"{column}: {e} != {a}"
        else:
            assert e == a, f"{column}: {e!r} != {a!r}"


def assert_same_curation(expected, actual, *, ignore_image=frozenset(), absent_labels_listed=True) -> None:
    """Same rows (but the columns named in the module docstring) and the same stored arrays, per category."""
    assert len(expected.images) == len(actual.images)
    for e_image, a_image in zip(expected.images, actual.images):
        assert_rows_equal(e_image.row, a_image.row, IMAGE_IDENTITY | set(ignore_image))
        assert np.array_equal(e_image.image, a_image.image)
        assert np.allclose(e_image.geometry.origin_xyz, a_image.geometry.origin_xyz, atol=1e-4)
        assert e_image.geometry.spacing_xyz == a_image.geometry.spacing_xyz
        e_masks = {m["category"]: m for m in expected.masks if m["image_id"] == e_image.row["image_id"]}
        a_masks = {m["category"]: m for m in actual.masks if m["image_id"] == a_image.row["image_id"]}
        if not absent_labels_listed:
            e_masks = {c: m for c, m in e_masks.items() if "absent from the label map" not in (m["reason"] or "")}
        assert sorted(e_masks) == sorted(a_masks)
        for category, e_mask in e_masks.items():
            a_mask = a_masks[category]
            assert_rows_equal(e_mask, a_mask, MASK_IDENTITY)
            if e_mask["status"] == "kept":
                assert np.array_equal(e_image.label == e_mask["label_value"], a_image.label == a_mask["label_value"])


@pytest.fixture(scope="module")
def nnunet_results(raw_data):
    """curate_case of the nnU-Net originals, shared by the layout tests."""
    cases = {
        "brats": nnunet_case(raw_data, "Dataset004_BraTS2013", "brats13_pat0002"),
        "ts_mr": nnunet_case(raw_data, "Dataset003_TotalSegMR", "ts_mr"),
        "ts_ct_sm": nnunet_case(raw_data, "Dataset001_TotalSegCT", "ts_ct_sm"),
    }
    return cases, {name: curate_case(case, CONFIG) for name, case in cases.items()}


def write_msd_copy(raw_data: Path, root: Path) -> Path:
    """BraTS 2013 case 0002 as a Decathlon task: FLAIR and T1c in one 4D file; one listed case is absent."""
    task = root / "Task01_BrainTumour"
    (task / "imagesTr").mkdir(parents=True)
    (task / "labelsTr").mkdir()
    source = raw_data / "Dataset004_BraTS2013"
    channels = [sitk.ReadImage(str(source / "imagesTr" / f"brats13_pat0002_{c:04d}.nii.gz")) for c in (0, 1)]
    sitk.WriteImage(sitk.JoinSeries(channels), str(task / "imagesTr" / "brats13_pat0002.nii.gz"))
    shutil.copy(source / "labelsTr" / "brats13_pat0002.nii.gz", task / "labelsTr" / "brats13_pat0002.nii.gz")
    meta = json.loads((source / "dataset.json").read_text())
    json.dump({
        "name": "BRATS", "modality": {"0": "FLAIR", "1": "T1c"},
        "labels": {str(value): name for name, value in meta["labels"].items()},
        "training": [{"image": "./imagesTr/brats13_pat0002.nii.gz", "label": "./labelsTr/brats13_pat0002.nii.gz"},
                     {"image": "./imagesTr/brats13_absent.nii.gz", "label": "./labelsTr/brats13_absent.nii.gz"}],
        "test": [],
    }, open(task / "dataset.json", "w"))
    return task


def test_decathlon_4d_channels_curate_like_the_nnunet_channels(raw_data, nnunet_results, tmp_path):
    task = write_msd_copy(raw_data, tmp_path)
    assert detect_layout(task) == "msd"
    cases = read_dataset(task)
    assert [c.case_id for c in cases] == ["brats13_absent", "brats13_pat0002"]
    case = cases[1]
    assert [(c.index, c.name, c.component) for c in case.channels] == [(0, "FLAIR", 0), (1, "T1c", 1)]
    assert_same_curation(nnunet_results[1]["brats"], curate_case(case, CONFIG))

    absent = curate_case(cases[0], CONFIG)
    assert {i.row["status"] for i in absent.images} == {"rejected"}
    assert "image file missing: ./imagesTr/brats13_absent.nii.gz" in absent.images[0].row["reason"]
    assert {m["status"] for m in absent.masks} == {"rejected"}


def test_a_4d_component_reads_as_that_channel_and_a_bad_component_is_a_clear_error(raw_data, tmp_path):
    task = write_msd_copy(raw_data, tmp_path)
    path = task / "imagesTr" / "brats13_pat0002.nii.gz"
    t1c = sitk.ReadImage(str(raw_data / "Dataset004_BraTS2013" / "imagesTr" / "brats13_pat0002_0001.nii.gz"))
    header = read_header(path, component=1)
    assert header.dimension == 3 and header.size_xyz == t1c.GetSize()
    assert header.direction == pytest.approx(t1c.GetDirection()) and header.origin_xyz == pytest.approx(t1c.GetOrigin())
    assert np.array_equal(sitk.GetArrayViewFromImage(read_volume(path, component=1)), sitk.GetArrayViewFromImage(t1c))
    with pytest.raises(Exception, match="holds 2 volumes; channel 2"):
        read_header(path, component=2)
    flair = raw_data / "Dataset004_BraTS2013" / "imagesTr" / "brats13_pat0002_0000.nii.gz"
    with pytest.raises(Exception, match="is 3D .* expected along the 4th dimension"):
        read_header(flair, component=0)


def test_sammed3d_layout_merges_one_mask_file_per_category_into_one_case(raw_data, nnunet_results, tmp_path):
    """ts_mr as SAM-Med3D publishes data: <category>/mr_<dataset>/{imagesTr,labelsTr}/ts_mr.nii.gz."""
    source = raw_data / "Dataset003_TotalSegMR"
    names = {value: name for name, value in json.loads((source / "dataset.json").read_text())["labels"].items()}
    root = tmp_path / "sammed3d"
    for value, mask in binary_masks(source / "labelsTr" / "ts_mr.nii.gz").items():
        folder = root / names[value] / "mr_TotalSegMR"
        (folder / "imagesTr").mkdir(parents=True)
        (folder / "labelsTr").mkdir()
        shutil.copy(source / "imagesTr" / "ts_mr_0000.nii.gz", folder / "imagesTr" / "ts_mr.nii.gz")
        sitk.WriteImage(mask, str(folder / "labelsTr" / "ts_mr.nii.gz"))
    assert detect_layout(root) == "sammed3d"
    assert discover_dataset_dirs(tmp_path) == [root]
    (case,) = read_dataset(root)
    assert (case.dataset, case.case_id, case.channels[0].modality) == ("mr_TotalSegMR", "ts_mr", "MR")
    assert len(case.label_mask_paths) == len(binary_masks(source / "labelsTr" / "ts_mr.nii.gz"))
    # The layout has no file for a structure absent from the image, hence no row and a smaller masks_total;
    # its channel is named after the folder prefix ("MR"), the nnU-Net dataset says "MRI".
    assert_same_curation(nnunet_results[1]["ts_mr"], curate_case(case, CONFIG),
                         ignore_image={"channel_name", "masks_total"}, absent_labels_listed=False)


def test_totalsegmentator_layout_gives_the_rows_of_the_nnunet_label_map(raw_data, nnunet_results, tmp_path):
    """ts_ct_sm as TotalSegmentator ships cases: ct.nii.gz + segmentations/<structure>.nii.gz, empty ones too."""
    source = raw_data / "Dataset001_TotalSegCT"
    labels = json.loads((source / "dataset.json").read_text())["labels"]
    case_dir = tmp_path / "TotalSegmentatorSmall" / "ts_ct_sm"
    (case_dir / "segmentations").mkdir(parents=True)
    shutil.copy(source / "imagesTr" / "ts_ct_sm_0000.nii.gz", case_dir / "ct.nii.gz")
    label = sitk.ReadImage(str(source / "labelsTr" / "ts_ct_sm.nii.gz"))
    array = sitk.GetArrayFromImage(label)
    for name, value in labels.items():
        if value:
            mask = sitk.GetImageFromArray((array == value).astype(np.uint8))
            mask.CopyInformation(label)
            sitk.WriteImage(mask, str(case_dir / "segmentations" / f"{name}.nii.gz"))
    (tmp_path / "TotalSegmentatorSmall" / "meta.csv").write_text("image_id;age\nts_ct_sm;0\n")
    assert detect_layout(tmp_path / "TotalSegmentatorSmall") == "totalsegmentator"
    (case,) = read_dataset(tmp_path / "TotalSegmentatorSmall")
    assert case.channels[0].name == "CT" and len(case.label_mask_paths) == len(labels) - 1
    assert_same_curation(nnunet_results[1]["ts_ct_sm"], curate_case(case, CONFIG))


def write_dicom_series(image: sitk.Image, folder: Path, modality: str, series_uid: str) -> None:
    """One DICOM file per axial slice, geometry in the standard tags (position, orientation, spacing)."""
    folder.mkdir(parents=True, exist_ok=True)
    d = image.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")  # file names without the .dcm ending
    writer.KeepOriginalImageUIDOn()

    def decimal(value: float) -> str:  # DICOM decimal strings hold at most 16 characters
        return np.format_float_positional(value, precision=6, trim="-")

    for k in range(image.GetDepth()):
        slice_k = image[:, :, k]
        tags = {
            "0008|0060": modality, "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{series_uid}.{k + 1}", "0020|000d": series_uid.rsplit(".", 1)[0],
            "0020|000e": series_uid, "0020|0013": str(k + 1),
            "0020|0032": "\\".join(decimal(v) for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0020|0037": "\\".join(decimal(v) for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
            "0018|0050": decimal(image.GetSpacing()[2]),
        }
        for key, value in tags.items():
            slice_k.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"IM{series_uid.rsplit('.', 1)[1]}_{k:04d}"))
        writer.Execute(slice_k)


def test_dicom_series_with_a_nifti_label_curates_like_the_nifti_image(raw_data, nnunet_results, tmp_path):
    source = raw_data / "Dataset001_TotalSegCT"
    dataset = tmp_path / "DicomCT"
    image = sitk.ReadImage(str(source / "imagesTr" / "ts_ct_sm_0000.nii.gz"))
    write_dicom_series(image, dataset / "ts_ct_sm" / "image", "CT", "1.2.826.0.1.3680043.2.1125.7.1")
    shutil.copy(source / "labelsTr" / "ts_ct_sm.nii.gz", dataset / "ts_ct_sm" / "label.nii.gz")
    labels = json.loads((source / "dataset.json").read_text())["labels"]
    json.dump({"labels": {str(v): n for n, v in labels.items() if v}}, open(dataset / "labels.json", "w"))
    # A case whose folder holds two series is rejected with that reason.
    write_dicom_series(image[:, :, :10], dataset / "two_series" / "image", "CT", "1.2.826.0.1.3680043.2.1125.7.2")
    write_dicom_series(image[:, :, 10:20], dataset / "two_series" / "image", "CT", "1.2.826.0.1.3680043.2.1125.7.3")
    shutil.copy(source / "labelsTr" / "ts_ct_sm.nii.gz", dataset / "two_series" / "label.nii.gz")

    assert detect_layout(dataset) == "dicom"
    cases = {c.case_id: c for c in read_dataset(dataset)}
    header = read_header(cases["ts_ct_sm"].channels[0].path)
    full = read_volume(cases["ts_ct_sm"].channels[0].path)
    assert header.size_xyz == full.GetSize() and header.direction == pytest.approx(full.GetDirection())
    assert header.spacing_xyz == pytest.approx(full.GetSpacing()) and header.origin_xyz == pytest.approx(full.GetOrigin())
    assert cases["ts_ct_sm"].channels[0].name == "CT"
    assert_same_curation(nnunet_results[1]["ts_ct_sm"], curate_case(cases["ts_ct_sm"], CONFIG))
    rejected = curate_case(cases["two_series"], CONFIG).images[0].row
    assert rejected["status"] == "rejected" and "2 DICOM series" in rejected["reason"]


def test_overlapping_masks_go_to_the_smaller_one_and_flag_the_image(tmp_path):
    """SYNTHETIC phantom torso as a TotalSegmentator case, with a cyst drawn inside the liver."""
    image, label, _ = make_torso_ct_case(seed=3, size=(40, 40, 24), spacing=(6.0, 6.0, 7.5))
    array = sitk.GetArrayFromImage(label)
    liver = array == CT_LABELS["liver"]
    cyst = np.zeros_like(liver)
    z, y, x = (int(v) for v in np.argwhere(liver).mean(axis=0).round())
    cyst[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2] = True
    cyst &= liver
    case_dir = tmp_path / "SyntheticTotalSeg" / "phantom_overlap"
    (case_dir / "segmentations").mkdir(parents=True)
    sitk.WriteImage(image, str(case_dir / "ct.nii.gz"))
    for name, mask in (("liver", liver), ("liver_cyst", cyst), ("spleen", array == CT_LABELS["spleen"])):
        written = sitk.GetImageFromArray(mask.astype(np.uint8))
        written.CopyInformation(label)
        sitk.WriteImage(written, str(case_dir / "segmentations" / f"{name}.nii.gz"))

    (case,) = read_dataset(tmp_path / "SyntheticTotalSeg", layout="totalsegmentator")
    merged = merge_binary_masks(case.label_mask_paths)
    values = {name: value for value, name in case.label_names.items()}
    merged_array = sitk.GetArrayFromImage(merged.image)
    assert merged.overlap_voxels == int(cyst.sum()) > 0
    assert np.array_equal(merged_array == values["liver_cyst"], cyst)
    assert np.array_equal(merged_array == values["liver"], liver & ~cyst)
    result = curate_case(case, CONFIG)
    assert OVERLAPPING_MASKS in result.images[0].row["flags"]
    liver_row = next(m for m in result.masks if m["category"] == "liver")
    assert liver_row["source_voxels"] == int((liver & ~cyst).sum())

    shifted = sitk.GetImageFromArray(cyst.astype(np.uint8))
    shifted.CopyInformation(label)
    shifted.SetOrigin([o + 1.0 for o in label.GetOrigin()])
    sitk.WriteImage(shifted, str(case_dir / "segmentations" / "liver_cyst.nii.gz"))
    row = curate_case(read_dataset(tmp_path / "SyntheticTotalSeg")[0], CONFIG).images[0].row
    assert row["status"] == "rejected" and "lie on different voxel grids" in row["reason"]


def test_layout_detection_override_and_errors(raw_data, tmp_path):
    assert [detect_layout(d) for d in discover_dataset_dirs(raw_data)] == ["nnunet_v2"] * 9
    assert discover_dataset_dirs(raw_data, layout="nnunet_v2") == discover_dataset_dirs(raw_data)
    with pytest.raises(DatasetLayoutError, match="neither a msd dataset"):
        discover_dataset_dirs(raw_data, layout="msd")
    with pytest.raises(ValueError, match="unknown layout 'nifti'"):
        discover_dataset_dirs(raw_data, layout="nifti")
    # A SAM-Med3D dataset folder without a modality prefix: its cases are rejected, with the reason.
    folder = tmp_path / "liver" / "WORD"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    for sub in ("imagesTr", "labelsTr"):
        shutil.copy(raw_data / "Dataset006_BraTS2021Edema" / sub / ("brats21_01646_0000.nii.gz" if sub == "imagesTr"
                    else "brats21_01646.nii.gz"), folder / sub / "case1.nii.gz")
    (case,) = read_dataset(tmp_path)
    assert "cannot tell the modality of dataset folder WORD" in case.problems[0]
    assert curate_case(case, CONFIG).images[0].row["status"] == "rejected"


def test_non_ascii_label_names_are_read_whatever_the_process_locale(raw_data, tmp_path):
    """dataset.json is UTF-8 by definition. A C library may switch the process to an ASCII locale at run
    time (GDCM's DICOM writer does), which must not change how the files are decoded."""
    import locale

    source = raw_data / "Dataset003_TotalSegMR"
    dataset = tmp_path / "Dataset903_Umlaut"
    shutil.copytree(source, dataset)
    meta = json.loads((source / "dataset.json").read_text(encoding="utf-8"))
    first = next(name for name, value in meta["labels"].items() if value)
    meta["labels"] = {("Gehirnstück" if name == first else name): value for name, value in meta["labels"].items()}
    (dataset / "dataset.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    previous = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        assert locale.getpreferredencoding(False) != "UTF-8"
        (case,) = read_dataset(dataset)
        rows = curate_case(case, CONFIG).masks
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)
    assert "Gehirnstück" in {row["source_name"] for row in rows}
