"""The decoder's fine path (image and mask prompt at mask resolution; not in the published model)."""

from __future__ import annotations

import pytest
import torch

from model import build_model
from model.network.mask_decoder import FinePath


@pytest.fixture(scope="module")
def fine():
    torch.manual_seed(0)
    return build_model("vit_tiny", click_map=True, fine_path=True).eval()


def test_pack_and_unpack_are_inverse_and_keep_each_token_its_own_voxels():
    path = FinePath(12)
    features = torch.randn(2, 12, 32, 32, 32)
    packed = path.pack(features)
    assert packed.shape == (2, 12 * 64, 8, 8, 8)
    torch.testing.assert_close(path.unpack(packed), features, rtol=0, atol=0)
    # Token (z, y, x) = (1, 2, 3) holds exactly the 4³ block of mask voxels it covers.
    block = features[:, :, 4:8, 8:12, 12:16].reshape(2, -1)
    assert torch.equal(torch.sort(packed[:, :, 1, 2, 3], dim=1).values, torch.sort(block, dim=1).values)


def test_the_embedding_carries_the_fine_features_and_decoding_uses_image_and_mask_prompt(fine):
    image = torch.randn(1, 1, 128, 128, 128)
    points, labels = torch.tensor([[[60.0, 64.0, 70.0]]]), torch.ones(1, 1, dtype=torch.long)
    with torch.no_grad():
        embedding = fine.encode(image)
        assert embedding.shape == (1, 96 + 12 * 64, 8, 8, 8)
        logits, iou = fine.decode(embedding, points, labels)
        assert logits.shape == (1, 1, 32, 32, 32) and iou.shape == (1, 1)
        # A voxel-level change of the image inside one token changes the mask logits under that token.
        edited = image.clone()
        edited[..., 64:68, 64:68, 64:68] += 5.0
        other, _ = fine.decode(fine.encode(edited), points, labels)
        assert (other - logits)[0, 0, 16, 16, 16].abs() > 1e-4
        # The mask prompt reaches the logits through the fine path as well as through the tokens.
        prompt = torch.full((1, 1, 32, 32, 32), -10.0)
        prompt[..., 10:20, 10:20, 10:20] = 10.0
        with_prompt, _ = fine.decode(embedding, points, labels, mask_prompt=prompt)
        fine.mask_decoder.fine.mask_mix.weight.data.mul_(0)
        fine.mask_decoder.fine.mask_mix.bias.data.mul_(0)
        tokens_only, _ = fine.decode(embedding, points, labels, mask_prompt=prompt)
    assert not torch.allclose(with_prompt, tokens_only)


def test_a_decoder_refuses_an_embedding_of_the_other_layout(fine, tiny):
    image = torch.randn(1, 1, 128, 128, 128)
    with torch.no_grad(), pytest.raises(ValueError, match="expects 96"):
        tiny.decode(fine.encode(image), torch.tensor([[[60.0, 64.0, 70.0]]]), torch.ones(1, 1, dtype=torch.long))
    with torch.no_grad(), pytest.raises(ValueError, match="expects 864"):
        fine.decode(tiny.encode(image), torch.tensor([[[60.0, 64.0, 70.0]]]), torch.ones(1, 1, dtype=torch.long))


def test_click_maps_place_each_click_at_mask_resolution_by_label():
    path = FinePath(12, clicks=True)
    image = torch.randn(1, 12, 32, 32, 32)
    points = torch.tensor([[[10.0, 50.0, 90.0], [100.0, 20.0, 60.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[1, 0, -1]])  # positive, negative, padding
    maps = path.click_maps(image, points, labels)
    assert maps.shape == (1, 6, 32, 32, 32)
    # Channels (positive, negative) x (Gaussian of 1 mask voxel, of 3, similarity-weighted): each peaks at its
    # own click's mask voxel (voxel index // 4).
    for channel, voxel in ((0, (2, 12, 22)), (1, (25, 5, 15)), (2, (2, 12, 22)), (3, (25, 5, 15))):
        peak = torch.unravel_index(maps[0, channel].argmax(), (32, 32, 32))
        assert tuple(int(i) for i in peak) == voxel, channel
    # The similarity map is the cosine similarity to the click's own features there: 1 x the Gaussian's weight.
    assert float(maps[0, 4, 2, 12, 22]) == pytest.approx(float(maps[0, 0, 2, 12, 22]) ** (1 / 16), rel=1e-4)
    # The padding point adds nothing: the corner's maps are those of the two clicks alone.
    alone = path.click_maps(image, points[:, :2], labels[:, :2])
    torch.testing.assert_close(maps, alone)


def test_fine_clicks_start_silent_and_then_place_a_click_finer_than_a_token():
    torch.manual_seed(0)
    model = build_model("vit_tiny", click_map=True, fine_path=True, fine_clicks=True).eval()
    embedding = model.encode(torch.randn(1, 1, 128, 128, 128))
    labels = torch.ones(1, 1, dtype=torch.long)
    here, there = torch.tensor([[[64.0, 64.0, 64.0]]]), torch.tensor([[[64.0, 64.0, 72.0]]])
    with torch.no_grad():
        without = build_model("vit_tiny", click_map=True, fine_path=True).eval()
        without.load_state_dict(model.state_dict(), strict=False)
        # Zero-initialised: a new network decodes as it would without the click features.
        torch.testing.assert_close(model.decode(embedding, here, labels)[0], without.decode(embedding, here, labels)[0])
        torch.nn.init.normal_(model.mask_decoder.fine.click_mix.weight, std=0.1)
        moved = model.decode(embedding, there, labels)[0] - model.decode(embedding, here, labels)[0]
        moved_tokens_only = without.decode(embedding, there, labels)[0] - without.decode(embedding, here, labels)[0]
    # Both clicks are inside token (4, 4, 4) (voxels 64-79). What the click features add to the change of the
    # logits is largest where the click moved (mask voxels x = 16 -> 18) and fades with the distance.
    change = (moved - moved_tokens_only)[0, 0].abs()
    assert change[16, 16, 18] > 1e-3 and change[16, 16, 18] > 5 * change[16, 16, 6]
