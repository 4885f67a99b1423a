"""Mask decoder: predicts low-resolution mask logits and their IoU from image and prompt embeddings."""

from __future__ import annotations

import torch
from torch import nn

from model.network.layers import MLP, LayerNorm3d
from model.network.two_way_transformer import TwoWayTransformer3D


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
    ) -> None:
        super().__init__()
        num_mask_tokens = num_multimask_outputs + 1
        self.transformer = TwoWayTransformer3D(depth, dim, num_heads, mlp_dim)
        self.iou_token = nn.Parameter(torch.randn(1, dim))
        self.mask_tokens = nn.Parameter(torch.randn(num_mask_tokens, dim))
        self.upscaler = MaskUpscaler(dim)
        self.mask_hypernets = nn.ModuleList(MLP(dim, dim, dim // 8, 3) for _ in range(num_mask_tokens))
        self.iou_head = MLP(dim, iou_head_hidden_dim, num_mask_tokens, iou_head_depth)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        multimask: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode masks.

        Args:
            image_embeddings (Tensor): (B, C, G, G, G) encoder output, axes (batch, channel, z, y, x).
            image_pe (Tensor): (1, C, G, G, G) positional encoding of the token grid.
            sparse (Tensor): (B, T, C) point/box tokens.
            dense (Tensor): (B, C, G, G, G) mask-prompt embedding.
            multimask (bool): return the K ambiguity masks instead of the single mask.

        Returns:
            masks (Tensor): (B, M, 4G, 4G, 4G) logits, M = K if multimask else 1.
            iou (Tensor): (B, M) predicted IoU of each mask.
        """
        b, c, d, h, w = image_embeddings.shape
        output_tokens = torch.cat([self.iou_token, self.mask_tokens], dim=0).expand(b, -1, -1)
        tokens = torch.cat([output_tokens, sparse], dim=1)
        image = image_embeddings + dense
        tokens, image = self.transformer(image, image_pe.expand(b, -1, -1, -1, -1), tokens)

        mask_token_out = tokens[:, 1 : 1 + len(self.mask_hypernets)]
        upscaled = self.upscaler(image.transpose(1, 2).reshape(b, c, d, h, w))
        hyper = torch.stack([mlp(mask_token_out[:, i]) for i, mlp in enumerate(self.mask_hypernets)], dim=1)
        masks = torch.einsum("bmc,bczyx->bmzyx", hyper, upscaled)
        iou = self.iou_head(tokens[:, 0])

        chosen = slice(1, None) if multimask else slice(0, 1)
        return masks[:, chosen], iou[:, chosen]
