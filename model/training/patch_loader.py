"""Batches of catalog patches for the trainer, made by DataLoader workers into a ring of shared-memory slots.

A DataLoader worker normally hands each batch over in fresh shared memory: it creates a segment, faults in
its pages as it writes (about 0.6 ms per MiB here), and the training process maps and unmaps it again. For
128³ patches that costs as much as making the patch from cached chunks, and on a 2-core machine two
workers then deliver fewer patches than the training process alone (docs/benchmarks.md). Here the training
process allocates a fixed ring of batch slots in shared memory once; each task tells a worker which slot to
fill, and only the small per-batch facts (mask ids, crop starts, flips) travel back through the queue.

Slot reuse is safe by the DataLoader's own bound on work in flight: it dispatches at most
``prefetch_factor * num_workers`` tasks ahead of the batch it last returned, so with that many slots plus
two, a slot is filled again only after the loader has returned the second batch after the one it held.
A batch's image and label are therefore views that stay valid until the loader has yielded two more
batches: the trainer converts or copies them to the device at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from model.training.patch_dataset import PatchDataset

BatchKeys = list[int | tuple[int, int]]


class PatchBatchLoader:
    """Iterate the batches `batches` of `dataset` (each a list of PatchDataset keys).

    Args:
        dataset (PatchDataset): the samples; its image dtype and label packing set the batch format.
        batches (iterable of lists): keys of each batch, e.g. lists of (epoch, index); may be endless.
        batch_size (int): the most keys a batch may have (the slot size).
        num_workers (int): DataLoader worker processes; 0 makes the batches in this process, in fresh
            tensors that the caller may keep.
        prefetch_factor (int): batches each worker prepares ahead (the DataLoader's).

    Yields:
        dict as :meth:`PatchDataset.batch` returns it. With workers, image and label are views of a slot,
        valid until two more batches have been yielded.
    """

    def __init__(
        self,
        dataset: PatchDataset,
        batches: Iterable[BatchKeys],
        *,
        batch_size: int,
        num_workers: int,
        prefetch_factor: int = 2,
    ) -> None:
        if batch_size < 1 or num_workers < 0 or prefetch_factor < 1:
            raise ValueError(
                f"need batch_size >= 1, num_workers >= 0, prefetch_factor >= 1; got {batch_size}, {num_workers}, "
                f"{prefetch_factor}"
            )
        self.dataset, self.batches = dataset, batches
        self.batch_size, self.num_workers, self.prefetch_factor = batch_size, num_workers, prefetch_factor

    @property
    def slots(self) -> int:
        """Batch slots in the ring: the DataLoader's tasks in flight, plus the batch in use and the one before."""
        return self.prefetch_factor * self.num_workers + 2

    def __iter__(self) -> Iterator[dict]:
        if self.num_workers == 0:
            for keys in self.batches:
                yield self.dataset.batch(list(keys))
            return
        image, label = self.dataset.batch_tensors(self.slots * self.batch_size, shared=True)
        image = image.view(self.slots, self.batch_size, *image.shape[1:])
        label = label.view(self.slots, self.batch_size, *label.shape[1:])
        # Which task last finished filling each slot (-1 - task while one is filling it).
        filled_by = torch.full((self.slots,), -1, dtype=torch.int64).share_memory_()
        loader = DataLoader(
            _SlotFiller(self.dataset, image, label, filled_by),
            sampler=_tasks(self.batches, self.slots, self.batch_size),
            batch_size=None,
            num_workers=self.num_workers,
            prefetch_factor=self.prefetch_factor,
        )
        for facts in loader:
            slot, task, count = facts.pop("slot"), facts.pop("task"), facts.pop("count")
            if int(filled_by[slot]) != task:
                raise RuntimeError(f"batch slot {slot} was refilled before batch {task} was read")
            yield {"image": image[slot, :count], "label": label[slot, :count], **facts}


def _tasks(batches: Iterable[BatchKeys], slots: int, batch_size: int) -> Iterator[tuple[int, int, BatchKeys]]:
    """(slot, task number, keys) for each batch, slots taken in turn."""
    for task, keys in enumerate(batches):
        keys = list(keys)
        if not 1 <= len(keys) <= batch_size:
            raise ValueError(f"a batch needs 1 to {batch_size} keys, got {len(keys)}")
        yield task % slots, task, keys


class _SlotFiller(Dataset):
    """What a worker runs: fill the task's slot, return the batch's small facts."""

    def __init__(self, dataset: PatchDataset, image: torch.Tensor, label: torch.Tensor, filled_by: torch.Tensor):
        self.dataset, self.image, self.label, self.filled_by = dataset, image, label, filled_by

    def __getitem__(self, task: tuple[int, int, BatchKeys]) -> dict:
        slot, number, keys = task
        self.filled_by[slot] = -1 - number
        facts = self.dataset.fill(keys, self.image[slot], self.label[slot])
        self.filled_by[slot] = number
        return {"slot": slot, "task": number, "count": len(keys), **facts}
