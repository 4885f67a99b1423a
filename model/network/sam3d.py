"""The full promptable model: image encoder + prompt encoder + mask decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.network.image_encoder import ImageEncoder3D
from model.network.mask_decoder import MaskDecoder3D
from model.network.prompt_encoder import PromptEncoder3D


def upsample_logits(logits: torch.Tensor, size: int) -> torch.Tensor:
    """Trilinearly resize low-resolution mask logits to the input cube.

    Args:
        logits (Tensor): (B, M, d, h, w) logits.
        size (int): output edge (128 for the input patch).

    Returns:
        Tensor (B, M, size, size, size).
    """
    return F.interpolate(logits, size=(size, size, size), mode="trilinear", align_corners=False)


class Sam3D(nn.Module):
    """Promptable 3D segmentation network (SAM-Med3D architecture).

    Args:
        image_encoder (ImageEncoder3D): cube (B, 1, S, S, S) -> embedding (B, C, G, G, G).
        prompt_encoder (PromptEncoder3D): prompts -> sparse (B, T, C) and dense (B, C, G, G, G).
        mask_decoder (MaskDecoder3D): embeddings -> logits (B, M, 4G, 4G, 4G) and IoU (B, M).
        name (str): registry name, stored in checkpoints so they can be rebuilt.

    The caller normalises intensities; the model applies no preprocessing.
    """

    def __init__(
        self,
        image_encoder: ImageEncoder3D,
        prompt_encoder: PromptEncoder3D,
        mask_decoder: MaskDecoder3D,
        name: str,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.name = name

    @property
    def image_size(self) -> int:
        """Edge of the input cube in voxels (128)."""
        return self.image_encoder.img_size

    @property
    def click_map(self) -> bool:
        """Whether the prompt encoder encodes clicks densely too (:class:`model.network.prompt_encoder.ClickMap`)."""
        return self.prompt_encoder.click_map is not None

    @property
    def fine_path(self) -> bool:
        """Whether the decoder reads the image and mask prompt at mask resolution too
        (:class:`model.network.mask_decoder.FinePath`; not in the published model)."""
        return self.mask_decoder.fine is not None

    @property
    def fine_clicks(self) -> bool:
        """Whether the fine path also reads the clicks at mask resolution and mixes its features with the
        upscaled tokens' (not in the published model)."""
        return self.mask_decoder.fine is not None and self.mask_decoder.fine.click_mix is not None

    @property
    def convention(self) -> str:
        """"native" (consistent axes) or "published" (the published code's quirks and input convention).

        Published weights learned with the published code's relative-position broadcasting and its
        dense-grid axis swap, on RAS (x, y, z) crops z-scored over voxels > 0
        (:mod:`model.input_convention`); networks trained here use one consistent encoding.
        """
        return self.image_encoder.convention

    @property
    def attention_mode(self) -> str:
        """"native" or "reference", see :mod:`model.network.image_encoder`."""
        return self.image_encoder.attention_mode

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Image embedding.

        Args:
            image (Tensor): (B, 1, S, S, S) float, axes (batch, channel, z, y, x).

        Returns:
            Tensor (B, C, G, G, G); with the fine path (B, C + F x 64, G, G, G): the tokens, then the fine
            image features (B, F, 4G, 4G, 4G) packed space-to-depth onto the token grid.
        """
        tokens = self.image_encoder(image)
        fine = self.mask_decoder.fine
        if fine is None:
            return tokens
        return torch.cat([tokens, fine.pack(fine.image_features(image))], dim=1)

    def decode(
        self,
        embeddings: torch.Tensor,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_prompt: torch.Tensor | None = None,
        multimask: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict masks from a precomputed image embedding.

        Args:
            embeddings (Tensor): from :meth:`encode`.
            points (Tensor | None): (B, N, 3) float (z, y, x) voxel indices of the input cube.
            labels (Tensor | None): (B, N) int; 1 positive, 0 negative, -1 padding.
            boxes (Tensor | None): (B, 2, 3) float, low and high (z, y, x) corners.
            mask_prompt (Tensor | None): (B, 1, 4G, 4G, 4G) low-resolution logits of a previous step.
            multimask (bool): return K ambiguity masks instead of one.

        Returns:
            logits (Tensor): (B, M, 4G, 4G, 4G) low-resolution mask logits; M = K or 1.
            iou (Tensor): (B, M) predicted IoU.
        """
        sparse, dense = self.prompt_encoder(points, labels, boxes, mask_prompt, embeddings.shape[0])
        return self.mask_decoder(
            embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense, multimask, mask_prompt=mask_prompt,
            points=points, labels=labels,
        )

    def forward(
        self,
        image: torch.Tensor,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_prompt: torch.Tensor | None = None,
        multimask: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode ``image`` (B, 1, S, S, S) and decode; other arguments and outputs as :meth:`decode`."""
        return self.decode(self.encode(image), points, labels, boxes, mask_prompt, multimask)

    def upsample(self, logits: torch.Tensor) -> torch.Tensor:
        """Resize (B, M, 4G, 4G, 4G) logits to the input cube, (B, M, S, S, S), trilinearly."""
        return upsample_logits(logits, self.image_size)
