"""Learning-rate schedules, as LambdaLR factors.

* ``cyclic_step`` (the paper's): within each cycle of ``cycle_steps`` optimiser steps the factor is 1, then
  divided by 10 at 60%, 80% and 95% of the cycle; the next cycle restarts at 1. The paper trains 4 cycles of
  200 epochs with drops at epochs 120, 160 and 190; here a cycle is counted in optimiser steps.
* ``warmup_constant``: linear warm-up from 1/warmup_steps to 1 over ``warmup_steps`` steps, then 1.
* ``warmup_constant_decay``: the same, then a linear decay to 0 over the last ``decay_fraction`` of the run's
  ``max_steps`` (warm-up, stable, decay). docs/training.md has the measurement behind it: on the real sample
  data the constant rate stalls on a plateau that a tenth of the rate leaves within a few hundred steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR

PAPER_MILESTONES = (0.6, 0.8, 0.95)
PAPER_GAMMA = 0.1


class CyclicStepFactor:
    """Learning-rate factor of optimiser step ``step`` (0-based): gamma ** (milestones passed in this cycle).

    Args:
        cycle_steps (int): steps per cycle, at least 1.
        milestones (Sequence[float]): increasing fractions of the cycle in (0, 1) where the factor drops.
        gamma (float): multiplier at each milestone.

    A plain object (not a closure) so LambdaLR's state_dict holds only numbers and lists.
    """

    def __init__(self, cycle_steps: int, milestones: Sequence[float] = PAPER_MILESTONES, gamma: float = PAPER_GAMMA):
        if cycle_steps < 1:
            raise ValueError(f"cycle_steps must be at least 1, got {cycle_steps}")
        if list(milestones) != sorted(milestones) or not all(0 < m < 1 for m in milestones):
            raise ValueError(f"milestones must be increasing fractions in (0, 1), got {list(milestones)}")
        self.cycle_steps = int(cycle_steps)
        self.milestones = [float(m) for m in milestones]
        self.gamma = float(gamma)

    def __call__(self, step: int) -> float:
        position = step % self.cycle_steps
        drops = sum(position >= m * self.cycle_steps for m in self.milestones)
        return self.gamma**drops


class WarmupConstantFactor:
    """Learning-rate factor of optimiser step ``step`` (0-based): min(1, (step + 1) / warmup_steps).

    Args:
        warmup_steps (int): steps of linear warm-up; 0 for none.
    """

    def __init__(self, warmup_steps: int) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be at least 0, got {warmup_steps}")
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step: int) -> float:
        return min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0


def warmup_constant_decay_factor(warmup_steps: int, total_steps: int, decay_fraction: float) -> Callable[[int], float]:
    """Learning-rate factor of optimiser step ``step`` (0-based): :class:`WarmupConstantFactor`, times a linear
    decay from 1 to 0 over the last ``decay_fraction`` of ``total_steps`` (0 from ``total_steps`` on).

    A plain function, so LambdaLR's state_dict leaves it out: a resumed run rebuilds it from its configuration,
    and a resume that raises ``max_steps`` moves the decay to the new end.
    """
    if not 0 < decay_fraction <= 1:
        raise ValueError(f"decay_fraction must be in (0, 1], got {decay_fraction}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")
    warmup = WarmupConstantFactor(warmup_steps)
    decay_steps = max(1, round(decay_fraction * total_steps))

    def factor(step: int) -> float:
        return warmup(step) * min(1.0, max(0.0, (total_steps - step) / decay_steps))

    return factor


def cyclic_step_scheduler(optimizer: torch.optim.Optimizer, cycle_steps: int) -> LambdaLR:
    """LambdaLR applying :class:`CyclicStepFactor` (paper milestones) to every parameter group."""
    return LambdaLR(optimizer, CyclicStepFactor(cycle_steps))


def warmup_constant_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int) -> LambdaLR:
    """LambdaLR applying :class:`WarmupConstantFactor` to every parameter group."""
    return LambdaLR(optimizer, WarmupConstantFactor(warmup_steps))


def warmup_constant_decay_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, decay_fraction: float
) -> LambdaLR:
    """LambdaLR applying :func:`warmup_constant_decay_factor` to every parameter group."""
    return LambdaLR(optimizer, warmup_constant_decay_factor(warmup_steps, total_steps, decay_fraction))
