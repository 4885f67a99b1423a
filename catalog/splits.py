"""Deterministic train/val/test splits, assigned per dataset over split units (cases, or duplicate groups).

Within each dataset the units are ordered by a hash of their name; the first round(n * test) go to test,
the next round(n * val) to val, the rest to train (at least one unit stays in train). So a dataset of
6 cases gets 4/1/1 at the paper's 0.8/0.1/0.1, while a pure per-case hash would leave small datasets
without any test case, as it did on the sample data. The price: adding cases to a dataset can move
others between splits (a whole-catalog recomputation at every consolidation keeps the tables consistent).
"""

from __future__ import annotations

import hashlib
import math

SPLITS = ("train", "val", "test")


def _order_key(dataset: str, unit: str) -> str:
    return hashlib.sha256(f"{dataset}/{unit}".encode()).hexdigest()


def assign_splits(
    units: dict[tuple[str, str], str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[tuple[str, str], str]:
    """Split of every unit.

    Args:
        units: (dataset, unit name) -> the dataset whose quota the unit counts against (usually its own).
        fractions: (train, val, test), summing to 1.

    Returns:
        (dataset, unit name) -> "train" | "val" | "test".
    """
    by_dataset: dict[str, list[tuple[str, str]]] = {}
    for unit, quota_dataset in units.items():
        by_dataset.setdefault(quota_dataset, []).append(unit)
    result = {}
    for members in by_dataset.values():
        members.sort(key=lambda unit: _order_key(*unit))
        n = len(members)
        n_test = math.floor(n * fractions[2] + 0.5)
        n_val = math.floor(n * fractions[1] + 0.5)
        while n_test + n_val > n - 1 and n_test + n_val > 0:
            if n_val >= n_test and n_val > 0:
                n_val -= 1
            else:
                n_test -= 1
        for position, unit in enumerate(members):
            result[unit] = "test" if position < n_test else "val" if position < n_test + n_val else "train"
    return result
