"""Interactive inference: embed one cube once, then answer many prompts against it."""

from __future__ import annotations

from typing import Any

import torch

from model.network.sam3d import Sam3D


class Predictor:
    """Caches the image embedding of one 128^3 patch so each extra click only runs the decoder.

    Args:
        model (Sam3D): the network; put in eval mode by the predictor.

    All coordinates are (z, y, x) voxel indices of the patch passed to :meth:`set_image`.
    """

    def __init__(self, model: Sam3D) -> None:
        self.model = model.eval()
        self.embedding: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        """Device of the model parameters."""
        return next(self.model.parameters()).device

    @torch.no_grad()
    def set_image(self, patch: torch.Tensor) -> None:
        """Compute and cache the embedding of a patch.

        Args:
            patch (Tensor): float (S, S, S) or (1, 1, S, S, S), axes (z, y, x), already
                intensity-normalised; S = model.image_size.
        """
        size = self.model.image_size
        if tuple(patch.shape) == (size,) * 3:
            patch = patch[None, None]
        if tuple(patch.shape) != (1, 1) + (size,) * 3:
            raise ValueError(f"expected ({size},)*3 or (1, 1) + ({size},)*3, got {tuple(patch.shape)}")
        self.embedding = self.model.encode(patch.to(self.device, torch.float32))

    def reset_image(self) -> None:
        """Drop the cached embedding."""
        self.embedding = None

    def _batched(self, value: Any, ndim: int, dtype: torch.dtype) -> torch.Tensor:
        tensor = torch.as_tensor(value, dtype=dtype, device=self.device)
        return tensor.unsqueeze(0) if tensor.ndim == ndim - 1 else tensor

    @torch.no_grad()
    def predict(
        self,
        points: Any,
        labels: Any,
        box: Any | None = None,
        mask_input: Any | None = None,
        multimask: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predict masks for prompts on the cached patch.

        Args:
            points (array-like | None): (N, 3) or (1, N, 3) float (z, y, x) voxel indices.
            labels (array-like | None): (N,) or (1, N) int; 1 positive, 0 negative, -1 padding.
            box (array-like | None): (2, 3) or (1, 2, 3), low and high (z, y, x) corners.
            mask_input (array-like | None): (1, 32, 32, 32) or (1, 1, 32, 32, 32) low-res
                logits, typically one channel of a previous ``lowres_logits``.
            multimask (bool): return the 3 ambiguity masks instead of one.

        Returns:
            logits128 (Tensor): (1, M, S, S, S) mask logits at patch resolution.
            iou (Tensor): (1, M) predicted IoU.
            lowres_logits (Tensor): (1, M, 32, 32, 32), to feed back as ``mask_input``.
        """
        if self.embedding is None:
            raise RuntimeError("call set_image before predict")
        pts = None if points is None else self._batched(points, 3, torch.float32)
        lab = None if labels is None else self._batched(labels, 2, torch.long)
        boxes = None if box is None else self._batched(box, 3, torch.float32)
        mask = None if mask_input is None else self._batched(mask_input, 5, torch.float32)
        lowres, iou = self.model.decode(self.embedding, pts, lab, boxes, mask, multimask)
        return self.model.upsample(lowres), iou, lowres
