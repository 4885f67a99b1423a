"""Importers turn a dataset folder on disk into `CaseRecord`s; see `discover_datasets`."""

from __future__ import annotations

from pathlib import Path

from pipeline.importers.nnunet_v2 import DatasetLayoutError, is_nnunet_v2_dataset, read_nnunet_v2_dataset
from pipeline.records import CaseRecord

__all__ = ["DatasetLayoutError", "discover_dataset_dirs", "read_dataset"]


def discover_dataset_dirs(source: str | Path) -> list[Path]:
    """A SOURCE is a dataset folder itself or a folder of dataset folders (e.g. nnUNet_raw)."""
    source = Path(source)
    if not source.exists():
        raise DatasetLayoutError(f"source {source} does not exist")
    if is_nnunet_v2_dataset(source):
        return [source]
    found = sorted(p for p in source.iterdir() if p.is_dir() and is_nnunet_v2_dataset(p))
    if not found:
        raise DatasetLayoutError(
            f"{source} is neither a dataset folder (with dataset.json and imagesTr/) nor a folder of them"
        )
    return found


def read_dataset(dataset_dir: str | Path) -> list[CaseRecord]:
    return read_nnunet_v2_dataset(Path(dataset_dir))
