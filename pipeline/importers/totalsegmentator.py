"""The TotalSegmentator dataset layout: a folder per case, one binary mask file per structure.

    DATASET/<case>/ct.nii.gz                       the image (mri.nii.gz in the MR release)
    DATASET/<case>/segmentations/<structure>.nii.gz   binary mask (nonzero = inside), one per structure

Each case becomes one catalog case whose label map is the union of its masks, label values 1, 2, ...
in structure-file name order; where masks overlap the smaller mask keeps the shared voxels
(`pipeline.label_masks`). Empty mask files (TotalSegmentator writes one for every structure, present or
not) give the usual "absent from the label map" rows. Other files in DATASET (meta.csv, ...) are ignored.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.importers.files import image_files
from pipeline.records import CaseRecord, ChannelSource

# Image file name -> channel name; the first present is the case's image.
IMAGE_NAMES = {"ct": "CT", "mri": "MR"}


def case_folders(path: Path) -> list[Path]:
    """Sub-folders holding a `segmentations/` folder or a ct/mri image (a case missing one is rejected)."""
    if not path.is_dir():
        return []
    return sorted(
        p for p in path.iterdir()
        if p.is_dir() and ((p / "segmentations").is_dir() or any(n in image_files(p) for n in IMAGE_NAMES))
    )


def is_totalsegmentator_dataset(path: Path) -> bool:
    """At least one case folder with both its image and `segmentations/`."""
    return any((p / "segmentations").is_dir() and any(n in image_files(p) for n in IMAGE_NAMES) for p in case_folders(path))


def read_totalsegmentator_dataset(dataset_dir: Path) -> list[CaseRecord]:
    """One `CaseRecord` per case folder; structures named by their mask file names."""
    records = []
    for case_dir in case_folders(dataset_dir):
        images = image_files(case_dir)
        masks = image_files(case_dir / "segmentations")
        problems = []
        name = next((n for n in IMAGE_NAMES if n in images), None)
        if name is None:
            problems.append(f"image file missing: {case_dir.name}/ has no {' or '.join(IMAGE_NAMES)} image")
        if not masks:
            problems.append(f"no mask files in {case_dir.name}/segmentations/")
        mask_paths = {value: masks[s] for value, s in enumerate(sorted(masks), start=1)}
        records.append(
            CaseRecord(
                dataset=dataset_dir.name,
                case_id=case_dir.name,
                channels=[ChannelSource(0, IMAGE_NAMES[name or "ct"], images[name] if name else case_dir / "ct.nii.gz")],
                label_path=mask_paths.get(1, case_dir / "segmentations"),
                label_names={value: s for value, s in enumerate(sorted(masks), start=1)},
                problems=problems,
                label_mask_paths=mask_paths,
            )
        )
    return records
