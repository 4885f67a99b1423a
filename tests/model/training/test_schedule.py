"""The cyclic step learning-rate schedule."""

from __future__ import annotations

import pytest
import torch

from model.training.schedule import CyclicStepFactor, cyclic_step_scheduler


def test_paper_cycle_drops_at_120_160_190_and_restarts():
    factor = CyclicStepFactor(200)
    expected = {0: 1.0, 119: 1.0, 120: 0.1, 159: 0.1, 160: 0.01, 189: 0.01, 190: 0.001, 199: 0.001, 200: 1.0, 320: 0.1, 799: 0.001}
    for step, value in expected.items():
        assert factor(step) == pytest.approx(value), step


def test_scheduler_sets_the_lr_of_every_group_and_round_trips_its_state():
    weight = torch.nn.Parameter(torch.zeros(1))
    bias = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([{"params": [weight], "lr": 8e-4}, {"params": [bias], "lr": 8e-5}])
    scheduler = cyclic_step_scheduler(optimizer, 10)
    lrs = []
    for _ in range(12):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert lrs[5] == pytest.approx([8e-4, 8e-5])
    assert lrs[6] == pytest.approx([8e-5, 8e-6])
    assert lrs[8] == lrs[9] == pytest.approx([8e-6, 8e-7])  # 95% of 10 steps is 9.5: no third drop
    assert lrs[10] == pytest.approx([8e-4, 8e-5])
    state = scheduler.state_dict()
    restored = cyclic_step_scheduler(torch.optim.AdamW([{"params": [weight]}, {"params": [bias]}], lr=1.0), 10)
    restored.load_state_dict(state)
    assert restored.last_epoch == scheduler.last_epoch


def test_bad_cycles_are_refused():
    with pytest.raises(ValueError, match="cycle_steps"):
        CyclicStepFactor(0)
    with pytest.raises(ValueError, match="milestones"):
        CyclicStepFactor(10, milestones=(0.8, 0.6))
