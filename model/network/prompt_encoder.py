"""Prompt encoder: clicks, boxes and a previous mask turned into decoder inputs.

Every coordinate here is a (z, y, x) voxel index of the input cube; the Fourier
encoding of a point and the dense encoding of the token grid use the same axis
order, so a click lands on the token whose centre it sits on. Networks loaded from published SAM-Med3D
weights use ``convention="published"``: the published dense grid feeds the grid's axis-0 coordinate to
the projection's second row and its axis-1 coordinate to the first (its points are not swapped), and
its decoder learned with that, so we reproduce it for those weights only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from model.network.attention import check_convention
from model.network.layers import LayerNorm3d


class FourierPositionEncoding3D(nn.Module):
    """Random Fourier features of 3D coordinates.

    Args:
        out_dim (int): C, width of the encoding; a multiple of num_frequencies.
        num_frequencies (int): F, columns of the fixed Gaussian projection.
        scale (float): standard deviation of the Gaussian projection.

    The projection is a buffer (saved in checkpoints, never trained) of shape (3, F),
    rows in (z, y, x) order. The output is C/F blocks alternating sin, cos, sin, ...:
    [sin, cos] when F = C/2; the published vit_b_ori uses F = C/3, i.e. [sin, cos, sin],
    and we keep that layout for it so its checkpoint loads unchanged.
    """

    def __init__(self, out_dim: int, num_frequencies: int, scale: float = 1.0) -> None:
        super().__init__()
        if out_dim % num_frequencies or out_dim // num_frequencies < 2:
            raise ValueError(f"out_dim {out_dim} must be a multiple (>= 2) of num_frequencies {num_frequencies}")
        self.num_blocks = out_dim // num_frequencies
        self.register_buffer("gaussian_matrix", scale * torch.randn(3, num_frequencies))

    def encode_unit(self, coords: torch.Tensor) -> torch.Tensor:
        """Encode coordinates already scaled to [0, 1].

        Args:
            coords (Tensor): (..., 3) in (z, y, x) order, 0 and 1 being the outer faces of the cube.

        Returns:
            Tensor (..., C): [sin, cos, ...] features.
        """
        proj = 2 * math.pi * ((2 * coords - 1) @ self.gaussian_matrix.to(coords.dtype))
        sin, cos = torch.sin(proj), torch.cos(proj)
        return torch.cat([cos if i % 2 else sin for i in range(self.num_blocks)], dim=-1)

    def encode_voxels(self, points: torch.Tensor, image_size: int) -> torch.Tensor:
        """Encode voxel-index coordinates of a cube of edge ``image_size``.

        Args:
            points (Tensor): (..., 3) float (z, y, x) voxel indices; index i covers [i, i+1),
                so its centre is i + 0.5.
            image_size (int): cube edge in voxels.

        Returns:
            Tensor (..., C).
        """
        return self.encode_unit((points + 0.5) / image_size)

    def grid(self, size: int, swap_first_axes: bool = False) -> torch.Tensor:
        """Encode the centres of a size^3 grid of cells covering the cube.

        Args:
            size (int): G, cells per axis.
            swap_first_axes (bool): feed the axis-0 coordinate to the projection's row 1 and the
                axis-1 coordinate to row 0 (the published convention).

        Returns:
            Tensor (C, G, G, G), spatial axes (z, y, x).
        """
        device = self.gaussian_matrix.device
        centres = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
        zz, yy, xx = torch.meshgrid(centres, centres, centres, indexing="ij")
        rows = [yy, zz, xx] if swap_first_axes else [zz, yy, xx]
        pe = self.encode_unit(torch.stack(rows, dim=-1))
        return pe.permute(3, 0, 1, 2)


class MaskDownscaler(nn.Module):
    """Embeds a low-resolution mask prompt onto the token grid (4x downsampling).

    Args:
        embed_dim (int): output width.
        hidden_chans (int): width before the final 1x1x1 projection (16 published); the
            first conv has hidden_chans // 4 outputs.

    Input (B, 1, 4G, 4G, 4G) logits -> output (B, embed_dim, G, G, G).
    """

    def __init__(self, embed_dim: int, hidden_chans: int = 16) -> None:
        super().__init__()
        mid = hidden_chans // 4
        self.conv1 = nn.Conv3d(1, mid, kernel_size=2, stride=2)
        self.norm1 = LayerNorm3d(mid)
        self.conv2 = nn.Conv3d(mid, hidden_chans, kernel_size=2, stride=2)
        self.norm2 = LayerNorm3d(hidden_chans)
        self.proj = nn.Conv3d(hidden_chans, embed_dim, kernel_size=1)
        self.act = nn.GELU()

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.conv1(mask)))
        x = self.act(self.norm2(self.conv2(x)))
        return self.proj(x)


def cell_centres(grid_size: int, cell: float, device: torch.device | None = None) -> torch.Tensor:
    """(grid_size³, 3) float32 (z, y, x) voxel coordinates of the centres of a grid of cubic cells ``cell``
    voxels wide laid over the input cube, in row-major (z, y, x) order."""
    centres = (torch.arange(grid_size, device=device, dtype=torch.float32) + 0.5) * cell
    return torch.stack(torch.meshgrid(centres, centres, centres, indexing="ij"), dim=-1).reshape(-1, 3)


def squared_click_distances(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(B, N, V) squared distance in voxels from each click's voxel centre ((B, N, 3) voxel indices + 0.5) to
    each of the V ``centres`` (V, 3) of :func:`cell_centres`."""
    return ((points[:, :, None, :].float() + 0.5 - centres) ** 2).sum(-1)


