"""Promptable 3D segmentation network with the SAM-Med3D architecture, its trainer and its evaluation.

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

Sub-packages, each depending only on the ones before it and on the shared modules here:

* ``model.network``: the network (encoders, two-way transformer, decoder, ``Sam3D``), its registry of
  configurations, our checkpoint format and the published one.
* ``model.training``: patches from the catalog, the click loop, schedule, configuration, state, DDP,
  the trainer.
* ``model.evaluation``: crops and paste-back, metrics, the region-growing baseline, the click
  protocols, the report, inference on new images.

Shared by training and evaluation: ``model.clicks`` (click rules), ``model.intensity`` (per-sample
normalisation), ``model.targets`` (mask selection, patch placement), ``model.predictor`` (the
network with a cached image embedding), ``model.input_convention`` (the crops a network loaded from
published weights expects: RAS (x, y, z), z-score over voxels > 0; docs/published.md).
"""

from model.network.checkpoint import load_model_weights, save_checkpoint
from model.network.published import load_published_checkpoint, published_to_ours
from model.network.registry import MODEL_REGISTRY, build_model, build_sam3d
from model.network.sam3d import Sam3D, upsample_logits
from model.predictor import Predictor

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
