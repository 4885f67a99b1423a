"""Relative position bias, window partitioning, and native vs reference attention."""

from __future__ import annotations

import itertools

import torch

from model.network.attention import RelPosAttention, decomposed_rel_pos_bias, merge_windows, partition_windows
from model.network.image_encoder import ImageEncoder3D


def naive_bias(q, grid, rel_z, rel_y, rel_x):
    """Full (N, N) bias built pair by pair from the tables; q is (N, C)."""
    d, h, w = grid
    coords = list(itertools.product(range(d), range(h), range(w)))
    n = len(coords)
    bias = torch.zeros(n, n)
    for a, (qz, qy, qx) in enumerate(coords):
        for b, (kz, ky, kx) in enumerate(coords):
            bias[a, b] = (
                q[a] @ rel_z[qz - kz + d - 1] + q[a] @ rel_y[qy - ky + h - 1] + q[a] @ rel_x[qx - kx + w - 1]
            )
    return bias


def test_decomposed_bias_matches_naive_on_anisotropic_grid():
    grid = (2, 3, 4)  # distinct sizes catch any swap of the per-axis tables
    c = 5
    q = torch.randn(2, 3, 24, c)
    tables = [torch.randn(2 * s - 1, c) for s in grid]
    fast = decomposed_rel_pos_bias(q, grid, *tables)
    assert fast.shape == (2, 3, 24, 24)
    for b, head in itertools.product(range(2), range(3)):
        torch.testing.assert_close(fast[b, head], naive_bias(q[b, head], grid, *tables), rtol=1e-5, atol=1e-5)


def test_attention_equals_explicit_softmax_with_naive_bias():
    attn = RelPosAttention(dim=8, num_heads=2, grid_size=3)
    with torch.no_grad():
        for table in (attn.rel_pos_z, attn.rel_pos_y, attn.rel_pos_x):
            table.normal_()
    x = torch.randn(1, 3, 3, 3, 8)
    out = attn(x)

    qkv = attn.qkv(x).reshape(27, 3, 2, 4)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # (N, heads, 4)
    heads = []
    for h in range(2):
        logits = (q[:, h] @ k[:, h].T) / 2.0 + naive_bias(
            q[:, h], (3, 3, 3), attn.rel_pos_z, attn.rel_pos_y, attn.rel_pos_x
        )
        heads.append(logits.softmax(-1) @ v[:, h])
    expected = attn.proj(torch.cat(heads, dim=-1)).reshape(1, 3, 3, 3, 8)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_window_partition_round_trip_with_padding():
    x = torch.randn(2, 5, 6, 7, 3)
    windows, padded = partition_windows(x, 4)
    assert padded == (8, 8, 8)
    assert windows.shape == (2 * 8, 4, 4, 4, 3)
    torch.testing.assert_close(windows[0, :4, :4, :4], x[0, :4, :4, :4])
    assert windows[1, 0, 0, 3].abs().sum() == 0  # x index 7 is padding
    torch.testing.assert_close(merge_windows(windows, 4, padded, (5, 6, 7)), x)


def small_encoder(mode: str, window: int) -> ImageEncoder3D:
    return ImageEncoder3D(
        img_size=64,
        patch_size=8,
        embed_dim=32,
        depth=3,
        num_heads=2,
        out_chans=16,
        window_size=window,
        global_attn_indexes=(1,),
        attention_mode=mode,
    )


def test_reference_equals_native_when_window_covers_grid_without_padding():
    native = small_encoder("native", 8)
    reference = small_encoder("reference", 8)
    assert [b.window_size for b in reference.blocks] == [8, 0, 8]
    reference.load_state_dict(native.state_dict(), strict=True)
    x = torch.randn(2, 1, 64, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(reference(x), native(x), rtol=1e-4, atol=1e-5)


def test_reference_differs_from_native_when_grid_is_padded():
    native = small_encoder("native", 8)
    reference = small_encoder("reference", 14)
    state = native.state_dict()
    ours = reference.state_dict()
    for name, value in ours.items():
        if value.shape == state[name].shape:
            ours[name] = state[name]
        else:
            # Offsets -7..7 sit in rows 6..20 of a 27-row table, so real token pairs get
            # exactly the native bias; any difference comes from attending to padding.
            assert value.shape == (27, 16) and state[name].shape == (15, 16)
            ours[name] = value.clone()
            ours[name][6:21] = state[name]
    reference.load_state_dict(ours, strict=True)
    x = torch.randn(1, 1, 64, 64, 64)
    with torch.no_grad():
        diff = (reference(x) - native(x)).abs().max()
    assert diff > 1e-3
