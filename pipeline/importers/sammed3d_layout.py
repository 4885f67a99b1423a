"""The layout of the published SAM-Med3D training data: one binary mask file per target.

    ROOT/<category>/<modality>_<dataset>/imagesTr/<case>.nii.gz   the image (copied under every category)
    ROOT/<category>/<modality>_<dataset>/labelsTr/<case>.nii.gz   binary mask of <category> (nonzero = inside)

The files of one (<modality>_<dataset>, <case>) under all categories make ONE catalog case: its image
is the copy under the first category (in name order) and its label map is the union of the masks,
label values 1, 2, ... in category name order, overlaps resolved by `pipeline.label_masks` (the smaller
mask keeps shared voxels). The copies are assumed to be one scan; a mask on another voxel grid than the
others rejects the case. The catalog dataset is the folder name (e.g. "ct_WORD"), and the modality its
prefix (ct, mr, pet, us); a folder without a known prefix makes its cases rejected rows.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.importers.files import image_files
from pipeline.records import CaseRecord, ChannelSource

MODALITY_PREFIXES = {"ct": "CT", "cbct": "CT", "mr": "MR", "mri": "MR", "pet": "PET", "us": "US"}


def dataset_folders(root: Path) -> list[tuple[str, Path]]:
    """(category, dataset folder) for every ROOT/<category>/<dataset>/ with imagesTr/ and labelsTr/ and no
    dataset.json (which would make it an nnU-Net or Decathlon dataset inside a folder of folders)."""
    if not root.is_dir():
        return []
    found = []
    for category in sorted(p for p in root.iterdir() if p.is_dir()):
        for dataset in sorted(p for p in category.iterdir() if p.is_dir()):
            has_folders = (dataset / "imagesTr").is_dir() and (dataset / "labelsTr").is_dir()
            if has_folders and not (dataset / "dataset.json").exists():
                found.append((category.name, dataset))
    return found


def is_sammed3d_root(path: Path) -> bool:
    return bool(dataset_folders(path))


def modality_of_folder(name: str) -> str | None:
    """"ct_WORD" -> "CT"; None without a known modality prefix."""
    prefix, _, rest = name.partition("_")
    return MODALITY_PREFIXES.get(prefix.lower()) if rest else None


def read_sammed3d_root(root: Path) -> list[CaseRecord]:
    """One `CaseRecord` per (dataset folder name, case), merging that case's masks of all categories."""
    by_case: dict[tuple[str, str], dict[str, tuple[Path | None, Path]]] = {}
    for category, dataset in dataset_folders(root):
        images = image_files(dataset / "imagesTr")
        for case_id, label_path in image_files(dataset / "labelsTr").items():
            by_case.setdefault((dataset.name, case_id), {})[category] = (images.get(case_id), label_path)

    records = []
    for (dataset, case_id), per_category in sorted(by_case.items()):
        categories = sorted(per_category)
        problems = []
        modality = modality_of_folder(dataset)
        if modality is None:
            problems.append(
                f"cannot tell the modality of dataset folder {dataset}: expected '<modality>_<name>' "
                f"with modality one of {sorted(MODALITY_PREFIXES)}"
            )
        for category in categories:
            if per_category[category][0] is None:
                problems.append(f"image file missing: {category}/{dataset}/imagesTr/{case_id} (its label exists)")
        image_path = next((per_category[c][0] for c in categories if per_category[c][0] is not None), None)
        if image_path is None:
            image_path = root / categories[0] / dataset / "imagesTr" / case_id
        mask_paths = {value: per_category[c][1] for value, c in enumerate(categories, start=1)}
        records.append(
            CaseRecord(
                dataset=dataset,
                case_id=case_id,
                channels=[ChannelSource(0, modality or "unknown", image_path)],
                label_path=mask_paths[1],
                label_names={value: c for value, c in enumerate(categories, start=1)},
                problems=problems,
                label_mask_paths=mask_paths,
            )
        )
    return records
