"""Importers turn a dataset folder on disk into `CaseRecord`s, whatever its layout.

Layouts (docs/layouts.md): "nnunet_v2", "msd" (Medical Segmentation Decathlon), "sammed3d" (the published
SAM-Med3D data), "totalsegmentator", "dicom". Each source folder's layout is detected (`detect_layout`)
unless one is named; a source is a dataset folder itself or a folder of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.importers.dicom import is_dicom_dataset, read_dicom_dataset
from pipeline.importers.files import DatasetLayoutError
from pipeline.importers.msd import is_msd_dataset, read_msd_dataset
from pipeline.importers.nnunet_v2 import is_nnunet_v2_dataset, read_nnunet_v2_dataset
from pipeline.importers.sammed3d_layout import is_sammed3d_root, read_sammed3d_root
from pipeline.importers.totalsegmentator import is_totalsegmentator_dataset, read_totalsegmentator_dataset
from pipeline.records import CaseRecord

__all__ = ["LAYOUTS", "DatasetLayoutError", "detect_layout", "discover_dataset_dirs", "read_dataset"]

# Detection order matters: a Decathlon folder also has dataset.json beside imagesTr/, so "msd" is asked
# before "nnunet_v2"; the folder-of-folders layouts come last.
_LAYOUTS: dict[str, tuple[Callable[[Path], bool], Callable[[Path], list[CaseRecord]]]] = {
    "msd": (is_msd_dataset, read_msd_dataset),
    "nnunet_v2": (is_nnunet_v2_dataset, read_nnunet_v2_dataset),
    "dicom": (is_dicom_dataset, read_dicom_dataset),
    "totalsegmentator": (is_totalsegmentator_dataset, read_totalsegmentator_dataset),
    "sammed3d": (is_sammed3d_root, read_sammed3d_root),
}
LAYOUTS = ("nnunet_v2", "msd", "sammed3d", "totalsegmentator", "dicom")


def _check_layout(layout: str | None) -> None:
    if layout is not None and layout not in _LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")


def detect_layout(path: str | Path) -> str | None:
    """The layout of a dataset folder (see module docstring), or None when it is none of them."""
    path = Path(path)
    return next((name for name, (matches, _) in _LAYOUTS.items() if matches(path)), None)


def _is_dataset(path: Path, layout: str | None) -> bool:
    return detect_layout(path) is not None if layout is None else _LAYOUTS[layout][0](path)


def discover_dataset_dirs(source: str | Path, layout: str | None = None) -> list[Path]:
    """A SOURCE is a dataset folder itself or a folder of dataset folders (e.g. nnUNet_raw).

    With `layout`, only folders of that layout count; otherwise each folder's layout is detected.
    """
    _check_layout(layout)
    source = Path(source)
    if not source.exists():
        raise DatasetLayoutError(f"source {source} does not exist")
    if _is_dataset(source, layout):
        return [source]
    found = sorted(p for p in source.iterdir() if p.is_dir() and _is_dataset(p, layout))
    if not found:
        expected = f"a {layout} dataset" if layout else f"a dataset ({', '.join(LAYOUTS)})"
        raise DatasetLayoutError(f"{source} is neither {expected} folder nor a folder of them")
    return found


def read_dataset(dataset_dir: str | Path, layout: str | None = None) -> list[CaseRecord]:
    """The cases of one dataset folder, read with `layout` or the detected one."""
    _check_layout(layout)
    dataset_dir = Path(dataset_dir)
    layout = layout or detect_layout(dataset_dir)
    if layout is None:
        raise DatasetLayoutError(f"{dataset_dir} matches none of the layouts {', '.join(LAYOUTS)}")
    return _LAYOUTS[layout][1](dataset_dir)
