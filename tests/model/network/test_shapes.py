"""Forward shapes of the full model and its parts."""

from __future__ import annotations

import pytest
import torch


def prompts(batch: int):
    points = torch.tensor([[40.0, 60.5, 70.0], [10.0, 100.0, 3.0]]).expand(batch, -1, -1)
    labels = torch.tensor([1, 0]).expand(batch, -1)
    boxes = torch.tensor([[20.0, 30.0, 40.0], [90.0, 100.0, 110.0]]).expand(batch, -1, -1)
    return points, labels, boxes


@pytest.mark.parametrize("batch", [1, 2])
def test_tiny_forward_shapes(tiny, batch):
    image = torch.randn(batch, 1, 128, 128, 128)
    points, labels, boxes = prompts(batch)
    with torch.no_grad():
        emb = tiny.encode(image)
        assert emb.shape == (batch, 96, 8, 8, 8)
        logits, iou = tiny.decode(emb, points, labels)
        assert logits.shape == (batch, 1, 32, 32, 32) and iou.shape == (batch, 1)
        logits, iou = tiny.decode(emb, points, labels, boxes, torch.randn(batch, 1, 32, 32, 32), multimask=True)
        assert logits.shape == (batch, 3, 32, 32, 32) and iou.shape == (batch, 3)
        logits, iou = tiny.decode(emb, boxes=boxes)
        assert logits.shape == (batch, 1, 32, 32, 32)
        logits, iou = tiny(image, points, labels)
        assert logits.shape == (batch, 1, 32, 32, 32)
        assert tiny.upsample(logits).shape == (batch, 1, 128, 128, 128)


def test_sparse_token_counts(tiny):
    points, labels, boxes = prompts(2)
    pe = tiny.prompt_encoder
    sparse, dense = pe(points, labels, None, None, 2)
    assert sparse.shape == (2, 3, 96)  # 2 clicks + 1 padding token when there is no box
    assert dense.shape == (2, 96, 8, 8, 8)
    sparse, _ = pe(points, labels, boxes, None, 2)
    assert sparse.shape == (2, 4, 96)
    sparse, _ = pe(None, None, None, None, 2)
    assert sparse.shape == (2, 0, 96)


def test_vit_b_encoder_shape(vit_b_native):
    with torch.no_grad():
        out = vit_b_native.image_encoder(torch.randn(1, 1, 128, 128, 128))
    assert out.shape == (1, 384, 8, 8, 8)


def test_wrong_input_size_rejected(tiny):
    with pytest.raises(ValueError):
        tiny.encode(torch.randn(1, 1, 96, 128, 128))
