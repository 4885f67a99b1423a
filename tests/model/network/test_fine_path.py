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
