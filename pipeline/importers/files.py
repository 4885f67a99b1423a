"""What every layout reader shares: its error type, image file endings, reading a JSON description."""

from __future__ import annotations

import json
from pathlib import Path

IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


class DatasetLayoutError(Exception):
    """A dataset folder cannot be read at all (no dataset.json, corrupt JSON, missing keys)."""


def strip_image_ending(name: str) -> str | None:
    """"ts_ct.nii.gz" -> "ts_ct"; None for a name without one of `IMAGE_ENDINGS`."""
    for ending in IMAGE_ENDINGS:
        if name.endswith(ending) and len(name) > len(ending):
            return name[: -len(ending)]
    return None


def image_files(folder: Path) -> dict[str, Path]:
    """Image files of a folder by name without ending, e.g. {"ts_ct": Path(".../ts_ct.nii.gz")}."""
    if not folder.is_dir():
        return {}
    found = {}
    for path in sorted(folder.iterdir()):
        stem = strip_image_ending(path.name)
        if stem and path.is_file() and not path.name.startswith("."):
            found.setdefault(stem, path)
    return found


def read_json(path: Path, required: tuple[str, ...], layout: str) -> dict:
    """A JSON object with the `required` keys, or `DatasetLayoutError` naming what is wrong."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetLayoutError(f"{path} cannot be read as JSON: {error}") from error
    if not isinstance(meta, dict):
        raise DatasetLayoutError(f"{path} must hold a JSON object")
    missing = [key for key in required if key not in meta]
    if missing:
        raise DatasetLayoutError(f"{path} lacks the keys {missing} of the {layout} layout")
    return meta


def json_or_none(path: Path) -> dict | None:
    """The JSON object in `path`, or None when it is missing or not a readable JSON object."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def value_names(labels: dict, path: Path) -> dict[int, str]:
    """{"0": "background", "1": "liver"} -> {1: "liver"} (label value -> name, background left out)."""
    names = {}
    for key, name in labels.items():
        try:
            value = int(key)
        except (TypeError, ValueError):
            raise DatasetLayoutError(
                f"{path}: label keys must be integer values (\"1\": \"liver\"), got {key!r}"
            ) from None
        if value != 0:
            names[value] = str(name)
    return names
