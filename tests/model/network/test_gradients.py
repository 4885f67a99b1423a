"""Every parameter used by single-mask training receives a gradient."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def test_single_mask_training_reaches_every_used_parameter(tiny):
    image = torch.randn(2, 1, 128, 128, 128)
    points = torch.tensor([[[40.0, 50.0, 60.0], [70.0, 20.0, 90.0], [0.0, 0.0, 0.0]]]).expand(2, -1, -1)
    labels = torch.tensor([[1, 0, -1]]).expand(2, -1)
    boxes = torch.tensor([[[20.0, 30.0, 40.0], [90.0, 100.0, 110.0]]]).expand(2, -1, -1)
    mask_prompt = torch.randn(2, 1, 32, 32, 32)
    logits, iou = tiny(image, points, labels, boxes, mask_prompt, multimask=False)
    target = (torch.rand(2, 1, 32, 32, 32) > 0.5).float()
    loss = F.binary_cross_entropy_with_logits(logits, target) + F.mse_loss(iou, torch.full_like(iou, 0.5))
    loss.backward()

    no_grad = {n for n, p in tiny.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    # Single-mask output uses mask token 0 only, so hypernetworks 1..3 are idle; a mask
    # prompt replaces the no-mask embedding.
    expected = {
        f"mask_decoder.mask_hypernets.{t}.layers.{j}.{kind}"
        for t in (1, 2, 3)
        for j in (0, 1, 2)
        for kind in ("weight", "bias")
    } | {"prompt_encoder.no_mask_embed"}
    assert no_grad == expected
