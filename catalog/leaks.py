"""Duplicate images across a catalog, and a split rule that keeps each group of them on one side.

A scan released twice (another dataset, a relabelled copy, a crop) would otherwise land in train and
test at once. Two kept images of different cases are a pair when
- "exact": their stored (resampled) arrays are equal (`stored_sha256`), or
- "near": their slice signatures (`pipeline.fingerprint`: (n_S, 4, 4) block means per 1.5 mm axial slice
  in patient axes) match along the body axis. Both grids must share the stored spacing and have the same
  in-plane size (+-1 voxel, the rounding of resampling). One signature is slid along the other; at each
  offset with an overlap of at least `MIN_OVERLAP_SLICES` slices and half the shorter image, the
  Pearson correlation of the slice-to-slice DIFFERENCES of the signatures is computed over the overlap
  (the outer slice at each end is left out: resampling repeats the edge voxel there). Differences,
  because every brain or abdomen has the same coarse outline; what differs between patients is how the
  anatomy changes from slice to slice. The pair is near-identical when the best correlation reaches
  `MIN_CORRELATION`.
  On the sample data: the crop ts_ct_sm matches ts_ct at 1.000, at an offset its header does not tell
  (it kept ts_ct's origin although it holds ts_ct's top 30 slices), while the highest correlation of two
  different patients (BraTS 2013, same atlas space and size) is 0.83.
The check slides only along the body axis: crops in-plane, or rotated copies, are not found.
Cost: checking a pair (`best_alignment`: 16 `np.correlate` calls over the slice counts) takes 0.1-0.2 ms;
checking every pair of comparable images (`find_duplicate_pairs_exhaustive`, kept as the reference) is
quadratic: about 3 hours for 10,000 images of one grid. `find_duplicate_pairs` checks only the candidates
of an index over signature windows (`catalog.duplicate_index`): the same pairs on the sample data and on
planted copies and crops, seconds for 10,000 images (docs/benchmarks.md, "Duplicate search"). A
consolidation keeps the pairs (table `DUPLICATES`, duplicates.parquet in a local catalog) and searches only the images written since
(`update_duplicate_pairs`); with nothing written it does not search at all.

Groups are the connected cases of all pairs (union-find over (dataset, case_id)). All cases of a group
form one split unit (`catalog.splits`), so a group never straddles train and test; `apply_group_splits`
writes the splits into both tables (called by `catalog.writer.consolidate`).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pyarrow as pa

from catalog.duplicate_index import near_candidates
from catalog.schema import DUPLICATE_SCHEMA, DUPLICATES
from catalog.splits import assign_splits

MIN_CORRELATION = 0.95
MIN_OVERLAP_SLICES = 16
MIN_OVERLAP_FRACTION = 0.5
EXACT, NEAR = "exact", "near"

PAIR_COLUMNS = DUPLICATE_SCHEMA.names
_NEEDED = [
    "image_id", "dataset", "case_id", "status", "stored_sha256", "similarity_signature", "canonical_shape_spl",
    "stored_spacing_xyz", "stored_origin_xyz", "stored_direction", "stored_shape_zyx",
]


def find_duplicate_pairs(images: pd.DataFrame, among: set[str] | None = None) -> pd.DataFrame:
    """Pairs of kept images of different cases that are the same scan (columns `PAIR_COLUMNS`).

    `shift_slices`: image_b's axial slice k (inferior first, stored spacing) shows image_a's slice
    k + shift. `header_offset_mm`: how far apart the two headers place those matched slices along the
    body axis (0 when the world coordinates agree). `image_a` < `image_b`; rows sorted.
    `among`: image ids to search; only pairs with at least one of them are returned (None: all images).
    Near pairs are checked with `best_alignment` only for the candidates of `catalog.duplicate_index`.
    """
    entries = _kept_entries(images)
    searched_ids = {e.image_id for e in entries if among is None or e.image_id in among}
    pairs = _exact_pairs(entries, searched_ids)
    by_spacing: dict[tuple, list[_Entry]] = {}
    for entry in entries:
        if entry.differences is not None:
            by_spacing.setdefault(entry.bucket[0], []).append(entry)
    for group in by_spacing.values():
        positions = None if among is None else [i for i, e in enumerate(group) if e.image_id in searched_ids]
        sequences = [e.differences for e in group]
        found = near_candidates(sequences, positions, MIN_OVERLAP_SLICES, MIN_OVERLAP_FRACTION)
        for i, j in sorted(found):
            _check_near(group[i], group[j], pairs)
    return _pairs_frame(pairs)


def find_duplicate_pairs_exhaustive(images: pd.DataFrame) -> pd.DataFrame:
    """The same pairs as `find_duplicate_pairs`, by checking every pair of compatible images: the reference."""
    entries = _kept_entries(images)
    pairs = _exact_pairs(entries, {e.image_id for e in entries})
    near = [e for e in entries if e.differences is not None]
    for i, a in enumerate(near):
        for b in near[i + 1:]:
            _check_near(a, b, pairs)
    return _pairs_frame(pairs)


def pair_rule() -> str:
    """The rule the pairs were found with; stored with the pairs table so that a changed rule searches anew."""
    return f"min_correlation={MIN_CORRELATION} min_overlap_slices={MIN_OVERLAP_SLICES} min_overlap_fraction={MIN_OVERLAP_FRACTION}"


def pairs_table(pairs: pd.DataFrame) -> pa.Table:
    """`pairs` as the stored table: `DUPLICATE_SCHEMA`, with `pair_rule()` in its metadata."""
    table = pa.Table.from_pandas(pairs, schema=DUPLICATE_SCHEMA, preserve_index=False)
    return table.replace_schema_metadata({b"pair_rule": pair_rule().encode()})


def previous_pairs(table: pa.Table | None) -> pd.DataFrame | None:
    """The stored pairs to build on, or None (search everything) when there are none or another rule made them."""
    if table is None or (table.schema.metadata or {}).get(b"pair_rule", b"").decode() != pair_rule():
        return None
    return table.to_pandas()


def update_duplicate_pairs(
    images: pa.Table | pd.DataFrame, previous: pd.DataFrame | None, changed: set[str]
) -> pd.DataFrame:
    """The pairs of `images` (all rows of the images table) given the pairs found before (`previous`;
    None: never searched) and the ids of the images written since (`changed`: new or replaced). Pairs of
    changed, removed or no longer kept images are dropped; only changed images are searched, against all
    kept ones."""
    if isinstance(images, pa.Table):
        images = images.select(_NEEDED).to_pandas()
    if previous is None:
        return find_duplicate_pairs(images)
    kept = set(images.image_id[(images.status == "kept") & images.stored_sha256.notna()])
    unchanged = kept - changed
    still = previous[previous.image_a.isin(unchanged) & previous.image_b.isin(unchanged)]
    fresh = find_duplicate_pairs(images, among=kept & changed)
    frame = pd.concat([still[PAIR_COLUMNS], fresh]) if len(still) else fresh
    frame = frame.sort_values(["image_a", "image_b"]).reset_index(drop=True)
    return frame.astype({"shift_slices": "int64", "overlap_slices": "int64"})


def _kept_entries(images: pd.DataFrame) -> list[_Entry]:
    kept = images[(images.status == "kept") & images.stored_sha256.notna()].sort_values("image_id")
    return [_Entry(row) for row in kept.itertuples(index=False)]


def _exact_pairs(entries: list[_Entry], searched: set[str]) -> dict[tuple[str, str], dict]:
    """Pairs of equal stored arrays with at least one image in `searched`."""
    pairs: dict[tuple[str, str], dict] = {}
    by_hash: dict[str, list[_Entry]] = {}
    for entry in entries:
        by_hash.setdefault(entry.sha, []).append(entry)
    for same in by_hash.values():
        for i, a in enumerate(same):
            for b in same[i + 1:]:
                if a.case != b.case and (a.image_id in searched or b.image_id in searched):
                    pairs[(a.image_id, b.image_id)] = _pair(a, b, EXACT, 1.0, 0, a.n_slices)
    return pairs


def _check_near(a: _Entry, b: _Entry, pairs: dict[tuple[str, str], dict]) -> None:
    """Add (a, b) as a near pair when the rule holds (different cases, compatible grids, correlation)."""
    if b.image_id < a.image_id:
        a, b = b, a
    key = (a.image_id, b.image_id)
    (spacing, rows, columns), (spacing_b, rows_b, columns_b) = a.bucket, b.bucket
    comparable = spacing == spacing_b and abs(rows - rows_b) <= 1 and abs(columns - columns_b) <= 1
    if a.case == b.case or key in pairs or not comparable:
        return
    correlation, shift, overlap = best_alignment(a.differences, b.differences)
    if correlation >= MIN_CORRELATION:
        pairs[key] = _pair(a, b, NEAR, correlation, shift, overlap)


def _pairs_frame(pairs: dict[tuple[str, str], dict]) -> pd.DataFrame:
    frame = pd.DataFrame([pairs[k] for k in sorted(pairs)], columns=PAIR_COLUMNS)
    return frame.astype({"shift_slices": "int64", "overlap_slices": "int64"})


def best_alignment(a: np.ndarray, b: np.ndarray) -> tuple[float, int, int]:
    """Best correlation of two (n, c) difference sequences over offsets with enough overlap.

    Returns (correlation, shift, overlap rows): row j of `b` is aligned with row j + shift of `a`.
    Correlation -1.0 when no offset qualifies.
    """
    na, nb = len(a), len(b)
    shifts = np.arange(-(nb - 1), na)
    start_a, stop_a = np.maximum(0, shifts), np.minimum(na, shifts + nb)
    start_b, stop_b = start_a - shifts, stop_a - shifts
    rows = stop_a - start_a
    # Each pair of slices contributes one difference row, so n rows cover n + 1 slices.
    needed = max(MIN_OVERLAP_SLICES - 1, int(np.ceil(MIN_OVERLAP_FRACTION * (min(na, nb) + 1))) - 1)
    valid = rows >= needed
    if not valid.any():
        return -1.0, 0, 0
    products = sum(np.correlate(a[:, c], b[:, c], mode="full") for c in range(a.shape[1]))
    sum_a, square_a = _prefix_sums(a)
    sum_b, square_b = _prefix_sums(b)
    n = rows * a.shape[1]
    sx, sxx = sum_a[stop_a] - sum_a[start_a], square_a[stop_a] - square_a[start_a]
    sy, syy = sum_b[stop_b] - sum_b[start_b], square_b[stop_b] - square_b[start_b]
    numerator = n * products - sx * sy
    denominator = np.sqrt(np.clip(n * sxx - sx**2, 0, None) * np.clip(n * syy - sy**2, 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = np.where(valid & (denominator > 0), numerator / denominator, -1.0)
    best = int(np.argmax(correlation))
    return float(correlation[best]), int(shifts[best]), int(rows[best]) + 1


def _prefix_sums(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([[0.0], np.cumsum(x.sum(axis=1))]), np.concatenate([[0.0], np.cumsum((x**2).sum(axis=1))])


class _Entry:
    """What the pair search needs of one kept image row."""

    def __init__(self, row):
        self.image_id = row.image_id
        self.case = (row.dataset, row.case_id)
        self.sha = row.stored_sha256
        shape = [int(v) for v in row.canonical_shape_spl]
        self.n_slices = shape[0]
        spacing = tuple(round(float(v), 3) for v in row.stored_spacing_xyz)
        self.bucket = (spacing, shape[1], shape[2])
        signature = np.asarray(row.similarity_signature, dtype=np.float64).reshape(shape[0], -1)
        # The outer slice at each end is an edge copy after resampling; a crop has a new one there.
        self.differences = np.diff(signature[1:-1], axis=0) if shape[0] >= MIN_OVERLAP_SLICES + 2 else None
        self.row = row  # its header position along the body axis is read only for a pair


def _body_axis_position(row) -> tuple[float, float]:
    """World z (mm, LPS: superior) of the most inferior stored slice, and the stored spacing along z."""
    direction = np.asarray(row.stored_direction, dtype=float).reshape(3, 3)
    spacing = np.asarray(row.stored_spacing_xyz, dtype=float)
    size_xyz = np.asarray(row.stored_shape_zyx, dtype=float)[::-1]
    corners = np.array(np.meshgrid(*[[0.0, n - 1] for n in size_xyz], indexing="ij")).reshape(3, -1)
    world_z = row.stored_origin_xyz[2] + (direction[2] * spacing) @ corners
    axis = int(np.argmax(np.abs(direction[2])))
    return float(world_z.min()), float(spacing[axis])


def _pair(a: _Entry, b: _Entry, kind: str, correlation: float, shift: int, overlap: int) -> dict:
    # Slice k of b is slice k + shift of a: their world z differ by this when the headers agree on it.
    (inferior_a, slice_mm), (inferior_b, _) = _body_axis_position(a.row), _body_axis_position(b.row)
    offset = (inferior_b - inferior_a) - shift * slice_mm
    return {
        "image_a": a.image_id, "image_b": b.image_id, "dataset_a": a.case[0], "case_a": a.case[1],
        "dataset_b": b.case[0], "case_b": b.case[1], "kind": kind, "correlation": round(correlation, 6),
        "shift_slices": shift, "overlap_slices": overlap, "header_offset_mm": round(offset, 3),
    }


def stored_pairs(catalog, images: pd.DataFrame) -> pd.DataFrame:
    """The pairs the last consolidation stored (table `DUPLICATES` of the `catalog.reader.Catalog`), or
    searched now for a catalog without them."""
    stored = catalog.table(DUPLICATES, DUPLICATE_SCHEMA)
    return find_duplicate_pairs(images) if stored is None else stored


def duplicate_groups(pairs: pd.DataFrame) -> dict[tuple[str, str], tuple[str, str]]:
    """(dataset, case_id) -> the smallest (dataset, case_id) of its group, for every case in some pair."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def root(case):
        parent.setdefault(case, case)
        while parent[case] != case:
            parent[case] = parent[parent[case]]
            case = parent[case]
        return case

    for row in pairs.itertuples(index=False):
        first, second = root((row.dataset_a, row.case_a)), root((row.dataset_b, row.case_b))
        if first != second:
            parent[max(first, second)] = min(first, second)
    return {case: root(case) for case in list(parent)}


