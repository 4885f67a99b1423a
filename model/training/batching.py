"""Which samples each process trains on, and the per-sample and per-batch seeds: all reproducible.

A run consumes "global micro-batches" in order: epoch e is a seeded permutation of the sample indices cut
into global batches of ``batch_size * world_size``; process r takes slice r of each. So N processes with
batch B see exactly the samples one process with batch N*B sees, in the same order, and a resumed run
finds its place from the number of micro-batches already consumed. The incomplete tail of each epoch's
permutation is dropped.
"""

from __future__ import annotations

import numpy as np
import torch


def batches_per_epoch(n_samples: int, batch_size: int, world_size: int) -> int:
    """Global micro-batches in one epoch; raises ValueError when not even one fits."""
    count = n_samples // (batch_size * world_size)
    if count == 0:
        raise ValueError(
            f"{n_samples} training masks cannot fill one batch of {batch_size} x {world_size} processes; "
            "select more masks or lower batch_size"
        )
    return count


def epoch_batches(n_samples: int, batch_size: int, world_size: int, rank: int, seed: int, epoch: int) -> list[list[int]]:
    """This process's micro-batches of one epoch, as lists of dataset indices.

    Args:
        n_samples (int): dataset length.
        batch_size (int): samples per process per micro-batch.
        world_size (int), rank (int): processes and this one's rank.
        seed (int), epoch (int): fix the permutation.

    Returns:
        list of ``batches_per_epoch(...)`` lists of ``batch_size`` ints.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n_samples)
    global_size = batch_size * world_size
    return [
        [int(i) for i in order[b * global_size + rank * batch_size : b * global_size + (rank + 1) * batch_size]]
        for b in range(batches_per_epoch(n_samples, batch_size, world_size))
    ]


def click_seeds(seed: int, epoch: int, indices: list[int]) -> torch.Tensor:
    """(B,) int64 click seeds, one per sample, from (seed, epoch, dataset index) only."""
    return torch.tensor(
        [int(np.random.SeedSequence([seed, epoch, index, 1]).generate_state(1)[0]) for index in indices],
        dtype=torch.int64,
    )


def refine_iteration(seed: int, micro_batch: int, iterations: int) -> int:
    """The random mask-prompt-only iteration of global micro-batch ``micro_batch``, in [1, iterations - 2]."""
    return int(np.random.default_rng([seed, micro_batch, 2]).integers(1, iterations - 1))


def new_click_only_iterations(seed: int, micro_batch: int, iterations: int, fraction: float) -> tuple[int, ...]:
    """The iterations of global micro-batch ``micro_batch`` whose decode gets only the newest click: each of
    iterations 1 .. iterations-1 with probability ``fraction`` (the first decode has one click anyway)."""
    if fraction <= 0:
        return ()
    draws = np.random.default_rng([seed, micro_batch, 3]).random(iterations)
    return tuple(i for i in range(1, iterations) if draws[i] < fraction)
