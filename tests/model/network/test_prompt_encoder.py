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
