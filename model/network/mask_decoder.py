"""Mask decoder: predicts low-resolution mask logits and their IoU from image and prompt embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.network.layers import MLP, LayerNorm3d
from model.network.two_way_transformer import TwoWayTransformer3D


# Mask voxels per token along each axis: MaskUpscaler's two stride-2 transposed convolutions.
UPSCALE = 4


class MaskUpscaler(nn.Module):
    """4x upsampling of the image tokens for mask prediction.

    ConvTranspose3d(C -> C/4, k=2, s=2) -> channel LayerNorm -> GELU ->
    ConvTranspose3d(C/4 -> C/8, k=2, s=2) -> GELU.

    Args:
        dim (int): C, input width; must be divisible by 8.

    Input (B, C, G, G, G) -> output (B, C/8, 4G, 4G, 4G).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 8:
            raise ValueError(f"dim must be divisible by 8, got {dim}")
        self.deconv1 = nn.ConvTranspose3d(dim, dim // 4, kernel_size=2, stride=2)
        self.norm = LayerNorm3d(dim // 4)
        self.deconv2 = nn.ConvTranspose3d(dim // 4, dim // 8, kernel_size=2, stride=2)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm(self.deconv1(x)))
        return self.act(self.deconv2(x))


class FinePath(nn.Module):
    """Not in the published model: the image and the mask prompt enter the decoder at the mask resolution.

    The published decoder sees the image only through the G³ tokens (8³ for a 128³ patch, 16³ voxels each)
    and the previous mask only through the mask prompt squeezed onto that grid, so a small network trained
    briefly draws blobs and forgets its earlier clicks (docs/training.md). This path adds, to the upscaled
    features the mask heads read ((B, F, 4G, 4G, 4G), F = C/8):

    * image features: Conv3d(1 -> hidden, k=4, s=4) -> GELU -> Conv3d(hidden -> F, k=3, pad 1), computed once
      per image in :meth:`Sam3D.encode` and carried inside the embedding, space-to-depth packed onto the
      token grid (:meth:`pack` / :meth:`unpack`), so code that caches or passes embeddings needs no change;
    * mask-prompt features: Conv3d(1 -> F, k=3, pad 1) of sigmoid(previous low-resolution logits), nothing
      when there is no mask prompt.

    Args:
        dim (int): F, the width of the upscaled features.
        scale (int): S / 4G, the input voxels per mask voxel along an axis (4).
        hidden (int): width of the first image convolution.
    """

    def __init__(self, dim: int, scale: int = 4, hidden: int = 16) -> None:
        super().__init__()
        self.dim = dim
        self.image_stem = nn.Conv3d(1, hidden, kernel_size=scale, stride=scale)
        self.image_mix = nn.Conv3d(hidden, dim, kernel_size=3, padding=1)
        self.mask_mix = nn.Conv3d(1, dim, kernel_size=3, padding=1)

    @property
    def packed_channels(self) -> int:
        """Channels the packed image features add to each token: F x UPSCALE³."""
        return self.dim * UPSCALE**3

    def image_features(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S, S) normalised image -> (B, F, S/scale, ...) features."""
        return self.image_mix(F.gelu(self.image_stem(image)))

    @staticmethod
    def pack(features: torch.Tensor) -> torch.Tensor:
        """Space-to-depth: (B, F, 4G, 4G, 4G) -> (B, F x 64, G, G, G), each token its own 4³ block."""
        b, f, d = features.shape[:3]
        g, r = d // UPSCALE, UPSCALE
        x = features.reshape(b, f, g, r, g, r, g, r).permute(0, 1, 3, 5, 7, 2, 4, 6)
        return x.reshape(b, f * r**3, g, g, g)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`pack`: (B, F x 64, G, G, G) -> (B, F, 4G, 4G, 4G)."""
        b, _, g = packed.shape[:3]
        r = UPSCALE
        x = packed.reshape(b, self.dim, r, r, r, g, g, g).permute(0, 1, 5, 2, 6, 3, 7, 4)
        return x.reshape(b, self.dim, r * g, r * g, r * g)

    def forward(self, packed: torch.Tensor, mask_prompt: torch.Tensor | None) -> torch.Tensor:
        """Features to add to the upscaled tokens: (B, F, 4G, 4G, 4G)."""
        features = self.unpack(packed)
        if mask_prompt is not None:
            features = features + self.mask_mix(torch.sigmoid(mask_prompt.to(features.dtype)))
        return features


class MaskDecoder3D(nn.Module):
    """Two-way transformer decoder with hypernetwork mask heads.

    Args:
        dim (int): C, width of image and prompt embeddings.
        depth (int): two-way layers.
        num_heads (int): attention heads.
        mlp_dim (int): token MLP hidden width.
        num_multimask_outputs (int): K ambiguity-aware masks; K + 1 mask tokens are learned,
            token 0 being the single-mask output.
        iou_head_hidden_dim (int): hidden width of the IoU head.
        iou_head_depth (int): Linear layers in the IoU head.
        fine_path (bool): add :class:`FinePath` (not in the published model); the image embedding then
            carries the packed image features after its C token channels.

    The token grid G^3 is upscaled 4x (two stride-2 transposed convs), so masks are (4G)^3:
    32^3 for the 8^3 grid of a 128^3 input.
    """

    def __init__(
        self,
        dim: int,
        depth: int = 2,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        num_multimask_outputs: int = 3,
        iou_head_hidden_dim: int = 256,
        iou_head_depth: int = 3,
        fine_path: bool = False,
    ) -> None:
        super().__init__()
        num_mask_tokens = num_multimask_outputs + 1
        self.transformer = TwoWayTransformer3D(depth, dim, num_heads, mlp_dim)
        self.iou_token = nn.Parameter(torch.randn(1, dim))
        self.mask_tokens = nn.Parameter(torch.randn(num_mask_tokens, dim))
        self.upscaler = MaskUpscaler(dim)
        self.mask_hypernets = nn.ModuleList(MLP(dim, dim, dim // 8, 3) for _ in range(num_mask_tokens))
        self.iou_head = MLP(dim, iou_head_hidden_dim, num_mask_tokens, iou_head_depth)
        self.dim = dim
        self.fine = FinePath(dim // 8) if fine_path else None

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        multimask: bool,
        mask_prompt: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode masks.

        Args:
            image_embeddings (Tensor): (B, C, G, G, G) encoder output, axes (batch, channel, z, y, x);
                with the fine path (B, C + F x 64, G, G, G), see :meth:`Sam3D.encode`.
            image_pe (Tensor): (1, C, G, G, G) positional encoding of the token grid.
            sparse (Tensor): (B, T, C) point/box tokens.
            dense (Tensor): (B, C, G, G, G) mask-prompt embedding.
            multimask (bool): return the K ambiguity masks instead of the single mask.
            mask_prompt (Tensor | None): (B, 1, 4G, 4G, 4G) previous logits; read only by the fine path
                (the published path gets them through ``dense``).

        Returns:
            masks (Tensor): (B, M, 4G, 4G, 4G) logits, M = K if multimask else 1.
            iou (Tensor): (B, M) predicted IoU of each mask.
        """
        fine_packed = image_embeddings[:, self.dim :]
        image_embeddings = image_embeddings[:, : self.dim]
        expected = 0 if self.fine is None else self.fine.packed_channels
        if fine_packed.shape[1] != expected:
            raise ValueError(
                f"image embedding has {self.dim + fine_packed.shape[1]} channels; this decoder expects "
                f"{self.dim + expected}"
            )
        b, c, d, h, w = image_embeddings.shape
        output_tokens = torch.cat([self.iou_token, self.mask_tokens], dim=0).expand(b, -1, -1)
        tokens = torch.cat([output_tokens, sparse], dim=1)
        image = image_embeddings + dense
        tokens, image = self.transformer(image, image_pe.expand(b, -1, -1, -1, -1), tokens)

        mask_token_out = tokens[:, 1 : 1 + len(self.mask_hypernets)]
        upscaled = self.upscaler(image.transpose(1, 2).reshape(b, c, d, h, w))
        if self.fine is not None:
            upscaled = upscaled + self.fine(fine_packed, mask_prompt)
        hyper = torch.stack([mlp(mask_token_out[:, i]) for i, mlp in enumerate(self.mask_hypernets)], dim=1)
        masks = torch.einsum("bmc,bczyx->bmzyx", hyper, upscaled)
        iou = self.iou_head(tokens[:, 0])

        chosen = slice(1, None) if multimask else slice(0, 1)
        return masks[:, chosen], iou[:, chosen]
