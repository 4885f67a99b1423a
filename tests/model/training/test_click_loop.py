"""The click loop's loss at patch and at low resolution."""

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch import nn

from model.network.sam3d import upsample_logits
from model.training.click_loop import ClickLoop


class _FixedLogits(nn.Module):
    """Stands in for Sam3D: whatever the prompts, the same low-resolution logits."""

    def __init__(self, lowres: torch.Tensor) -> None:
        super().__init__()
        self.lowres = nn.Parameter(lowres)

    def encode(self, image):
        return image

    def decode(self, embeddings, points=None, labels=None, mask_prompt=None):
        return self.lowres, None

    def upsample(self, logits):
        return upsample_logits(logits, 32)


@pytest.mark.parametrize("resolution", ["patch", "lowres"])
def test_the_loss_is_dice_ce_summed_over_the_iterations_at_the_chosen_resolution(resolution):
    generator = torch.Generator().manual_seed(0)
    lowres = torch.randn(2, 1, 8, 8, 8, generator=generator)
    target = torch.zeros(2, 1, 32, 32, 32)
    target[:, :, 8:20, 10:24, 4:16] = 1
    loop = ClickLoop(_FixedLogits(lowres), iterations=3, loss_resolution=resolution)
    loss = loop(torch.zeros(2, 1, 32, 32, 32), target, torch.tensor([1, 2]), refine_iteration=1)
    dice_ce = DiceCELoss(sigmoid=True)
    if resolution == "patch":
        expected = dice_ce(upsample_logits(lowres, 32), target)
    else:
        expected = dice_ce(lowres, F.interpolate(target, size=(8, 8, 8), mode="area"))
    torch.testing.assert_close(loss, 3 * expected)


def test_an_unknown_loss_resolution_is_refused():
    with pytest.raises(ValueError, match="loss_resolution"):
        ClickLoop(_FixedLogits(torch.zeros(1, 1, 8, 8, 8)), iterations=3, loss_resolution="full")


class _RecordingPrompts(_FixedLogits):
    """Records how many clicks each decode gets (None: a refine-only decode)."""

    def __init__(self, lowres):
        super().__init__(lowres)
        self.fed = []

    def decode(self, embeddings, points=None, labels=None, mask_prompt=None):
        self.fed.append(None if points is None else points.shape[1])
        return super().decode(embeddings, points, labels, mask_prompt)


def test_new_click_only_iterations_get_the_newest_click_and_the_others_all_clicks():
    model = _RecordingPrompts(torch.zeros(1, 1, 8, 8, 8))
    loop = ClickLoop(model, iterations=6, loss_resolution="lowres")
    target = torch.zeros(1, 1, 32, 32, 32)
    target[..., 4:12, 4:12, 4:12] = 1
    loop(torch.zeros(1, 1, 32, 32, 32), target, torch.tensor([3]), refine_iteration=2, new_click_only=(1, 4))
    # Clicks so far: 1, 2, -, 3, 4, - ; iterations 1 and 4 see only the newest.
    assert model.fed == [1, 1, None, 3, 1, None]
    assert len(loop.iteration_losses) == 6


def test_new_click_only_draws_are_reproducible_and_follow_the_fraction():
    from model.training.batching import new_click_only_iterations

    assert new_click_only_iterations(0, 5, 11, 0.0) == ()
    assert new_click_only_iterations(0, 5, 11, 1.0) == tuple(range(1, 11))
    assert new_click_only_iterations(0, 5, 11, 0.5) == new_click_only_iterations(0, 5, 11, 0.5)
    counts = [len(new_click_only_iterations(0, b, 11, 0.5)) for b in range(400)]
    assert 4.5 < sum(counts) / len(counts) < 5.5


class _RecordingMaskPrompts(_FixedLogits):
    """A network of the given convention that records the mask prompt of each decode."""

    image_size = 32

    def __init__(self, lowres, convention):
        super().__init__(lowres)
        self.convention = convention
        self.mask_prompts = []

    def decode(self, embeddings, points=None, labels=None, mask_prompt=None):
        self.mask_prompts.append(None if mask_prompt is None else mask_prompt.detach().clone())
        return super().decode(embeddings, points, labels, mask_prompt)


@pytest.mark.parametrize("convention", ["native", "published"])
def test_the_first_mask_prompt_follows_the_convention(convention):
    model = _RecordingMaskPrompts(torch.full((2, 1, 8, 8, 8), 3.0), convention)
    target = torch.zeros(2, 1, 32, 32, 32)
    target[..., 4:12, 4:12, 4:12] = 1
    ClickLoop(model, iterations=3, loss_resolution="lowres")(
        torch.zeros(2, 1, 32, 32, 32), target, torch.tensor([3, 4]), refine_iteration=1
    )
    first, later = model.mask_prompts[0], model.mask_prompts[1]
    if convention == "published":  # the published code's first click: all-zero logits, not "no mask"
        assert first is not None and first.shape == (2, 1, 8, 8, 8) and not first.any()
    else:
        assert first is None
    torch.testing.assert_close(later, torch.full((2, 1, 8, 8, 8), 3.0))
