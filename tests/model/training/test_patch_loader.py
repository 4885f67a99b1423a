"""The trainer's patch loader: worker-made batches in shared-memory slots equal the dataset's own batches."""

from __future__ import annotations

import pytest
import torch

from model.targets import select_masks
from model.training.patch_dataset import PatchDataset
from model.training.patch_loader import PatchBatchLoader
from tests.model.phantom_catalog import phantom_catalog  # noqa: F401  (fixture)

KEYS = ("image", "label", "start", "flipped", "epoch", "index")


def _dataset(catalog) -> PatchDataset:
    masks = select_masks(catalog, splits=None)
    return PatchDataset(catalog, masks, patch_size=32, seed=4, image_dtype=torch.float16, pack_labels=True)


def _batches(n_samples: int, count: int) -> list[list[tuple[int, int]]]:
    return [[(b // 3, (2 * b) % n_samples), (b // 3, (2 * b + 1) % n_samples)] for b in range(count)]


def test_worker_batches_equal_the_datasets_own_in_order_across_many_slot_reuses(phantom_catalog):
    dataset = _dataset(phantom_catalog)
    batches = _batches(len(dataset), 20)
    loader = PatchBatchLoader(dataset, batches, batch_size=2, num_workers=2)
    assert loader.slots == 6  # fewer than the batches: every slot is refilled
    seen = 0
    for keys, batch in zip(batches, loader):
        expected = dataset.batch(keys)
        assert all(torch.equal(batch[k], expected[k]) for k in KEYS)
        assert batch["mask_id"] == expected["mask_id"]
        seen += 1
    assert seen == len(batches)


def test_a_batch_stays_intact_while_the_next_one_is_in_use(phantom_catalog):
    dataset = _dataset(phantom_catalog)
    batches = _batches(len(dataset), 16)
    loader = iter(PatchBatchLoader(dataset, batches, batch_size=2, num_workers=2, prefetch_factor=1))
    previous = next(loader)
    kept = previous["image"].clone(), previous["label"].clone()
    for _ in range(len(batches) - 1):
        current = next(loader)
        # The loader has yielded one more batch: the one before must not have been refilled yet.
        assert torch.equal(previous["image"], kept[0]) and torch.equal(previous["label"], kept[1])
        previous, kept = current, (current["image"].clone(), current["label"].clone())


def test_without_workers_the_batches_are_made_here_in_fresh_tensors(phantom_catalog):
    dataset = _dataset(phantom_catalog)
    batches = _batches(len(dataset), 3)
    loaded = list(PatchBatchLoader(dataset, batches, batch_size=2, num_workers=0))
    for keys, batch in zip(batches, loaded):
        assert all(torch.equal(batch[k], dataset.batch(keys)[k]) for k in KEYS)
    assert loaded[0]["image"].data_ptr() != loaded[1]["image"].data_ptr()


def test_a_batch_larger_than_a_slot_and_bad_settings_are_refused(phantom_catalog):
    dataset = _dataset(phantom_catalog)
    with pytest.raises(ValueError, match="1 to 2 keys"):
        list(PatchBatchLoader(dataset, [[0, 1, 2]], batch_size=2, num_workers=1))
    with pytest.raises(ValueError, match="num_workers >= 0"):
        PatchBatchLoader(dataset, [], batch_size=2, num_workers=-1)
