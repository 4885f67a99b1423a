"""Promptable 3D segmentation network with the SAM-Med3D architecture.

Conventions used by every module of this package:

* Volumes are (B, C, D, H, W) tensors; the spatial index order is (z, y, x).
* The network input is a single-channel 128^3 patch, (B, 1, 128, 128, 128), already
  intensity-normalised by the caller.
* Point and box coordinates are (z, y, x) VOXEL indices into that 128^3 patch (floats
  allowed); voxel i spans [i, i+1), so its centre is i + 0.5.
* The image embedding is an 8^3 token grid, (B, C, 8, 8, 8); token (i, j, k) covers
  voxels [16i, 16i+16) x [16j, 16j+16) x [16k, 16k+16).
* Masks come out as low-resolution logits (B, M, 32, 32, 32) with IoU predictions (B, M);
  M is 1 (single mask) or 3 (multimask). ``Sam3D.upsample`` resizes logits to 128^3.
* Point labels: 1 positive, 0 negative, -1 padding.

Network: ``attention`` (relative-position attention, windows), ``image_encoder``,
``prompt_encoder``, ``transformer`` (two-way), ``mask_decoder``, ``sam3d`` (full model),
``builder`` (registry), ``predictor``, ``checkpoint``.
Training: ``data`` (patches from the catalog), ``clicks``, ``click_loop``, ``schedule``, ``train_config``,
``batching``, ``distributed``, ``training_state``, ``trainer``.
Evaluation and inference: ``crop`` (patch grids, paste-back), ``metrics``, ``baseline`` (region growing),
``evaluate``, ``evaluation_report``, ``inference``.
"""

from model.builder import MODEL_REGISTRY, build_model, build_sam3d
from model.checkpoint import (
    load_model_weights,
    load_published_checkpoint,
    published_to_ours,
    save_checkpoint,
)
from model.predictor import Predictor
from model.sam3d import Sam3D, upsample_logits

__all__ = [
    "MODEL_REGISTRY",
    "Predictor",
    "Sam3D",
    "build_model",
    "build_sam3d",
    "load_model_weights",
    "load_published_checkpoint",
    "published_to_ours",
    "save_checkpoint",
    "upsample_logits",
]
