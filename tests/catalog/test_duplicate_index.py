"""The indexed duplicate search (catalog.duplicate_index) finds the exhaustive search's pairs (SYNTHETIC signatures)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from catalog import duplicate_index
from catalog.leaks import (
    MIN_OVERLAP_FRACTION,
    MIN_OVERLAP_SLICES,
    find_duplicate_pairs,
    find_duplicate_pairs_exhaustive,
)


def synthetic_signature(rng: np.random.Generator, n_slices: int) -> np.ndarray:
    """(n_slices, 16) SYNTHETIC slice signature: smooth bumps along z per block, drift and noise."""
    z = np.arange(n_slices)[:, None]
    count = max(4, n_slices // 10)
    centres, widths = rng.uniform(-10, n_slices + 10, count), rng.uniform(3, 25, count)
    anatomy = np.exp(-((z - centres) ** 2) / (2 * widths**2)) @ rng.normal(0, 1, (count, 16))
    drift = np.cumsum(rng.normal(0, 0.05, (n_slices, 16)), axis=0)
    return (100 + 40 * anatomy + drift + rng.normal(0, 0.2, (n_slices, 16))).astype(np.float32)


def row(case: str, signature: np.ndarray, sha: str | None = None, in_plane=(160, 160)) -> dict:
    n = len(signature)
    return {
        "image_id": f"SYN__{case}_0000", "dataset": "SYN", "case_id": case, "status": "kept",
        "stored_sha256": sha or hashlib.sha256(signature.tobytes()).hexdigest(),
        "similarity_signature": signature.ravel(), "canonical_shape_spl": [n, *in_plane],
        "stored_spacing_xyz": [1.5, 1.5, 1.5], "stored_origin_xyz": [0.0, 0.0, 0.0],
        "stored_direction": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], "stored_shape_zyx": [n, *in_plane[::-1]],
    }


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    base = [synthetic_signature(rng, int(n)) for n in rng.integers(80, 251, 40)]
    rows = [row(f"c{i:02d}", s) for i, s in enumerate(base)]
    long = synthetic_signature(rng, 200)
    noise = rng.normal(0, 0.1, (200, 16)).astype(np.float32)
    rows += [
        row("copy", base[0], rows[0]["stored_sha256"]),                # exact copy
        row("crop13", base[1][13:13 + 60] + noise[:60]),                 # offset 13: no multiple of a stride
        row("crop_short", base[2][21:21 + 20] + noise[:20]),            # 20 slices: too short to index
        row("crop_wide", base[3][5:105] + noise[:100], in_plane=(161, 159)),  # in-plane size off by one
        row("crop_far", base[4][7:107] + noise[:100], in_plane=(162, 160)),   # off by two: not comparable
        # Runs of 100 slices of one image overlapping by exactly the fewest rows allowed, and by one fewer.
        row("edge_a", long[0:100]), row("edge_b", long[49:149]), row("edge_c", long[50:150]),
    ]
    return pd.DataFrame(rows)


def test_indexed_search_finds_exactly_the_exhaustive_pairs_on_planted_duplicates(planted):
    exhaustive = find_duplicate_pairs_exhaustive(planted)
    indexed = find_duplicate_pairs(planted)
    pd.testing.assert_frame_equal(indexed, exhaustive)
    found = set(zip(exhaustive.case_a, exhaustive.case_b, exhaustive.kind))
    assert {("c00", "copy", "exact"), ("c01", "crop13", "near"), ("c02", "crop_short", "near"),
            ("c03", "crop_wide", "near"), ("edge_a", "edge_b", "near")} <= found
    assert not {case for pair in found for case in pair[:2]} & {"crop_far"}
    # edge_c is one row short of edge_a at the true offset; smooth signatures may still match at another one.
    assert (exhaustive[exhaustive.case_b == "edge_c"].overlap_slices - 1 >= 48).all()
    crop = exhaustive[exhaustive.case_b == "crop13"].iloc[0]
    assert crop.shift_slices == 13 and crop.correlation > 0.99
    # edge_a's differences cover base slices 1-98, edge_b's 50-147: 48 rows, the fewest allowed for 97-row sequences.
    edge = exhaustive[exhaustive.case_b == "edge_b"].iloc[0]
    needed = duplicate_index.needed_rows(97, 97, MIN_OVERLAP_SLICES, MIN_OVERLAP_FRACTION)
    assert edge.overlap_slices - 1 == needed == 48


def test_a_search_among_some_images_returns_their_pairs_only(planted):
    exhaustive = find_duplicate_pairs_exhaustive(planted)
    among = {"SYN__crop13_0000", "SYN__c00_0000"}
    subset = find_duplicate_pairs(planted, among=among)
    expected = exhaustive[exhaustive.image_a.isin(among) | exhaustive.image_b.isin(among)].reset_index(drop=True)
    pd.testing.assert_frame_equal(subset, expected)


def test_candidates_leave_out_most_pairs_of_unrelated_images():
    rng = np.random.default_rng(4)
    sequences = [np.diff(synthetic_signature(rng, 150).astype(float)[1:-1], axis=0) for _ in range(60)]
    candidates = duplicate_index.near_candidates(sequences, None, MIN_OVERLAP_SLICES, MIN_OVERLAP_FRACTION)
    assert len(candidates) < 0.05 * (60 * 59 // 2)
    # A crop of one of them is a candidate with it, in a search of all and in a search of the crop only.
    sequences.append(sequences[7][30:90] + rng.normal(0, 0.01, (60, 16)))
    for searched in (None, [60]):
        assert (7, 60) in duplicate_index.near_candidates(sequences, searched, MIN_OVERLAP_SLICES, MIN_OVERLAP_FRACTION)


def test_query_windows_meet_an_indexed_window_in_every_overlap_a_pair_needs():
    rule = (MIN_OVERLAP_SLICES, MIN_OVERLAP_FRACTION)
    assert not duplicate_index.indexable(31, rule)  # needs 15 rows: compared with every image instead
    for rows in (40, 97, 180):
        starts = duplicate_index.query_starts(rows, rule)
        needed = duplicate_index.needed_rows(rows, rows, *rule)
        window = duplicate_index.WINDOW_ROWS
        assert starts.min() >= 0 and starts.max() == rows - window
        # Every overlap of `needed` rows, at every offset of the partner modulo the index stride.
        for first in range(rows - needed + 1):
            for offset in range(duplicate_index.INDEX_STRIDE):
                assert any(first <= s and s + window <= first + needed
                           and (s + offset) % duplicate_index.INDEX_STRIDE == 0 for s in starts), (rows, first, offset)
