"""The Medical Segmentation Decathlon layout.

    TaskNN_Name/dataset.json   modality {"0": "FLAIR", "1": "T1w"}, labels {"0": "background", "1": "edema"},
                               training [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}]
    TaskNN_Name/imagesTr/x.nii.gz   3D, or 4D with the channels along the 4th dimension (in `modality` order)
    TaskNN_Name/labelsTr/x.nii.gz

Only the `training` list is read (the Decathlon's test images have no labels). With more than one
modality each channel is one volume of the 4D file (`ChannelSource.component`); with one modality the
image must be 3D, and a 4D file is rejected by the meta filter as usual.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.importers.files import DatasetLayoutError, json_or_none, read_json, strip_image_ending, value_names
from pipeline.records import CaseRecord, ChannelSource

LAYOUT = "Medical Segmentation Decathlon"


def is_msd_dataset(path: Path) -> bool:
    """dataset.json with `modality` and `training` (and not nnU-Net v2's `channel_names`)."""
    meta = json_or_none(path / "dataset.json")
    return meta is not None and "modality" in meta and "training" in meta and "channel_names" not in meta


def read_msd_dataset(dataset_dir: Path) -> list[CaseRecord]:
    """One `CaseRecord` per entry of `training`, in case id order."""
    json_path = dataset_dir / "dataset.json"
    meta = read_json(json_path, ("modality", "labels", "training"), LAYOUT)
    if not isinstance(meta["modality"], dict) or not meta["modality"]:
        raise DatasetLayoutError(
            f"{json_path}: `modality` must map channel numbers to names, e.g. {{\"0\": \"CT\"}}"
        )
    if not isinstance(meta["training"], list):
        raise DatasetLayoutError(
            f"{json_path}: `training` must be a list of {{\"image\": ..., \"label\": ...}}"
        )
    modalities = value_names_with_zero(meta["modality"], json_path)
    label_names = value_names(meta["labels"], json_path)
    several = len(modalities) > 1
    synthetic = bool(meta.get("synthetic", False))

    records = {}
    for entry in meta["training"]:
        if not (isinstance(entry, dict) and isinstance(entry.get("image"), str) and isinstance(entry.get("label"), str)):
            raise DatasetLayoutError(
                f"{json_path}: every `training` entry needs \"image\" and \"label\" paths, got {entry!r}"
            )
        image_path = dataset_dir / entry["image"]
        label_path = dataset_dir / entry["label"]
        case_id = strip_image_ending(image_path.name) or image_path.name
        problems = []
        if not image_path.is_file():
            problems.append(f"image file missing: {entry['image']} (listed in dataset.json)")
        if not label_path.is_file():
            problems.append(f"label file missing: {entry['label']} (listed in dataset.json)")
        if case_id in records:
            problems.append(f"case {case_id} is listed twice in dataset.json")
        channels = [
            ChannelSource(index=index, name=name, path=image_path, component=index if several else None)
            for index, name in sorted(modalities.items())
        ]
        records[case_id] = CaseRecord(
            dataset=dataset_dir.name,
            case_id=case_id,
            channels=channels,
            label_path=label_path,
            label_names=label_names,
            synthetic=synthetic,
            problems=problems,
        )
    return [records[case_id] for case_id in sorted(records)]


def value_names_with_zero(mapping: dict, path: Path) -> dict[int, str]:
    """{"0": "T1", "1": "T2"} -> {0: "T1", 1: "T2"}; channel numbers must run 0, 1, 2..."""
    try:
        channels = {int(key): str(name) for key, name in mapping.items()}
    except (TypeError, ValueError):
        raise DatasetLayoutError(f"{path}: `modality` keys must be channel numbers, got {list(mapping)}") from None
    if sorted(channels) != list(range(len(channels))):
        raise DatasetLayoutError(
            f"{path}: `modality` channel numbers must be 0..{len(channels) - 1}, got {sorted(channels)}"
        )
    return channels
