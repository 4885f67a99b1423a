"""Typed curation configuration, with the SAM-Med3D paper's defaults.

Every threshold that decides whether an image or a mask is kept lives here, so that the catalog can
record one hash of it (`config_hash`) and a rerun knows when its earlier output is stale.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

# Structures that come in left/right pairs. A mask of one of these categories whose name carries no
# side is split into "<name> left" and "<name> right". Prefix matching: "lung upper lobe" matches "lung".
# These add to the paired, midline and single vocabularies of pipeline/laterality/laterality.yaml.
DEFAULT_PAIRED_STRUCTURES = (
    "kidney", "kidney cyst", "lung", "adrenal gland", "femur", "hip", "humerus", "scapula", "clavicula",
    "gluteus maximus", "gluteus medius", "gluteus minimus", "iliopsoas", "autochthon",
    "common carotid artery", "subclavian artery", "brachiocephalic vein", "iliac artery", "iliac vena",
    "rib", "eye", "lens", "optic nerve", "parotid gland", "submandibular gland", "cochlea",
    "hippocampus", "amygdala", "thalamus", "caudate", "putamen", "pallidum", "lateral ventricle",
    "ovary", "breast", "internal carotid artery", "vertebral artery", "jugular vein",
)


class CurationConfig(BaseModel):
    """Thresholds and options of the four curation steps and of resampling.

    Units are in the field names: mm, cm³ (= ml), mm³.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Step 1: meta filter (header only).
    min_volume_cm3: float = Field(1.0, gt=0, description="reject images whose physical volume is below this")
    min_extent_mm: float = Field(15.0, gt=0, description="reject images thinner than this along any axis")
    geometry_tolerance_mm: float = Field(
        0.1, ge=0, description="largest allowed difference in origin (mm) and spacing between image and label"
    )
    direction_tolerance: float = Field(1e-3, ge=0, description="largest allowed difference of direction cosines")

    # Step 2: mask cleaning.
    max_background_fraction: float = Field(0.99, gt=0, le=1)
    # The paper does not say over which region the background fraction is taken; over a whole CT the rule
    # would drop kidneys and glands that the paper keeps, so the default uses the mask's bounding box.
    background_region: Literal["bbox", "volume"] = "bbox"
    min_mask_volume_mm3: float = Field(10.0, ge=0, description="reference scripts used 10 mm³")
    # Not in the paper: a mask smaller than a 2×2×2 block of its own grid has no shape to learn. Model-output
    # specks (Dataset001's one-voxel lung middle lobe in ts_ct_sm, 27 mm³) pass the volume rule but not this.
    min_mask_voxels: int = Field(8, ge=1)

    # Step 3: label quality.
    keep_largest_components: int = Field(5, ge=1)
    connectivity: Literal[6, 18, 26] = 26

    # Step 4: symmetry split.
    paired_structures: tuple[str, ...] = DEFAULT_PAIRED_STRUCTURES
    # A connected piece straddling the body midline is cut there when its smaller side holds at least this
    # fraction of it; below that it goes whole to the side of its centroid.
    straddle_fraction: float = Field(0.1, ge=0, le=0.5)
    # Not in the paper, which splits a fixed list: an unsided mask whose name is in no vocabulary is split
    # when its data say bilateral about the mid-sagittal plane (pipeline.laterality.evidence): at least
    # this share of it on its smaller side, this share of it mirrored onto itself, and a density at the
    # plane at most this fraction of its sides' peaks (midline structures are densest there).
    split_unknown_by_data: bool = True
    bilateral_min_balance: float = Field(0.2, ge=0, le=0.5)
    bilateral_min_symmetry: float = Field(0.3, ge=0, le=1)
    bilateral_max_dip: float = Field(0.5, ge=0)

    # Step 5: resampling.
    target_spacing_mm: tuple[float, float, float] = (1.5, 1.5, 1.5)

    # Deterministic train/val/test split by case.
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)

    @field_validator("target_spacing_mm")
    @classmethod
    def _positive_spacing(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not (v > 0) for v in value):
            raise ValueError(f"target_spacing_mm must be positive, got {value}")
        return value

    @field_validator("split_fractions")
    @classmethod
    def _fractions_sum_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(v < 0 for v in value) or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError(f"split_fractions must be non-negative and sum to 1, got {value}")
        return value

    def config_hash(self) -> str:
        """Short stable hash of every field; part of each catalog row."""
        return _config_hash(self)

    @classmethod
    def from_file(cls, path: str | Path) -> "CurationConfig":
        """Read a YAML or JSON file of field overrides; unknown keys are an error."""
        return cls(**read_config_mapping(path))


def read_config_mapping(path: str | Path) -> dict:
    """The option: value mapping of a YAML (or JSON) config file; an empty file is an empty mapping.
    Raises FileNotFoundError / ValueError with one sentence."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of option: value")
    return data


@functools.lru_cache(maxsize=16)
def _config_hash(config: CurationConfig) -> str:
    # Once per distinct (frozen, hashable) config rather than once per catalog row.
    payload = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