class ClickMap(nn.Module):
    """Dense encoding of clicks on the token grid: where each click is, as a map the image tokens see.

    Each click adds to every token a learned vector of its label (positive or negative), weighted by a
    Gaussian of the distance between the click and the token centre (``sigma_tokens`` token edges). Not in
    the published SAM-Med3D: there the image tokens learn where a click is only through attention with the
    click's token, which a network trained from scratch learns to switch off while it learns to segment
    every object that looks like a target (docs/training.md, "Why the model did not follow its clicks").

    Args:
        embed_dim (int): C.
        image_size (int): cube edge in voxels.
        grid_size (int): G, token grid edge.
        sigma_tokens (float): Gaussian width in token edges (1.0: 16 voxels for a 128^3 cube).

    forward(points (B, N, 3) (z, y, x) voxel indices, labels (B, N)) -> (B, C, G, G, G); padding points
    (label -1) add nothing.
    """

    def __init__(self, embed_dim: int, image_size: int, grid_size: int, sigma_tokens: float = 1.0) -> None:
        super().__init__()
        self.positive_embed = nn.Parameter(torch.randn(1, embed_dim))
        self.negative_embed = nn.Parameter(torch.randn(1, embed_dim))
        cell = image_size / grid_size
        self.sigma_voxels = sigma_tokens * cell
        # Voxel coordinates of the token centres, (G^3, 3); derived, so not saved in checkpoints.
        self.register_buffer("centres", cell_centres(grid_size, cell), persistent=False)
        self.grid_size = grid_size

    def forward(self, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        distance2 = squared_click_distances(points, self.centres.to(points.dtype))
        weight = torch.exp(-0.5 * distance2 / self.sigma_voxels**2)  # (B, N, G^3)
        positive = (weight * (labels[:, :, None] == 1)).sum(dim=1)
        negative = (weight * (labels[:, :, None] == 0)).sum(dim=1)
        dense = positive[..., None] * self.positive_embed + negative[..., None] * self.negative_embed
        g = self.grid_size
        return dense.transpose(1, 2).reshape(points.shape[0], -1, g, g, g)


class PromptEncoder3D(nn.Module):
    """Encodes clicks, boxes and a mask prompt for the mask decoder.

    Args:
        embed_dim (int): C, width of every prompt embedding (equals the image embedding width).
        image_size (int): edge of the input cube in voxels (128).
        grid_size (int): G, edge of the image-embedding token grid (8).
        mask_hidden_chans (int): hidden width of the mask downscaler.
        num_frequencies (int | None): Fourier frequencies F; None means C // 2.
        click_map (bool): also encode clicks densely on the token grid (:class:`ClickMap`), added to the
            dense embedding; off for the published layout.
        convention (str): "native", or "published" (dense grid with its first two axes swapped
            relative to the points, see the module docstring).

    Point labels: 1 positive, 0 negative, -1 padding (no point; uses ``not_a_point_embed``
    with its positional part zeroed). Boxes are two opposite corners, each with its own
    learned type embedding.
    """

    def __init__(
        self,
        embed_dim: int,
        image_size: int = 128,
        grid_size: int = 8,
        mask_hidden_chans: int = 16,
        num_frequencies: int | None = None,
        click_map: bool = False,
        convention: str = "native",
    ) -> None:
        super().__init__()
        self.convention = check_convention(convention)
        self.embed_dim = embed_dim
        self.image_size = image_size
        self.grid_size = grid_size
        self.fourier = FourierPositionEncoding3D(embed_dim, num_frequencies or embed_dim // 2)
        self.negative_point_embed = nn.Parameter(torch.randn(1, embed_dim))
        self.positive_point_embed = nn.Parameter(torch.randn(1, embed_dim))
        self.box_corner_embed = nn.Parameter(torch.randn(2, embed_dim))
        self.not_a_point_embed = nn.Parameter(torch.randn(1, embed_dim))
        self.mask_downscaler = MaskDownscaler(embed_dim, mask_hidden_chans)
        self.no_mask_embed = nn.Parameter(torch.randn(1, embed_dim))
        self.click_map = ClickMap(embed_dim, image_size, grid_size) if click_map else None

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image-embedding tokens.

        Returns:
            Tensor (1, C, G, G, G), spatial axes (z, y, x); token (i, j, k) is encoded at its
            centre, voxel (16i + 7.5, 16j + 7.5, 16k + 7.5) for a 128^3 cube with 16^3 patches
            (at (16j + 7.5, 16i + 7.5, 16k + 7.5) in the published convention).
        """
        return self.fourier.grid(self.grid_size, swap_first_axes=self.convention == "published").unsqueeze(0)

    def embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """Embed clicks.

        Args:
            points (Tensor): (B, N, 3) float (z, y, x) voxel indices.
            labels (Tensor): (B, N) int; 1 positive, 0 negative, -1 padding.
            pad (bool): append one padding point (used when no box is given, so the
                decoder always sees a "no further prompt" token as in SAM).

        Returns:
            Tensor (B, N + pad, C).
        """
        if pad:
            points = torch.cat([points, points.new_zeros(points.shape[0], 1, 3)], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        emb = self.fourier.encode_voxels(points.float(), self.image_size)
        labels = labels.unsqueeze(-1)
        emb = torch.where(labels == -1, self.not_a_point_embed, emb)
        emb = emb + torch.where(labels == 0, self.negative_point_embed, 0.0)
        return emb + torch.where(labels == 1, self.positive_point_embed, 0.0)

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """Embed boxes given by two opposite corners.

        Args:
            boxes (Tensor): (B, 2, 3) float; [:, 0] and [:, 1] are (z, y, x) voxel indices of
                the low and high corners.

        Returns:
            Tensor (B, 2, C).
        """
        return self.fourier.encode_voxels(boxes.float(), self.image_size) + self.box_corner_embed

    def forward(
        self,
        points: torch.Tensor | None,
        labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask: torch.Tensor | None,
        batch_size: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode all prompts of a batch.

        Args:
            points (Tensor | None): (B, N, 3) float (z, y, x) voxel indices.
            labels (Tensor | None): (B, N) int, required with points.
            boxes (Tensor | None): (B, 2, 3) float corners.
            mask (Tensor | None): (B, 1, 4G, 4G, 4G) low-resolution logits of a previous prediction.
            batch_size (int): B, used when no prompt carries it.

        Returns:
            sparse (Tensor): (B, N + pad + 2*has_box, C), point tokens then box corners.
            dense (Tensor): (B, C, G, G, G): the mask prompt's embedding (or the no-mask embedding),
                plus the click map when the encoder has one.
        """
        if (points is None) != (labels is None):
            raise ValueError("points and labels must be given together")
        device = self.no_mask_embed.device
        parts = []
        if points is not None:
            parts.append(self.embed_points(points, labels, pad=boxes is None))
        if boxes is not None:
            parts.append(self.embed_boxes(boxes))
        if parts:
            sparse = torch.cat(parts, dim=1)
        else:
            sparse = torch.empty(batch_size, 0, self.embed_dim, device=device)
        if mask is not None:
            dense = self.mask_downscaler(mask)
        else:
            g = self.grid_size
            dense = self.no_mask_embed.reshape(1, -1, 1, 1, 1).expand(batch_size, -1, g, g, g)
        if self.click_map is not None and points is not None:
            dense = dense + self.click_map(points, labels)
        return sparse, dense
