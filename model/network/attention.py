"""Multi-head self-attention over a 3D token grid with decomposed relative position bias.

Also holds the window partitioning used by the published ("reference") block layout.

Conventions (``CONVENTIONS``). Write b_a[qz, qy, qx, k] = q(qz, qy, qx) · R_a[i_a - k], the per-axis
terms for query position i and key coordinate k along axis a. "native" adds, for key (kz, ky, kx),
b_z[.., kz] + b_y[.., ky] + b_x[.., kx]. "published" reproduces the broadcasting of the published
SAM-Med3D code, which its weights learned with: b_z[qz, qy, qx, kx] + b_y[qz, qy, kz, kx]
+ b_x[qz, qy, ky, kx] (every offset lands on the key's x axis; the y and x terms are read at the
key's z and y in place of the query's x). That only broadcasts on cubic grids, which the published
8^3 grid and 14^3 windows are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CONVENTIONS = ("native", "published")


def check_convention(convention: str) -> str:
    """`convention` itself; ValueError naming the known ones otherwise."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    return convention


def relative_table_lookup(table: torch.Tensor, size: int) -> torch.Tensor:
    """Expand a relative-offset table into a (query, key) lookup.

    Args:
        table (Tensor): (2 * size - 1, C); row ``r`` holds the embedding of offset ``r - (size - 1)``.
        size (int): S, the number of positions along this axis.

    Returns:
        Tensor (S, S, C): entry [i, j] is the embedding of offset ``i - j``.
    """
    if table.shape[0] != 2 * size - 1:
        raise ValueError(f"table has {table.shape[0]} rows, expected {2 * size - 1} for size {size}")
    pos = torch.arange(size, device=table.device)
    return table[pos[:, None] - pos[None, :] + (size - 1)]


def decomposed_rel_pos_bias(
    q: torch.Tensor,
    grid: tuple[int, int, int],
    rel_z: torch.Tensor,
    rel_y: torch.Tensor,
    rel_x: torch.Tensor,
    convention: str = "native",
) -> torch.Tensor:
    """Additive attention bias q·R_z[qz-kz] + q·R_y[qy-ky] + q·R_x[qx-kx] ("native").

    The bias for all N*N pairs is separable into three per-axis terms, each of which
    only needs an (N, S) product, so the full (N, N) bias costs N*3S dot products
    instead of N*N.

    Args:
        q (Tensor): (..., N, C) queries, unscaled, tokens flattened in (z, y, x) order, N = D*H*W.
        grid (tuple[int, int, int]): (D, H, W) token grid of the attention.
        rel_z, rel_y, rel_x (Tensor): (2D-1, C), (2H-1, C), (2W-1, C) offset tables.
        convention (str): "native", or "published" for the published broadcasting of the three
            terms (see the module docstring; needs D = H = W).

    Returns:
        Tensor (..., N, N): bias indexed [query token, key token], both in (z, y, x) flattening.
    """
    d, h, w = grid
    lead = q.shape[:-2]
    qg = q.reshape(*lead, d, h, w, q.shape[-1])
    bz = torch.einsum("...zyxc,zkc->...zyxk", qg, relative_table_lookup(rel_z, d))
    by = torch.einsum("...zyxc,ykc->...zyxk", qg, relative_table_lookup(rel_y, h))
    bx = torch.einsum("...zyxc,xkc->...zyxk", qg, relative_table_lookup(rel_x, w))
    if convention == "published":
        if not d == h == w:
            raise ValueError(f"the published relative-position broadcasting needs a cubic grid, got {grid}")
        # Result axes (qz, qy, qx, kz, ky, kx); see the module docstring for what lands where.
        bias = bz[..., None, None, :] + by[..., None, :, None, :] + bx[..., None, None, :, :]
    elif convention == "native":
        bias = bz[..., :, None, None] + by[..., None, :, None] + bx[..., None, None, :]
    else:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    n = d * h * w
    return bias.reshape(*lead, n, n)


def partition_windows(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Zero-pad a token grid to a multiple of ``window`` and cut it into cubic windows.

    Args:
        x (Tensor): (B, D, H, W, C) tokens.
        window (int): window edge length in tokens.

    Returns:
        windows (Tensor): (B * nWindows, window, window, window, C), windows ordered (z, y, x).
        padded (tuple[int, int, int]): (Dp, Hp, Wp), the grid size after padding.
    """
    b, d, h, w, c = x.shape
    pd, ph, pw = (-d) % window, (-h) % window, (-w) % window
    if pd or ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph, 0, pd))
    dp, hp, wp = d + pd, h + ph, w + pw
    x = x.view(b, dp // window, window, hp // window, window, wp // window, window, c)
    windows = x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, window, window, window, c)
    return windows, (dp, hp, wp)


def merge_windows(
    windows: torch.Tensor, window: int, padded: tuple[int, int, int], grid: tuple[int, int, int]
) -> torch.Tensor:
    """Inverse of :func:`partition_windows`: reassemble windows and crop the padding away.

    Args:
        windows (Tensor): (B * nWindows, window, window, window, C).
        window (int): window edge length.
        padded (tuple[int, int, int]): (Dp, Hp, Wp) returned by partition_windows.
        grid (tuple[int, int, int]): (D, H, W) original grid.

    Returns:
        Tensor (B, D, H, W, C).
    """
    dp, hp, wp = padded
    nz, ny, nx = dp // window, hp // window, wp // window
    b = windows.shape[0] // (nz * ny * nx)
    x = windows.view(b, nz, ny, nx, window, window, window, -1)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, dp, hp, wp, -1)
    d, h, w = grid
    return x[:, :d, :h, :w].contiguous()


class RelPosAttention(nn.Module):
    """Self-attention over a cubic token grid with learned decomposed relative position bias.

    Args:
        dim (int): token width C.
        num_heads (int): number of heads; head width is C // num_heads.
        grid_size (int): S, edge of the cubic grid this layer attends over (sizes the
            offset tables to (2S-1, head_dim)).
        convention (str): relative-position broadcasting, "native" or "published" (module docstring).

    Input (B, S, S, S, C) -> output (B, S, S, S, C), axes (batch, z, y, x, channel).
    """

    def __init__(self, dim: int, num_heads: int, grid_size: int, convention: str = "native") -> None:
        super().__init__()
        check_convention(convention)
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.grid_size = grid_size
        self.convention = convention
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_z = nn.Parameter(torch.zeros(2 * grid_size - 1, head_dim))
        self.rel_pos_y = nn.Parameter(torch.zeros(2 * grid_size - 1, head_dim))
        self.rel_pos_x = nn.Parameter(torch.zeros(2 * grid_size - 1, head_dim))
        for table in (self.rel_pos_z, self.rel_pos_y, self.rel_pos_x):
            nn.init.trunc_normal_(table, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d, h, w, c = x.shape
        if (d, h, w) != (self.grid_size,) * 3:
            raise ValueError(f"grid {(d, h, w)} does not match attention grid size {self.grid_size}")
        n = d * h * w
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        bias = decomposed_rel_pos_bias(q, (d, h, w), self.rel_pos_z, self.rel_pos_y, self.rel_pos_x, self.convention)
        # SDPA adds a float attn_mask after scaling q·k, which is exactly where the bias belongs.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = out.transpose(1, 2).reshape(b, d, h, w, c)
        return self.proj(out)
