"""The nnU-Net v2 raw layout.

    DatasetNNN_Name/dataset.json   channel_names {"0": "CT"}, labels {name: int}, file_ending, numTraining
    DatasetNNN_Name/imagesTr/<case>_<channel:04d><file_ending>
    DatasetNNN_Name/labelsTr/<case><file_ending>

dataset.json may also list the files explicitly under "dataset": {case: {"images": [...], "label": ...}},
paths relative to the dataset folder; then those names are used instead of the folder listing.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.importers.files import DatasetLayoutError
from pipeline.records import CaseRecord, ChannelSource

__all__ = ["DatasetLayoutError", "is_nnunet_v2_dataset", "read_nnunet_v2_dataset"]


def is_nnunet_v2_dataset(path: Path) -> bool:
    """dataset.json beside imagesTr/ (a Decathlon dataset looks the same: `detect_layout` asks first)."""
    return (path / "dataset.json").is_file() and (path / "imagesTr").is_dir()


def _load_dataset_json(dataset_dir: Path) -> dict:
    json_path = dataset_dir / "dataset.json"
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetLayoutError(f"{json_path} cannot be read as JSON: {error}") from error
    missing = [key for key in ("channel_names", "labels", "file_ending") if key not in meta]
    if missing:
        raise DatasetLayoutError(f"{json_path} lacks the keys {missing} of the nnU-Net v2 layout")
    return meta


def _label_names(labels: dict) -> dict[int, str]:
    """Value -> name. Region entries (a list of values, nnU-Net's region-based training) are not masks."""
    names = {}
    for name, value in labels.items():
        if isinstance(value, int) and value != 0:
            names[value] = name
    return names


def read_nnunet_v2_dataset(dataset_dir: Path) -> list[CaseRecord]:
    """One `CaseRecord` per case found in imagesTr or labelsTr (or listed in dataset.json)."""
    meta = _load_dataset_json(dataset_dir)
    ending = meta["file_ending"]
    channels = {int(k): str(v) for k, v in meta["channel_names"].items()}
    label_names = _label_names(meta["labels"])
    synthetic = bool(meta.get("synthetic", False))

    if isinstance(meta.get("dataset"), dict):
        listing = {
            case: ([dataset_dir / p for p in entry.get("images", [])], dataset_dir / entry["label"])
            for case, entry in meta["dataset"].items()
        }
    else:
        listing = _listing_from_folders(dataset_dir, ending, channels)

    records = []
    for case_id in sorted(listing):
        image_paths, label_path = listing[case_id]
        problems = []
        sources = []
        for index, name in sorted(channels.items()):
            path = image_paths[index] if index < len(image_paths) else (
                dataset_dir / "imagesTr" / f"{case_id}_{index:04d}{ending}"
            )
            sources.append(ChannelSource(index=index, name=name, path=path))
            if not path.is_file():
                problems.append(f"image file missing: {path.relative_to(dataset_dir)} (channel {index} {name})")
        if not label_path.is_file():
            problems.append(f"label file missing: {label_path.relative_to(dataset_dir)}")
        records.append(
            CaseRecord(
                dataset=dataset_dir.name,
                case_id=case_id,
                channels=sources,
                label_path=label_path,
                label_names=label_names,
                synthetic=synthetic,
                problems=problems,
            )
        )
    return records


def _listing_from_folders(dataset_dir: Path, ending: str, channels: dict[int, str]) -> dict:
    cases: set[str] = set()
    for path in (dataset_dir / "imagesTr").glob(f"*{ending}"):
        stem = path.name[: -len(ending)]
        case_id, _, channel = stem.rpartition("_")
        if case_id and channel.isdigit() and len(channel) == 4:
            cases.add(case_id)
    labels_dir = dataset_dir / "labelsTr"
    if labels_dir.is_dir():
        cases.update(p.name[: -len(ending)] for p in labels_dir.glob(f"*{ending}"))
    return {
        case: (
            [dataset_dir / "imagesTr" / f"{case}_{index:04d}{ending}" for index in range(max(channels) + 1)],
            labels_dir / f"{case}{ending}",
        )
        for case in cases
    }
