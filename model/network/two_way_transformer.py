"""Two-way transformer of the mask decoder: prompt tokens and image tokens attend to each other."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.network.layers import FeedForward


class ProjectedAttention(nn.Module):
    """Multi-head attention with separate q/k/v projections into a (possibly narrower) width.

    Args:
        dim (int): width of queries, keys, values and of the output.
        num_heads (int): heads; dim // downsample_rate must be divisible by it.
        downsample_rate (int): internal width is dim // downsample_rate (2 for the cross
            attentions, which keeps the 512-token image side cheap).

    forward(q (B, Nq, dim), k (B, Nk, dim), v (B, Nk, dim)) -> (B, Nq, dim).
    """

    def __init__(self, dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        inner = dim // downsample_rate
        if inner % num_heads:
            raise ValueError(f"internal width {inner} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(
            self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        )
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, -1))


class TwoWayBlock(nn.Module):
    """One post-norm two-way layer.

    Steps: token self-attention, tokens -> image cross-attention, token MLP,
    image -> tokens cross-attention; each followed by a residual add and LayerNorm.
    Positional encodings are re-added to queries and keys at every attention.

    Args:
        dim (int): token width C.
        num_heads (int): heads of every attention.
        mlp_dim (int): hidden width of the token MLP (ReLU).
        cross_downsample_rate (int): internal width reduction of the cross attentions.
        skip_first_pe (bool): in the first layer the tokens *are* their positional
            encoding, so self-attention uses them directly and replaces them instead
            of adding a residual.

    forward(tokens (B, T, C), image (B, N, C), token_pe (B, T, C), image_pe (B, N, C))
    -> (tokens (B, T, C), image (B, N, C)).
    """

    def __init__(
        self, dim: int, num_heads: int, mlp_dim: int, cross_downsample_rate: int, skip_first_pe: bool
    ) -> None:
        super().__init__()
        self.skip_first_pe = skip_first_pe
        self.self_attn = ProjectedAttention(dim, num_heads)
        self.norm_self = nn.LayerNorm(dim)
        self.cross_token_to_image = ProjectedAttention(dim, num_heads, cross_downsample_rate)
        self.norm_token_to_image = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, mlp_dim, nn.ReLU)
        self.norm_mlp = nn.LayerNorm(dim)
        self.norm_image_to_token = nn.LayerNorm(dim)
        self.cross_image_to_token = ProjectedAttention(dim, num_heads, cross_downsample_rate)

    def forward(
        self, tokens: torch.Tensor, image: torch.Tensor, token_pe: torch.Tensor, image_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_pe:
            tokens = self.self_attn(tokens, tokens, tokens)
        else:
            q = tokens + token_pe
            tokens = tokens + self.self_attn(q, q, tokens)
        tokens = self.norm_self(tokens)

        q, k = tokens + token_pe, image + image_pe
        tokens = self.norm_token_to_image(tokens + self.cross_token_to_image(q, k, image))

        tokens = self.norm_mlp(tokens + self.mlp(tokens))

        q, k = tokens + token_pe, image + image_pe
        image = self.norm_image_to_token(image + self.cross_image_to_token(k, q, tokens))
        return tokens, image


class TwoWayTransformer3D(nn.Module):
    """Stack of two-way layers followed by a final tokens -> image attention.

    Args:
        depth (int): number of TwoWayBlock layers (2 published).
        dim (int): token width C.
        num_heads (int): attention heads.
        mlp_dim (int): token MLP hidden width.
        cross_downsample_rate (int): internal width reduction of cross attentions.

    forward(image (B, C, D, H, W), image_pe (B, C, D, H, W), tokens (B, T, C))
    -> (tokens (B, T, C), image (B, D*H*W, C) flattened in (z, y, x) order).
    """

    def __init__(self, depth: int, dim: int, num_heads: int, mlp_dim: int, cross_downsample_rate: int = 2) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TwoWayBlock(dim, num_heads, mlp_dim, cross_downsample_rate, skip_first_pe=i == 0) for i in range(depth)
        )
        self.final_token_to_image = ProjectedAttention(dim, num_heads, cross_downsample_rate)
        self.norm_final = nn.LayerNorm(dim)

    def forward(
        self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image = image.flatten(2).transpose(1, 2)
        image_pe = image_pe.flatten(2).transpose(1, 2)
        token_pe = tokens
        for block in self.blocks:
            tokens, image = block(tokens, image, token_pe, image_pe)
        q, k = tokens + token_pe, image + image_pe
        tokens = self.norm_final(tokens + self.final_token_to_image(q, k, image))
        return tokens, image
