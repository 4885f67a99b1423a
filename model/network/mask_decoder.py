"""Mask decoder: predicts low-resolution mask logits and their IoU from image and prompt embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.network.layers import MLP, LayerNorm3d
from model.network.prompt_encoder import cell_centres, squared_click_distances
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


# Click maps the fine path reads (FinePath.click_maps).
CLICK_CHANNELS = 6


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
      when there is no mask prompt;
    * with ``clicks``, click features: Conv3d(6 -> F, k=3, pad 1, zero-initialised) of maps at mask resolution
      (:meth:`click_maps`), nothing when the decode gets no clicks. The clicks otherwise reach the mask only
      through the G³ tokens, 16 voxels apart, too coarse to say which side of a boundary a negative click
      asks to remove (docs/training.md, "Clicks at mask resolution"); and, after the sum with the upscaled
      tokens, a residual block Conv3d(F -> F, k=3) -> GELU -> Conv3d(F -> F, k=3, zero-initialised)
      (:meth:`mix`), so that clicks, mask prompt, image and tokens combine beyond a sum before the mask heads.

    Args:
        dim (int): F, the width of the upscaled features.
        scale (int): S / 4G, the input voxels per mask voxel along an axis (4).
        hidden (int): width of the first image convolution.
        clicks (bool): add the click features.
    """

    def __init__(self, dim: int, scale: int = 4, hidden: int = 16, clicks: bool = False) -> None:
        super().__init__()
        self.dim = dim
        self.scale = scale
        self.image_stem = nn.Conv3d(1, hidden, kernel_size=scale, stride=scale)
        self.image_mix = nn.Conv3d(hidden, dim, kernel_size=3, padding=1)
        self.mask_mix = nn.Conv3d(1, dim, kernel_size=3, padding=1)
        self.click_mix = nn.Conv3d(CLICK_CHANNELS, dim, kernel_size=3, padding=1) if clicks else None
        self.mixer = None
        if clicks:
            self.mixer = nn.Sequential(
                nn.Conv3d(dim, dim, kernel_size=3, padding=1), nn.GELU(), nn.Conv3d(dim, dim, kernel_size=3, padding=1)
            )
            # A new network starts as it would without the click features and the mixing block.
            for layer in (self.click_mix, self.mixer[2]):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

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

    def click_maps(self, image: torch.Tensor, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Where the clicks are, at mask resolution: (B, 6, D, D, D) for image features (B, F, D, D, D).

        Channels, each summed over the clicks of one label (positive, then negative; padding adds nothing):
        Gaussians of the distance to the click of 1 and of 3 mask voxels (4 and 12 input voxels), and the
        cosine similarity of each voxel's image features to those of the click's voxel, weighted by a Gaussian
        of 4 mask voxels ("near the click and looking like it").

        Args:
            image (Tensor): (B, F, D, D, D) image features of :meth:`image_features`.
            points (Tensor): (B, N, 3) (z, y, x) voxel indices of the input cube.
            labels (Tensor): (B, N) 1 positive, 0 negative, -1 padding.
        """
        b, f, size = image.shape[:3]
        # Squared distance of every mask voxel to every click, in mask voxels: (B, N, D³).
        grid = cell_centres(size, self.scale, device=points.device)
        distance2 = squared_click_distances(points, grid) / self.scale**2
        features = F.normalize(image.float().reshape(b, f, -1), dim=1)
        at_click = (points.float() / self.scale).floor().clamp(0, size - 1).long()
        flat_index = (at_click[..., 0] * size + at_click[..., 1]) * size + at_click[..., 2]
        click_features = torch.gather(features, 2, flat_index[:, None, :].expand(-1, f, -1))  # (B, F, N)
        similarity = torch.einsum("bfn,bfv->bnv", click_features, features)
        weights = [torch.exp(-0.5 * distance2 / sigma**2) for sigma in (1.0, 3.0)]
        weights.append(torch.exp(-0.5 * distance2 / 4.0**2) * similarity)
        positive, negative = (labels == 1).float(), (labels == 0).float()
        maps = [torch.einsum("bnv,bn->bv", w, kind) for w in weights for kind in (positive, negative)]
        return torch.stack(maps, dim=1).reshape(b, CLICK_CHANNELS, size, size, size)

    def mix(self, features: torch.Tensor) -> torch.Tensor:
        """The features the mask heads read, (B, F, 4G, 4G, 4G): ``features`` (upscaled tokens + this path's
        :meth:`forward`) plus the residual block's output; unchanged without ``clicks``."""
        return features if self.mixer is None else features + self.mixer(features)

    def forward(
        self,
        packed: torch.Tensor,
        mask_prompt: torch.Tensor | None,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Features to add to the upscaled tokens: (B, F, 4G, 4G, 4G). ``points`` / ``labels`` as
        :meth:`click_maps`, read only with ``clicks``."""
        image = self.unpack(packed)
        features = image
        if mask_prompt is not None:
            features = features + self.mask_mix(torch.sigmoid(mask_prompt.to(features.dtype)))
        if self.click_mix is not None and points is not None and points.shape[1] > 0:
            features = features + self.click_mix(self.click_maps(image, points, labels).to(features.dtype))
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
        fine_clicks (bool): the fine path also reads the clicks at mask resolution and mixes its features
            with the upscaled tokens' (needs ``fine_path``).

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
        fine_clicks: bool = False,
    ) -> None:
        super().__init__()
        if fine_clicks and not fine_path:
            raise ValueError("fine_clicks needs fine_path: the clicks enter the decoder through the fine path")
        num_mask_tokens = num_multimask_outputs + 1
        self.transformer = TwoWayTransformer3D(depth, dim, num_heads, mlp_dim)
        self.iou_token = nn.Parameter(torch.randn(1, dim))
        self.mask_tokens = nn.Parameter(torch.randn(num_mask_tokens, dim))
        self.upscaler = MaskUpscaler(dim)
        self.mask_hypernets = nn.ModuleList(MLP(dim, dim, dim // 8, 3) for _ in range(num_mask_tokens))
        self.iou_head = MLP(dim, iou_head_hidden_dim, num_mask_tokens, iou_head_depth)
        self.dim = dim
        self.fine = FinePath(dim // 8, clicks=fine_clicks) if fine_path else None

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        multimask: bool,
        mask_prompt: torch.Tensor | None = None,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
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
            points (Tensor | None): (B, N, 3) clicks, (z, y, x) voxel indices; labels (Tensor | None): (B, N).
                Read only by a fine path with clicks (the others get them through ``sparse`` and ``dense``).

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
            upscaled = self.fine.mix(upscaled + self.fine(fine_packed, mask_prompt, points, labels))
        hyper = torch.stack([mlp(mask_token_out[:, i]) for i, mlp in enumerate(self.mask_hypernets)], dim=1)
        masks = torch.einsum("bmc,bczyx->bmzyx", hyper, upscaled)
        iou = self.iou_head(tokens[:, 0])

        chosen = slice(1, None) if multimask else slice(0, 1)
        return masks[:, chosen], iou[:, chosen]
