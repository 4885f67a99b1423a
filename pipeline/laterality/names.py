"""What a structure's name says about its sides: paired, midline, single, or unknown (None).

The lists live in ``laterality.yaml`` (TotalSegmentator v1/v2, FreeSurfer aseg and cortical parcels, AAL).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Literal

import yaml

NameLaterality = Literal["paired", "midline", "single"]
KINDS: tuple[NameLaterality, ...] = ("paired", "midline", "single")


class LateralityNames:
    """Whole-word prefix lookup of base names (no side) in the paired / midline / single lists."""

    def __init__(self, lists: dict[str, list[str]], extra_paired: tuple[str, ...] = ()):
        unknown = set(lists) - set(KINDS)
        if unknown:
            raise ValueError(f"laterality lists must be among {KINDS}, got {sorted(unknown)}")
        self._entries: dict[str, NameLaterality] = {}
        for kind in KINDS:
            for name in lists.get(kind, []) or []:
                self._entries[str(name).lower()] = kind
        for name in extra_paired:
            self._entries.setdefault(name.lower(), "paired")

    def kind_of(self, base: str) -> NameLaterality | None:
        """The kind of the longest entry that `base` equals or starts with (whole words); None if none."""
        words = base.split(" ")
        for length in range(len(words), 0, -1):
            kind = self._entries.get(" ".join(words[:length]))
            if kind is not None:
                return kind
        return None

    def with_paired(self, extra_paired: tuple[str, ...]) -> "LateralityNames":
        lists: dict[str, list[str]] = {kind: [] for kind in KINDS}
        for name, kind in self._entries.items():
            lists[kind].append(name)
        return LateralityNames(lists, extra_paired)


@lru_cache(maxsize=1)
def default_laterality_names() -> LateralityNames:
    text = resources.files("pipeline.laterality").joinpath("laterality.yaml").read_text(encoding="utf-8")
    return LateralityNames(yaml.safe_load(text))


@lru_cache(maxsize=16)
def laterality_names_for(extra_paired: tuple[str, ...]) -> LateralityNames:
    """The default lists plus the configured paired structures (`CurationConfig.paired_structures`)."""
    return default_laterality_names().with_paired(extra_paired)
