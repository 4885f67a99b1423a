"""Training data: jittered/flipped patches from the catalog, batches, the hand-over format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from catalog.reader import Catalog
from model.intensity import normalize_intensity
from model.targets import select_masks
from model.training.patch_dataset import PatchDataset, unpack_labels
from tests.model.phantom_catalog import phantom_catalog  # noqa: F401  (fixture)


def _unflip(array: np.ndarray, flipped) -> np.ndarray:
    axes = tuple(int(a) for a in np.flatnonzero(np.asarray(flipped)))
    return np.flip(array, axes) if axes else array


def test_samples_match_the_catalog_and_are_deterministic(phantom_catalog):
    masks = select_masks(phantom_catalog, modalities=["CT"])
    dataset = PatchDataset(phantom_catalog, masks, patch_size=128, seed=3)
    catalog = Catalog(phantom_catalog)
    for index in (0, 3):
        sample = dataset[index]
        assert sample["image"].shape == (1, 128, 128, 128) and sample["image"].dtype == torch.float32
        assert sample["label"].shape == (1, 128, 128, 128)
        assert set(torch.unique(sample["label"]).tolist()) == {0.0, 1.0}
        row = masks.iloc[index]
        assert sample["mask_id"] == row.mask_id
        start = sample["start"].numpy()
        stored = catalog.read_patch(row.image_id, tuple(start + 64), (128, 128, 128))
        label = _unflip(sample["label"][0].numpy(), sample["flipped"]) == 1
        assert np.array_equal(label, stored["label"] == row.label_value)
        assert int(label.sum()) == row.stored_voxels  # the box fits, so the whole mask is inside
        image = _unflip(sample["image"][0].numpy(), sample["flipped"])
        np.testing.assert_allclose(image, normalize_intensity(stored["image"], "CT"), rtol=1e-6)
        again = dataset[index]
        assert all(torch.equal(sample[k], again[k]) for k in ("image", "label", "start", "flipped"))
    other_seed = PatchDataset(phantom_catalog, masks, patch_size=128, seed=4)
    assert not torch.equal(other_seed[0]["start"], dataset[0]["start"])


def test_jitter_moves_the_target_and_flips_vary_across_epochs(phantom_catalog):
    masks = select_masks(phantom_catalog, categories=["spleen"])
    dataset = PatchDataset(phantom_catalog, masks, patch_size=128, seed=0)
    bbox = np.asarray(masks.iloc[0].bbox_zyx)
    starts, flips = [], []
    for epoch in range(12):
        dataset.set_epoch(epoch)
        sample = dataset[0]
        starts.append(sample["start"].numpy())
        flips.append(sample["flipped"].numpy())
    starts = np.array(starts)
    offsets = bbox[:3] - starts  # where the box begins inside the patch
    assert len({tuple(s) for s in starts}) == 12
    assert np.ptp(offsets, axis=0).min() > 20
    assert np.all(starts <= bbox[:3]) and np.all(starts + 128 >= bbox[3:])
    flips = np.array(flips)
    assert flips.any(axis=0).all() and (~flips).any(axis=0).all()
    centred = PatchDataset(phantom_catalog, masks, patch_size=128, jitter=False, flips=False)
    centred.set_epoch(5)
    assert np.array_equal(centred[0]["start"].numpy(), (bbox[:3] + bbox[3:]) // 2 - 64)
    assert not centred[0]["flipped"].any()


def test_patches_are_zero_padded_outside_the_image(phantom_catalog):
    masks = select_masks(phantom_catalog, modalities=["MR"], categories=["brain"])
    dataset = PatchDataset(phantom_catalog, masks, patch_size=128, flips=False, seed=1)
    sample = dataset[0]
    shape = np.asarray(masks.iloc[0].stored_shape_zyx)
    start = sample["start"].numpy()
    inside = tuple(slice(max(0, -a), min(128, s - a)) for a, s in zip(start, shape))
    outside = np.ones((128, 128, 128), dtype=bool)
    outside[inside] = False
    assert outside.sum() > 128**3 // 2  # a 64x77x64 image in a 128³ patch
    image, label = sample["image"][0].numpy(), sample["label"][0].numpy()
    assert label[outside].max() == 0
    # Padding is raw 0: one constant value after normalisation.
    assert np.ptp(image[outside]) == 0
    raw = Catalog(phantom_catalog).read_patch(masks.iloc[0].image_id, tuple(start + 64), (128, 128, 128))["image"]
    assert np.array_equal(raw[outside], np.zeros(int(outside.sum()), raw.dtype))


def test_min_voxels_redraws_crops_of_large_masks(phantom_catalog):
    masks = select_masks(phantom_catalog, categories=["liver"], splits=["train"])
    threshold = 5000  # a random 32³ crop centred inside the liver's box holds fewer about a third of the time
    loose = PatchDataset(phantom_catalog, masks, patch_size=32, min_voxels=0, flips=False)
    strict = PatchDataset(phantom_catalog, masks, patch_size=32, min_voxels=threshold, flips=False)
    loose_counts, strict_counts = [], []
    for epoch in range(15):
        loose.set_epoch(epoch)
        strict.set_epoch(epoch)
        loose_counts.append(int(loose[0]["label"].sum()))
        strict_counts.append(int(strict[0]["label"].sum()))
    assert min(loose_counts) < threshold
    assert min(strict_counts) >= threshold
    impossible = PatchDataset(phantom_catalog, masks, patch_size=32, min_voxels=32**3 + 1, max_tries=4, flips=False)
    best = int(impossible[0]["label"].sum())
    assert 0 < best <= 32**3


def test_dataloader_with_two_workers_gives_the_same_samples(phantom_catalog):
    masks = select_masks(phantom_catalog, modalities=["MR"])
    dataset = PatchDataset(phantom_catalog, masks, patch_size=64, seed=7)
    dataset.set_epoch(2)
    expected = [dataset[i] for i in range(len(dataset))]
    loader = DataLoader(dataset, batch_size=2, num_workers=2, shuffle=False)
    batches = list(loader)
    assert sum(len(b["mask_id"]) for b in batches) == len(dataset)
    images = torch.cat([b["image"] for b in batches])
    starts = torch.cat([b["start"] for b in batches])
    assert torch.equal(images, torch.stack([e["image"] for e in expected]))
    assert torch.equal(starts, torch.stack([e["start"] for e in expected]))


def test_a_mask_table_without_the_needed_columns_is_refused(phantom_catalog):
    with pytest.raises(ValueError, match="lacks columns"):
        PatchDataset(phantom_catalog, select_masks(phantom_catalog)[["mask_id"]])


def test_a_batch_is_its_samples_stacked_and_workers_make_the_same_batches(phantom_catalog):
    masks = select_masks(phantom_catalog, splits=None)
    dataset = PatchDataset(phantom_catalog, masks, patch_size=64, seed=5, image_dtype=torch.float16, pack_labels=True)
    keys = [[(0, 0), (0, 3)], [(1, 0), (2, 1), (0, len(masks) - 1)]]
    batches = [dataset[list(k)] for k in keys]
    for batch, batch_keys in zip(batches, keys):
        samples = [dataset[key] for key in batch_keys]
        assert batch["image"].shape == (len(batch_keys), 1, 64, 64, 64) and batch["image"].dtype == torch.float16
        assert batch["label"].shape == (len(batch_keys), 1, 64, 64, 8)
        for key in ("image", "label", "start", "flipped"):
            assert torch.equal(batch[key], torch.stack([s[key] for s in samples])), key
        assert batch["mask_id"] == [s["mask_id"] for s in samples]
        assert batch["epoch"].tolist() == [e for e, _ in batch_keys]
        assert batch["index"].tolist() == [i for _, i in batch_keys]
    loaded = list(DataLoader(dataset, sampler=keys, batch_size=None, num_workers=2))
    for batch, expected in zip(loaded, batches):
        assert all(torch.equal(batch[k], expected[k]) for k in ("image", "label", "start", "flipped", "index"))
        assert batch["mask_id"] == expected["mask_id"]


def test_half_precision_images_and_packed_labels_carry_the_same_sample(phantom_catalog):
    masks = select_masks(phantom_catalog, splits=None)
    plain = PatchDataset(phantom_catalog, masks, patch_size=64, seed=1)
    compact = PatchDataset(phantom_catalog, masks, patch_size=64, seed=1, image_dtype=torch.float16, pack_labels=True)
    flips_seen = set()
    for epoch in range(6):
        for index in range(len(masks)):
            full, small = plain[(epoch, index)], compact[(epoch, index)]
            flips_seen.add(tuple(full["flipped"].tolist()))
            assert torch.equal(unpack_labels(small["label"]), full["label"].bool())
            assert torch.equal(small["image"], full["image"].to(torch.float16))
    assert any(f[2] for f in flips_seen) and any(not f[2] for f in flips_seen)  # both x orders were packed


def test_unpack_labels_inverts_numpy_packbits():
    mask = np.random.default_rng(0).random((2, 3, 4, 16)) < 0.4
    assert torch.equal(unpack_labels(torch.from_numpy(np.packbits(mask, axis=-1))), torch.from_numpy(mask))


def test_bad_hand_over_settings_are_refused(phantom_catalog):
    masks = select_masks(phantom_catalog)
    with pytest.raises(ValueError, match="divisible by 8"):
        PatchDataset(phantom_catalog, masks, patch_size=36, pack_labels=True)
    with pytest.raises(ValueError, match="image_dtype"):
        PatchDataset(phantom_catalog, masks, image_dtype=torch.int16)
