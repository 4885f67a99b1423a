"""The training click loop as one module, so that DistributedDataParallel wraps all of it.

The published trainer calls the encoder and decoder submodules around its DDP wrapper, so DDP never sees
a forward pass and its gradients are never averaged across GPUs. Here the whole loop - encode once, then
simulated clicks and decodes - is ``ClickLoop.forward``, and DDP wraps ClickLoop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch import nn

from model.clicks import training_clicks
from model.input_convention import first_mask_prompt
from model.network.sam3d import Sam3D

LOSS_RESOLUTIONS = ("patch", "lowres")


class ClickLoop(nn.Module):
    """Loss of one batch under simulated interactive correction.

    Per batch the image is encoded once, then ``iterations`` decodes:

    * each iteration adds one click per sample, drawn by :func:`model.clicks.training_clicks` from the
      error region of the previous prediction (the first from the empty prediction: a target voxel);
    * clicks accumulate: every decode with points sees all clicks of the sample so far, except in the
      iterations listed in ``new_click_only``, which see only the newest click (as the paper's evaluation
      protocol feeds them: the earlier clicks live on in the mask prompt only);
    * the mask prompt is the previous iteration's low-resolution logits, detached; the first iteration has
      none, i.e. the prompt encoder's learned no-mask embedding, as at inference for a first click;
    * iteration ``refine_iteration`` (not the first) and the last one draw no click and decode from the
      mask prompt alone (no points), teaching the model to refine its own output;
    * loss: MONAI DiceCELoss (sigmoid), summed over the iterations, of either the logits upsampled to the
      patch vs the target (``loss_resolution="patch"``, the paper's) or the low-resolution logits vs the
      target averaged over each low-resolution voxel (``"lowres"``: the same gradient reaches the network
      through a 4x smaller loss, a fraction of the cost of a decode; clicks are still drawn from the
      prediction at patch resolution).

    Args:
        model (Sam3D): the network.
        iterations (int): decodes per batch, at least 3 (paper: 11).
        loss_resolution (str): "patch" or "lowres".
    """

    def __init__(self, model: Sam3D, iterations: int = 11, loss_resolution: str = "patch") -> None:
        super().__init__()
        if iterations < 3:
            raise ValueError(f"the click loop needs at least 3 iterations, got {iterations}")
        if loss_resolution not in LOSS_RESOLUTIONS:
            raise ValueError(f"loss_resolution must be one of {LOSS_RESOLUTIONS}, got {loss_resolution!r}")
        self.model = model
        self.iterations = iterations
        self.loss_resolution = loss_resolution
        self.loss = DiceCELoss(sigmoid=True)

    def forward(
        self,
        image: torch.Tensor,
        target: torch.Tensor,
        seeds: torch.Tensor,
        refine_iteration: int,
        new_click_only: Sequence[int] = (),
    ) -> torch.Tensor:
        """Summed loss over the click iterations.

        Args:
            image (Tensor): (B, 1, S, S, S) normalised patches, axes (z, y, x).
            target (Tensor): (B, 1, S, S, S) float, 1 inside the mask.
            seeds (Tensor): (B,) int64, one click seed per sample: a sample draws the same clicks whatever
                its batch or process.
            refine_iteration (int): in [1, iterations - 2], the extra iteration without a new click; the
                same on every process.
            new_click_only (Sequence[int]): iterations whose decode gets only the newest click; the same on
                every process.

        Returns:
            Tensor: scalar loss (float32). The loss of each iteration stays in ``iteration_losses``
            (detached), for diagnostics.
        """
        if not 1 <= refine_iteration <= self.iterations - 2:
            raise ValueError(f"refine_iteration must be in [1, {self.iterations - 2}], got {refine_iteration}")
        generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds.tolist()]
        embeddings = self.model.encode(image)
        truth = target > 0.5
        lowres_target = None
        prediction = torch.zeros_like(truth)
        points = labels = None
        mask_prompt = first_mask_prompt(self.model, batch=image.shape[0], device=image.device)
        total = image.new_zeros((), dtype=torch.float32)
        self.iteration_losses: list[torch.Tensor] = []
        for iteration in range(self.iterations):
            refine_only = iteration in (refine_iteration, self.iterations - 1)
            if not refine_only:
                new_points, new_labels = training_clicks(prediction, truth, generators)
                points = new_points if points is None else torch.cat([points, new_points], dim=1)
                labels = new_labels if labels is None else torch.cat([labels, new_labels], dim=1)
            fed = slice(-1, None) if iteration in new_click_only else slice(None)
            lowres, _ = self.model.decode(
                embeddings,
                points=None if refine_only else points[:, fed],
                labels=None if refine_only else labels[:, fed],
                mask_prompt=mask_prompt,
            )
            if self.loss_resolution == "patch":
                logits = self.model.upsample(lowres).float()
                loss = self.loss(logits, target.float())
            else:
                if lowres_target is None:
                    lowres_target = F.interpolate(target.float(), size=lowres.shape[2:], mode="area")
                loss = self.loss(lowres.float(), lowres_target)
                logits = self.model.upsample(lowres.detach())
            total = total + loss
            self.iteration_losses.append(loss.detach())
            mask_prompt = lowres.detach()
            prediction = logits.detach() > 0
        return total
