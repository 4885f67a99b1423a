"""Shared fixtures: the large model is built at most once per mode per session."""

from __future__ import annotations

import pytest
import torch

from model import build_model, save_checkpoint


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def vit_b_native():
    return build_model("vit_b_ori", attention_mode="native")


@pytest.fixture(scope="session")
def vit_b_reference():
    return build_model("vit_b_ori", attention_mode="reference")


@pytest.fixture
def tiny():
    return build_model("vit_tiny")


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory):
    """A checkpoint of a freshly initialised vit_tiny (seed 0), for evaluation and inference tests."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("checkpoint") / "vit_tiny_untrained.pt"
    save_checkpoint(path, build_model("vit_tiny"))
    return path