def apply_group_splits(
    images: pa.Table,
    masks: pa.Table,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    pairs: pd.DataFrame | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Tables with `split` (and images' `duplicate_group`) set so every duplicate group shares one split.

    Split units are cases, except that all cases of a duplicate group form one unit, named after and
    counted in the dataset of its smallest (dataset, case_id); `catalog.splits.assign_splits` assigns them.
    `pairs`: the images' duplicate pairs when already known (`update_duplicate_pairs`); None: searched here.
    """
    if images.num_rows == 0:
        return images, masks
    if pairs is None:
        pairs = find_duplicate_pairs(images.select(_NEEDED).to_pandas())
    groups = duplicate_groups(pairs)
    rows = images.select(["dataset", "case_id"]).to_pydict()
    cases = list(zip(rows["dataset"], rows["case_id"]))
    unit_of = {case: groups.get(case, case) for case in cases}
    splits = assign_splits({unit: unit[0] for unit in unit_of.values()}, fractions)

    def split_of(dataset, case_id):
        return splits.get(unit_of.get((dataset, case_id), (dataset, case_id)), "train")

    images = _replace(images, "split", [split_of(*case) for case in cases])
    images = _replace(images, "duplicate_group", [f"{groups[c][0]}/{groups[c][1]}" if c in groups else None for c in cases])
    mask_rows = masks.select(["dataset", "case_id"]).to_pydict()
    masks = _replace(masks, "split", [split_of(*key) for key in zip(*mask_rows.values())])
    return images, masks


def _replace(table: pa.Table, column: str, values: list) -> pa.Table:
    index = table.schema.get_field_index(column)
    return table.set_column(index, table.schema.field(index), pa.array(values, type=table.schema.field(index).type))


def add_arguments(catalog_commands: argparse._SubParsersAction) -> None:
    """`sammed3d catalog leaks DIR`: list duplicate pairs and the groups they form."""
    leaks = catalog_commands.add_parser("leaks", help="list images that are the same scan (duplicates, crops)")
    leaks.add_argument("root", help="catalog folder or s3:// URL")


def run(args: argparse.Namespace) -> int:
    from catalog.reader import Catalog

    catalog = Catalog(args.root)
    images = catalog.images()
    pairs = stored_pairs(catalog, images)
    if pairs.empty:
        print(f"no duplicate images among {int((images.status == 'kept').sum())} kept images")
        return 0
    with pd.option_context("display.width", 200, "display.max_rows", 500, "display.max_colwidth", 60):
        print(pairs.drop(columns=["dataset_a", "case_a", "dataset_b", "case_b"]).to_string(index=False))
    groups = duplicate_groups(pairs)
    print(f"\n{len(pairs)} pairs in {len(set(groups.values()))} groups of cases; each group shares one split:")
    for group in sorted(set(groups.values())):
        members = sorted(c for c, g in groups.items() if g == group)
        print("  " + ", ".join(f"{d}/{c}" for d, c in members))
    return 0
