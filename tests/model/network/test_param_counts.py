"""Parameter counts of vit_b_ori, derived by hand from the published configuration."""

from __future__ import annotations

import pytest


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def linear(i: int, o: int) -> int:
    return i * o + o


def layernorm(c: int) -> int:
    return 2 * c


def encoder_count(rel_rows_per_block: list[int]) -> int:
    patch = 16**3 * 768 + 768
    pos = 8**3 * 768
    block = 2 * layernorm(768) + linear(768, 3 * 768) + linear(768, 768) + linear(768, 3072) + linear(3072, 768)
    rel = sum(3 * rows * 64 for rows in rel_rows_per_block)
    neck = 768 * 384 + layernorm(384) + 27 * 384 * 384 + layernorm(384)
    return patch + pos + 12 * block + rel + neck


def cross_attention(dim: int, inner: int) -> int:
    return 3 * linear(dim, inner) + linear(inner, dim)


DECODER = (
    2 * (cross_attention(384, 384) + 2 * cross_attention(384, 192) + linear(384, 2048) + linear(2048, 384) + 4 * 768)
    + cross_attention(384, 192)
    + layernorm(384)
    + 384  # IoU token
    + 4 * 384  # mask tokens
    + (384 * 96 * 8 + 96) + layernorm(96) + (96 * 48 * 8 + 48)  # upscaling
    + 4 * (linear(384, 384) * 2 + linear(384, 48))  # hypernetworks
    + linear(384, 256) + linear(256, 256) + linear(256, 4)  # IoU head
)
MASK_DOWNSCALER = (8 * 4 + 4) + layernorm(4) + (4 * 16 * 8 + 16) + layernorm(16) + linear(16, 384)
PROMPT_PUBLISHED = 2 * 384 + 384 + MASK_DOWNSCALER + 384  # pos/neg, not-a-point, downscaler, no-mask
PROMPT_OURS = PROMPT_PUBLISHED + 2 * 384  # plus the two trained box-corner embeddings

WINDOWED = [i for i in range(12) if (i + 1) % 3 != 0]
REFERENCE_ROWS = [27 if i in WINDOWED else 15 for i in range(12)]
NATIVE_ROWS = [15] * 12


def test_hand_counts_match_published_facts():
    published_total = encoder_count(REFERENCE_ROWS) + PROMPT_PUBLISHED + DECODER
    assert encoder_count(REFERENCE_ROWS) == pytest.approx(92.9e6, rel=1e-3)
    assert DECODER == pytest.approx(7.58e6, rel=1e-3)
    assert PROMPT_PUBLISHED == pytest.approx(8.7e3, rel=5e-3)
    assert published_total == pytest.approx(100.5e6, rel=5e-3)


def test_reference_mode_counts(vit_b_reference):
    m = vit_b_reference
    assert count(m.image_encoder) == encoder_count(REFERENCE_ROWS) == 92_924_928
    assert count(m.mask_decoder) == DECODER == 7_575_636
    assert count(m.prompt_encoder) == PROMPT_OURS == 9_436
    published_layout = count(m) - m.prompt_encoder.box_corner_embed.numel()
    assert published_layout == 100_509_232
    assert published_layout == pytest.approx(100.5e6, rel=5e-3)


def test_native_mode_counts(vit_b_native):
    # Native mode shrinks the 8 windowed blocks' tables from 27 to 15 rows: -18,432 parameters.
    m = vit_b_native
    assert count(m.image_encoder) == encoder_count(NATIVE_ROWS) == 92_906_496
    assert count(m) == encoder_count(NATIVE_ROWS) + PROMPT_OURS + DECODER == 100_491_568
    assert count(m) == pytest.approx(100.5e6, rel=5e-3)


def test_reference_layout_windows(vit_b_reference, vit_b_native):
    for i, block in enumerate(vit_b_reference.image_encoder.blocks):
        assert block.window_size == (14 if i in WINDOWED else 0)
        assert block.attn.rel_pos_z.shape == (REFERENCE_ROWS[i], 64)
    for block in vit_b_native.image_encoder.blocks:
        assert block.window_size == 0
        assert block.attn.rel_pos_x.shape == (15, 64)
