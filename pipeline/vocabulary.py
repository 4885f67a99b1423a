"""Category names: normalisation ("Kidney_Left" -> "kidney left") and structure groups.

A normalised category is lowercase words separated by single spaces with the side, if any, last:
"rib_left_1" -> "rib 1 left", "Left-Cerebral-White-Matter" -> "cerebral white matter left",
"Precentral_L" -> "precentral left", "ctx-lh-precentral" -> "ctx precentral left".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal

import yaml

Side = Literal["left", "right"]
UNKNOWN_GROUP = "other"

_SIDE_WORDS = {"left": "left", "right": "right", "lt": "left", "rt": "right"}
# Short side markers are only trusted at either end of a name (AAL "_L", FreeSurfer "lh-"), where they
# cannot be part of a structure name such as "vertebrae L5".
_SIDE_MARKERS_AT_ENDS = {"l": "left", "r": "right", "lh": "left", "rh": "right"}
# FreeSurfer's cortical parcels put the hemisphere second: "ctx-lh-precentral", "wm_rh_insula".
_HEMISPHERE_PREFIXES = {"ctx", "wm"}


@dataclass(frozen=True)
class CategoryName:
    """A parsed label name: `base` has no side; `category` is what the catalog stores."""

    base: str
    side: Side | None

    @property
    def category(self) -> str:
        return f"{self.base} {self.side}" if self.side else self.base


def parse_label_name(raw: str) -> CategoryName:
    """Split a dataset's label name into a normalised base name and a side.

    >>> parse_label_name("rib_left_1")
    CategoryName(base='rib 1', side='left')
    """
    words = [w for w in re.split(r"[\s_\-.,/]+", raw.strip().lower()) if w]
    side: Side | None = None
    kept = []
    for w in words:
        if w in _SIDE_WORDS and side is None:
            side = _SIDE_WORDS[w]  # type: ignore[assignment]
        else:
            kept.append(w)
    if side is None and len(kept) > 2 and kept[0] in _HEMISPHERE_PREFIXES and kept[1] in ("lh", "rh"):
        side = _SIDE_MARKERS_AT_ENDS[kept.pop(1)]  # type: ignore[assignment]
    if side is None and len(kept) > 1:
        for position in (-1, 0):
            if kept[position] in _SIDE_MARKERS_AT_ENDS:
                side = _SIDE_MARKERS_AT_ENDS[kept.pop(position)]  # type: ignore[assignment]
                break
    return CategoryName(base=" ".join(kept) if kept else raw.strip().lower(), side=side)


def with_side(base: str, side: Side) -> str:
    return f"{base} {side}"


class Vocabulary:
    """Maps normalised base names to structure groups, from `vocabulary.yaml` (or a given mapping)."""

    def __init__(self, groups: dict[str, dict[str, list[str]]]):
        self._exact: dict[str, str] = {}
        self._prefixes: list[tuple[str, str]] = []
        for group, entry in groups.items():
            for name in entry.get("names", []) or []:
                self._exact[name] = group
            for prefix in entry.get("prefixes", []) or []:
                self._prefixes.append((prefix, group))
        # Longest prefix first so "cerebellum" is not shadowed by a shorter one.
        self._prefixes.sort(key=lambda item: -len(item[0]))

    @property
    def groups(self) -> list[str]:
        return sorted(set(self._exact.values()) | {g for _, g in self._prefixes} | {UNKNOWN_GROUP})

    def group_of(self, base: str) -> str:
        """Structure group of a base name (no side); `UNKNOWN_GROUP` when the name is not known."""
        if base in self._exact:
            return self._exact[base]
        for prefix, group in self._prefixes:
            if base.startswith(prefix):
                return group
        return UNKNOWN_GROUP

    def is_known(self, base: str) -> bool:
        return self.group_of(base) != UNKNOWN_GROUP


@lru_cache(maxsize=1)
def default_vocabulary() -> Vocabulary:
    text = resources.files("pipeline").joinpath("vocabulary.yaml").read_text(encoding="utf-8")
    return Vocabulary(yaml.safe_load(text)["groups"])
