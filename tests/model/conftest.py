"""Shared fixtures: the large model is built at most once per mode per session."""

from __future__ import annotations

import pytest
import torch

from model import build_model


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
