"""3D ViT image encoder: patch embedding, pre-norm transformer blocks, convolutional neck.

Two attention layouts share every weight except the relative-position tables:

* ``"native"``: every block attends globally over the D*H*W token grid (8^3 = 512
  tokens for a 128^3 patch with 16^3 patches).
* ``"reference"``: blocks outside ``global_attn_indexes`` zero-pad the grid up to a
  multiple of ``window_size`` and attend within windows, as the published
  SAM-Med3D code does. With window 14 on an 8^3 grid that is a single 14^3 window
  of 2,744 tokens, most of them padding; this mode exists only so the published
  checkpoint loads and behaves as trained.

Independently, ``convention="published"`` makes every block add its relative-position bias with the
published broadcasting (:mod:`model.network.attention`); only networks loaded from published weights use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from model.network.attention import RelPosAttention, check_convention, merge_windows, partition_windows
from model.network.layers import FeedForward, LayerNorm3d

ATTENTION_MODES = ("native", "reference")


class EncoderBlock(nn.Module):
    """Pre-norm transformer block over a (B, D, H, W, C) token grid.

    Args:
        dim (int): token width C.
        num_heads (int): attention heads.
        mlp_ratio (float): MLP hidden width / C.
        grid_size (int): edge of the full token grid.
        window_size (int): 0 for global attention, else the edge of the cubic
            attention window (the grid is zero-padded up to a multiple of it).
        convention (str): relative-position broadcasting, "native" or "published".

    Input and output: (B, D, H, W, C), axes (batch, z, y, x, channel).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        grid_size: int,
        window_size: int,
        convention: str = "native",
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.norm_attn = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RelPosAttention(dim, num_heads, window_size or grid_size, convention)
        self.norm_mlp = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio), nn.GELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm_attn(x)
        if self.window_size:
            grid = tuple(y.shape[1:4])
            windows, padded = partition_windows(y, self.window_size)
            y = merge_windows(self.attn(windows), self.window_size, padded, grid)
        else:
            y = self.attn(y)
        x = x + y
        return x + self.mlp(self.norm_mlp(x))


class Neck(nn.Module):
    """Projects encoder tokens to the prompt/decoder width.

    1x1x1 conv (no bias) -> channel LayerNorm -> 3x3x3 conv (no bias) -> channel LayerNorm.

    Args:
        in_dim (int): encoder token width.
        out_dim (int): embedding width handed to the mask decoder.

    Input (B, in_dim, D, H, W) -> output (B, out_dim, D, H, W).
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.reduce = nn.Conv3d(in_dim, out_dim, kernel_size=1, bias=False)
        self.reduce_norm = LayerNorm3d(out_dim)
        self.refine = nn.Conv3d(out_dim, out_dim, kernel_size=3, padding=1, bias=False)
        self.refine_norm = LayerNorm3d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refine_norm(self.refine(self.reduce_norm(self.reduce(x))))


class ImageEncoder3D(nn.Module):
    """Vision transformer mapping a single-channel cube to a coarse embedding grid.

    Args:
        img_size (int): edge of the input cube (128).
        patch_size (int): edge of a cubic patch (16), so the token grid edge is img_size // patch_size.
        in_chans (int): input channels (1).
        embed_dim (int): token width.
        depth (int): number of transformer blocks.
        num_heads (int): attention heads per block.
        mlp_ratio (float): MLP hidden width / embed_dim.
        out_chans (int): width of the output embedding (neck output).
        window_size (int): window edge used by windowed blocks in reference mode.
        global_attn_indexes (Sequence[int]): blocks that stay global in reference mode.
        attention_mode (str): "native" (all blocks global) or "reference" (published windowing).
        convention (str): "native", or "published" (published relative-position broadcasting; needs
            reference attention, the layout the published weights have).

    Input (B, in_chans, img_size, img_size, img_size), axes (batch, channel, z, y, x).
    Output (B, out_chans, G, G, G) with G = img_size // patch_size, axes (batch, channel, z, y, x).
    """

    def __init__(
        self,
        img_size: int = 128,
        patch_size: int = 16,
        in_chans: int = 1,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 384,
        window_size: int = 14,
        global_attn_indexes: Sequence[int] = (2, 5, 8, 11),
        attention_mode: str = "native",
        convention: str = "native",
    ) -> None:
        super().__init__()
        if attention_mode not in ATTENTION_MODES:
            raise ValueError(f"attention_mode must be one of {ATTENTION_MODES}, got {attention_mode!r}")
        if check_convention(convention) == "published" and attention_mode != "reference":
            raise ValueError("the published convention needs attention_mode 'reference' (the published windowing)")
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.img_size = img_size
        self.attention_mode = attention_mode
        self.convention = convention
        self.grid_size = img_size // patch_size
        self.patch_embed = nn.Conv3d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid_size, self.grid_size, self.grid_size, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        windowed = attention_mode == "reference"
        self.blocks = nn.ModuleList(
            EncoderBlock(
                embed_dim,
                num_heads,
                mlp_ratio,
                self.grid_size,
                window_size if windowed and i not in global_attn_indexes else 0,
                convention,
            )
            for i in range(depth)
        )
        self.neck = Neck(embed_dim, out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != (self.img_size,) * 3:
            raise ValueError(f"expected spatial size {(self.img_size,) * 3}, got {tuple(x.shape[2:])}")
        x = self.patch_embed(x).permute(0, 2, 3, 4, 1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 4, 1, 2, 3))
