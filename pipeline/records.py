"""The in-memory case record every importer yields, whatever the dataset layout on disk."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Channel names that mean CT; every other radiology sequence name is MR unless listed below.
_CT_NAMES = {"ct", "cta", "ncct", "cect"}
_OTHER_MODALITIES = {"pet": "PET", "us": "US", "ultrasound": "US", "xray": "XR", "cbct": "CT"}


def modality_of(channel_name: str) -> str:
    """Catalog modality ("CT", "MR", "PET", "US") from a dataset's channel name ("CT", "FLAIR", "T1c"...).

    Training picks intensity normalisation from this value, never from a path.
    """
    key = channel_name.strip().lower().replace(" ", "").replace("-", "")
    if key in _CT_NAMES:
        return "CT"
    if key in _OTHER_MODALITIES:
        return _OTHER_MODALITIES[key]
    return "MR"


@dataclass(frozen=True)
class ChannelSource:
    """One image channel of a case. `path` is an image file, or a folder holding one DICOM series.

    `component` is set when several channels share one 4D file (the Medical Segmentation Decathlon
    layout): the channel is the 3D volume at that index of the file's 4th dimension.
    """

    index: int
    name: str
    path: Path
    component: int | None = None

    @property
    def modality(self) -> str:
        return modality_of(self.name)


@dataclass
class CaseRecord:
    """One case: its image channels (each becomes its own catalog image) and one label map.

    `label_names` maps label value -> the dataset's own name. `problems` holds reasons found while
    reading the layout (a named file that does not exist, ...); a case with problems is rejected whole.

    Layouts with one binary mask file per structure (SAM-Med3D, TotalSegmentator) set
    `label_mask_paths` (label value -> mask file); the label map is then their union
    (`pipeline.label_masks.merge_binary_masks`) and `label_path` names the first of them.
    """

    dataset: str
    case_id: str
    channels: list[ChannelSource]
    label_path: Path | None
    label_names: dict[int, str]
    synthetic: bool = False
    problems: list[str] = field(default_factory=list)
    label_mask_paths: dict[int, Path] = field(default_factory=dict)

    def image_id(self, channel: ChannelSource) -> str:
        return image_id_for(self.dataset, self.case_id, channel.index)


def image_id_for(dataset: str, case_id: str, channel: int) -> str:
    return f"{dataset}__{case_id}_{channel:04d}"
