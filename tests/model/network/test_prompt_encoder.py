"""Prompt encoding: positions in (z, y, x) and label embeddings."""

from __future__ import annotations

import torch

from model.network.prompt_encoder import PromptEncoder3D


def test_point_encoded_at_its_token_centre_not_transposed():
    pe = PromptEncoder3D(96)
    dense = pe.get_dense_pe()[0]  # (C, 8, 8, 8), axes (z, y, x)
    z, y, x = 1, 5, 2
    centre = torch.tensor([16 * z + 7.5, 16 * y + 7.5, 16 * x + 7.5])
    point = pe.fourier.encode_voxels(centre, 128)
    torch.testing.assert_close(point, dense[:, z, y, x], rtol=1e-5, atol=1e-5)
    for other in [(y, z, x), (x, y, z), (z, x, y)]:
        assert (point - dense[:, other[0], other[1], other[2]]).abs().max() > 1e-2


def test_point_embeddings_by_label():
    pe = PromptEncoder3D(96)
    points = torch.tensor([[[3.0, 4.0, 5.0], [60.0, 70.0, 80.0], [1.0, 2.0, 3.0]]])
    labels = torch.tensor([[1, 0, -1]])
    emb = pe.embed_points(points, labels, pad=True)
    assert emb.shape == (1, 4, 96)
    fourier = pe.fourier.encode_voxels(points, 128)[0]
    torch.testing.assert_close(emb[0, 0], fourier[0] + pe.positive_point_embed[0])
    torch.testing.assert_close(emb[0, 1], fourier[1] + pe.negative_point_embed[0])
    torch.testing.assert_close(emb[0, 2], pe.not_a_point_embed[0])
    torch.testing.assert_close(emb[0, 3], pe.not_a_point_embed[0])


def test_box_corners_have_their_own_embeddings():
    pe = PromptEncoder3D(96)
    box = torch.tensor([[[10.0, 20.0, 30.0], [50.0, 60.0, 70.0]]])
    emb = pe.embed_boxes(box)
    fourier = pe.fourier.encode_voxels(box, 128)
    torch.testing.assert_close(emb, fourier + pe.box_corner_embed)


def test_mask_prompt_and_no_mask():
    pe = PromptEncoder3D(96)
    _, dense = pe(None, None, None, torch.randn(2, 1, 32, 32, 32), 2)
    assert dense.shape == (2, 96, 8, 8, 8)
    _, dense = pe(None, None, None, None, 2)
    torch.testing.assert_close(dense[1, :, 3, 4, 5], pe.no_mask_embed[0])


def test_published_fourier_layout_fills_384_with_sin_cos_sin():
    pe = PromptEncoder3D(384, num_frequencies=128)
    assert pe.fourier.gaussian_matrix.shape == (3, 128)
    feats = pe.fourier.encode_voxels(torch.tensor([[3.0, 70.0, 101.5]]), 128)
    assert feats.shape == (1, 384)
    torch.testing.assert_close(feats[:, 256:], feats[:, :128])
    torch.testing.assert_close(feats[:, :128] ** 2 + feats[:, 128:256] ** 2, torch.ones(1, 128))


def test_the_click_map_marks_the_tokens_around_each_click_with_its_label():
    pe = PromptEncoder3D(96, click_map=True)
    points = torch.tensor([[[16 * 1 + 7.5, 16 * 5 + 7.5, 16 * 2 + 7.5], [120.0, 8.0, 8.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[1, 0, -1]])
    _, dense = pe(points, labels, None, None, 1)
    _, plain = pe(None, None, None, None, 1)
    added = (dense - plain).detach()  # (1, C, 8, 8, 8)
    positive, negative = pe.click_map.positive_embed[0].detach(), pe.click_map.negative_embed[0].detach()
    # Exactly the positive vector on the positive click's token (the negative click is far away).
    torch.testing.assert_close(added[0, :, 1, 5, 2], positive, rtol=1e-4, atol=1e-4)
    # Next to the negative click, mostly the negative vector; far from both, almost nothing.
    weights = torch.linalg.lstsq(torch.stack([positive, negative], 1), added[0, :, 7, 0, 0, None]).solution[:, 0]
    assert weights[1] > 0.5 and abs(float(weights[0])) < 1e-3
    assert added[0, :, 4, 0, 7].abs().max() < 0.2 * positive.abs().max()
    # The padding point (label -1) adds nothing: the same map without it.
    _, without_padding = pe(points[:, :2], labels[:, :2], None, None, 1)
    torch.testing.assert_close(dense, without_padding)


def test_the_click_map_is_off_by_default_and_without_clicks():
    assert PromptEncoder3D(96).click_map is None
    pe = PromptEncoder3D(96, click_map=True)
    _, dense = pe(None, None, None, None, 2)
    torch.testing.assert_close(dense, pe.no_mask_embed.reshape(1, -1, 1, 1, 1).expand(2, -1, 8, 8, 8))
    assert "click_map.centres" not in pe.state_dict()  # derived from the grid, not saved
