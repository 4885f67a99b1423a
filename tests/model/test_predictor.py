"""Predictor caches the image embedding and agrees with the plain forward pass."""

from __future__ import annotations

import pytest
import torch

from model import Predictor


def test_encoder_runs_once_for_many_prompts(tiny):
    calls = []
    tiny.image_encoder.register_forward_hook(lambda *_: calls.append(1))
    predictor = Predictor(tiny)
    patch = torch.randn(128, 128, 128)
    predictor.set_image(patch)
    logits, iou, lowres = predictor.predict([[64.0, 64.0, 64.0]], [1])
    assert logits.shape == (1, 1, 128, 128, 128) and iou.shape == (1, 1) and lowres.shape == (1, 1, 32, 32, 32)
    logits, iou, lowres = predictor.predict(
        [[64.0, 64.0, 64.0], [10.0, 20.0, 30.0]], [1, 0], mask_input=lowres[:, :1], multimask=True
    )
    assert logits.shape == (1, 3, 128, 128, 128) and iou.shape == (1, 3)
    predictor.predict(None, None, box=[[10.0, 10.0, 10.0], [90.0, 90.0, 90.0]])
    assert len(calls) == 1

    with torch.no_grad():
        ref_low, ref_iou = tiny(patch[None, None], torch.tensor([[[64.0, 64.0, 64.0]]]), torch.tensor([[1]]))
    got_logits, got_iou, got_low = predictor.predict([[64.0, 64.0, 64.0]], [1])
    torch.testing.assert_close(got_low, ref_low)
    torch.testing.assert_close(got_iou, ref_iou)
    torch.testing.assert_close(got_logits, tiny.upsample(ref_low))
    assert len(calls) == 2  # only the reference forward above ran the encoder again


def test_set_image_accepts_batched_shape_and_reset(tiny):
    predictor = Predictor(tiny)
    predictor.set_image(torch.randn(1, 1, 128, 128, 128))
    assert predictor.embedding.shape == (1, 96, 8, 8, 8)
    predictor.reset_image()
    with pytest.raises(RuntimeError):
        predictor.predict([[1.0, 2.0, 3.0]], [1])
    with pytest.raises(ValueError):
        predictor.set_image(torch.randn(2, 1, 128, 128, 128))
