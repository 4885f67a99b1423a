"""The learning-rate schedules: the paper's cyclic steps and warm-up, constant, decay."""

from __future__ import annotations

import pytest
import torch

from model.training.schedule import (
    CyclicStepFactor,
    cyclic_step_scheduler,
    warmup_constant_decay_factor,
    warmup_constant_decay_scheduler,
)


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


def test_warmup_constant_decay_warms_up_holds_then_falls_linearly_to_zero_at_max_steps():
    factor = warmup_constant_decay_factor(warmup_steps=10, total_steps=100, decay_fraction=0.3)
    expected = {0: 0.1, 4: 0.5, 9: 1.0, 50: 1.0, 69: 1.0, 70: 1.0, 85: 0.5, 97: 0.1, 99: 1 / 30, 100: 0.0, 150: 0.0}
    for step, value in expected.items():
        assert factor(step) == pytest.approx(value), step
    with pytest.raises(ValueError, match="decay_fraction"):
        warmup_constant_decay_factor(10, 100, 0.0)
    with pytest.raises(ValueError, match="total_steps"):
        warmup_constant_decay_factor(10, 0, 0.3)


def test_a_resume_with_more_steps_moves_the_decay_to_the_new_end():
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([weight], lr=1e-3)
    scheduler = warmup_constant_decay_scheduler(optimizer, 0, total_steps=10, decay_fraction=0.5)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    longer = torch.optim.AdamW([weight], lr=1e-3)
    resumed = warmup_constant_decay_scheduler(longer, 0, total_steps=100, decay_fraction=0.5)
    resumed.load_state_dict(state)
    optimizer.step()
    scheduler.step()
    longer.step()
    resumed.step()
    assert resumed.last_epoch == scheduler.last_epoch == 5
    assert scheduler.get_last_lr() == pytest.approx([1e-3])  # step 5 of 10: the decay starts here
    assert resumed.get_last_lr() == pytest.approx([1e-3])
    scheduler.step()
    resumed.step()
    assert scheduler.get_last_lr() == pytest.approx([0.8e-3]) and resumed.get_last_lr() == pytest.approx([1e-3])
