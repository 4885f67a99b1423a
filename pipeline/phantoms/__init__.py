"""Deterministic synthetic phantoms in the nnU-Net v2 raw layout, for the demo and fast tests.

Nothing here is patient data: dataset names contain "Synthetic", case ids start with
"phantom", every dataset.json says ``"synthetic": true`` and its description starts with
"SYNTHETIC phantom".

Conventions used throughout:

* numpy arrays are indexed (z, y, x); SimpleITK sizes, spacings and indices are (x, y, z).
* World coordinates are millimetres in LPS, as SimpleITK uses: +x = patient's left,
  +y = posterior, +z = superior.
* Anatomy is placed in world coordinates relative to the body (or head) centre and then
  sampled onto whatever voxel grid was asked for, so it stays anatomically correct under
  any direction matrix (LPS, RAS-on-disk, oblique). Code that derives sides from array
  indices, or from the field-of-view centre instead of the body outline, gets them wrong.

Modules: ``grid`` (voxel grid in world coordinates), ``torso_ct``, ``head_mr``, ``datasets`` (the
datasets on disk and their truth).
"""

from pipeline.phantoms.datasets import CT_DATASET, FILE_ENDING, MR_DATASET, phantom_truth, write_phantom_datasets
from pipeline.phantoms.grid import LPS_DIRECTION, RAS_ON_DISK_DIRECTION
from pipeline.phantoms.head_mr import MR_LABELS, make_head_mr_case
from pipeline.phantoms.torso_ct import CT_LABELS, make_torso_ct_case, write_torso_ct_case

__all__ = [
    "CT_DATASET",
    "CT_LABELS",
    "FILE_ENDING",
    "LPS_DIRECTION",
    "MR_DATASET",
    "MR_LABELS",
    "RAS_ON_DISK_DIRECTION",
    "make_head_mr_case",
    "make_torso_ct_case",
    "phantom_truth",
    "write_phantom_datasets",
    "write_torso_ct_case",
]
