"""DICOM images with label maps beside them. This project's convention (DICOM has no standard for it):

    DATASET/labels.json            {"labels": {"1": "liver", "2": "spleen"}}  (label value -> name)
                                   optional "modality": "CT" (else each series' Modality tag, 0008|0060)
    DATASET/<case>/image/          the files of ONE DICOM series (any file names)
    DATASET/<case>/label.nii.gz    the label map on the series' voxel grid (or label.nii, .nrrd, .mha)

Series are read with SimpleITK's ImageSeriesReader in GDCM's slice order; a folder with several series
or none, or a case without a label map, becomes a rejected row with that reason.
"""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from pipeline.importers.files import DatasetLayoutError, image_files, read_json, value_names
from pipeline.records import CaseRecord, ChannelSource

LABELS_JSON = "labels.json"
LAYOUT = "DICOM"
# DICOM Modality tag value -> channel name understood by `pipeline.records.modality_of`.
_MODALITY_TAG = {"CT": "CT", "MR": "MR", "PT": "PET", "US": "US"}


def case_folders(path: Path) -> list[Path]:
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_dir() and (p / "image").is_dir())


def is_dicom_dataset(path: Path) -> bool:
    return (path / LABELS_JSON).is_file() and bool(case_folders(path))


def series_modality(folder: Path) -> str | None:
    """Channel name from the Modality tag of the first readable file in `folder`, or None."""
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            continue
        if reader.HasMetaDataKey("0008|0060"):
            tag = reader.GetMetaData("0008|0060").strip().upper()
            return _MODALITY_TAG.get(tag, tag)
        return None
    return None


def read_dicom_dataset(dataset_dir: Path) -> list[CaseRecord]:
    """One `CaseRecord` per <case>/image/ folder, with its DICOM series as the only channel."""
    json_path = dataset_dir / LABELS_JSON
    meta = read_json(json_path, ("labels",), LAYOUT)
    if not isinstance(meta["labels"], dict):
        raise DatasetLayoutError(f"{json_path}: `labels` must map label values to names, e.g. {{\"1\": \"liver\"}}")
    label_names = value_names(meta["labels"], json_path)
    records = []
    for case_dir in case_folders(dataset_dir):
        problems = []
        label_path = image_files(case_dir).get("label")
        if label_path is None:
            label_path = case_dir / "label.nii.gz"
            problems.append(f"label file missing: {case_dir.name}/label.nii.gz (or .nii, .nrrd, .mha)")
        channel_name = meta.get("modality") or series_modality(case_dir / "image")
        if not channel_name:
            problems.append(
                f"cannot tell the modality of {case_dir.name}/image/: no Modality tag (0008|0060) and no "
                f"\"modality\" in {LABELS_JSON}"
            )
        records.append(
            CaseRecord(
                dataset=dataset_dir.name,
                case_id=case_dir.name,
                channels=[ChannelSource(0, str(channel_name or "unknown"), case_dir / "image")],
                label_path=label_path,
                label_names=label_names,
                problems=problems,
            )
        )
    return records
