"""Deterministic train/val/test assignment by case, so every image and mask of a case share a split."""

from __future__ import annotations

import hashlib

SPLITS = ("train", "val", "test")


def assign_split(dataset: str, case_id: str, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """Split of a case from a hash of its name: stable across runs, machines and catalog order."""
    digest = hashlib.sha256(f"{dataset}/{case_id}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name, fraction in zip(SPLITS, fractions):
        edge += fraction
        if position < edge:
            return name
    return SPLITS[-1]
