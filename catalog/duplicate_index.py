"""Candidate pairs for the near-duplicate check of `catalog.leaks`, from an index instead of every pair.

`catalog.leaks.best_alignment` calls two difference sequences (rows: slice-to-slice differences of the
(n_S, 16) slice signatures) a near pair when, at some offset, their Pearson correlation over an overlap of
at least `needed_rows` rows reaches `MIN_CORRELATION`. Comparing every pair costs 0.13 ms a pair. Here:

- Descriptor: a window of `WINDOW_ROWS` consecutive difference rows, flattened, centred and scaled to
  unit length, so that the squared distance of two descriptors is 2 (1 - their correlation).
- Index: the descriptors at every window start of every indexed sequence, projected on their
  `PROJECTED_DIMS` leading principal axes (an orthonormal projection never lengthens a distance), in a
  `scipy.spatial.cKDTree`.
- Query: the windows of a query sequence at starts 0, `QUERY_STRIDE`, 2 `QUERY_STRIDE`, ... and the last
  whole window, so that every overlap of at least WINDOW_ROWS + QUERY_STRIDE - 1 rows holds a whole one.
  A query and an indexed sequence are a candidate pair when one query window lies within the distance of
  correlation `WINDOW_MIN_CORRELATION` of one indexed window.
- A sequence too short for that (its pairs may overlap by fewer rows) is a candidate with every other.

Only candidates get the exact `best_alignment` check, so the pairs found are a subset of the exhaustive
search's. They are all of them when every qualifying overlap holds a query window whose own correlation
reaches WINDOW_MIN_CORRELATION. That is an assumption about the data, not a theorem: a pooled correlation
of >= 0.95 is a variance-weighted blend of the windows' agreement, so its best-agreeing window is rarely
below it, but a bound that holds for every sequence would be far too loose to index (slice signatures are
smooth: a range's variance can sit in the rows outside its whole windows). The tests and
bench/bench_duplicates.py compare both searches on the real sample data and on planted duplicates.
"""

from __future__ import annotations

import numpy as np

WINDOW_ROWS = 16
QUERY_STRIDE = 8
PROJECTED_DIMS = 24
WINDOW_MIN_CORRELATION = 0.93
_PCA_SAMPLE_SEQUENCES = 256
HASH_TABLES = 24
HASH_BITS = 18
_QUERY_CHUNK = 50_000


def needed_rows(rows_a: int, rows_b: int, min_overlap_slices: int, min_overlap_fraction: float) -> int:
    """Fewest overlapping difference rows best_alignment accepts for sequences of these lengths."""
    shorter = min(rows_a, rows_b)
    return max(min_overlap_slices - 1, int(np.ceil(min_overlap_fraction * (shorter + 1))) - 1)


def window_descriptors(differences: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Unit-length centred descriptors, (len(starts), WINDOW_ROWS * C), of the windows at `starts`; a
    constant window (no correlation defined) gets NaNs."""
    flat = np.lib.stride_tricks.sliding_window_view(differences, WINDOW_ROWS, axis=0)[starts]
    flat = flat.reshape(len(starts), -1)
    centred = flat - flat.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return centred / np.sqrt(np.einsum("ij,ij->i", centred, centred))[:, None]


def query_starts(rows: int) -> np.ndarray:
    """Window starts of a query: every QUERY_STRIDE rows, and the last whole window."""
    return np.unique(np.append(np.arange(0, rows - WINDOW_ROWS + 1, QUERY_STRIDE), rows - WINDOW_ROWS))


def indexable(rows: int, min_overlap_slices: int, min_overlap_fraction: float) -> bool:
    """Whether every qualifying overlap of a sequence this long with any other holds a whole query window."""
    return needed_rows(rows, rows, min_overlap_slices, min_overlap_fraction) >= WINDOW_ROWS + QUERY_STRIDE - 1


def _projection(sequences: list[np.ndarray]) -> np.ndarray:
    """(PROJECTED_DIMS, WINDOW_ROWS * C) orthonormal rows: leading principal axes of a fixed sample of windows."""
    step = max(1, len(sequences) // _PCA_SAMPLE_SEQUENCES)
    sample = [window_descriptors(x, query_starts(len(x))) for x in sequences[::step]]
    sample = np.concatenate(sample)
    sample = sample[np.isfinite(sample).all(axis=1)]
    width = sample.shape[1]
    if len(sample) < 2:
        return np.eye(width)[: min(PROJECTED_DIMS, width)]
    _, vectors = np.linalg.eigh(np.cov(sample, rowvar=False))
    return np.ascontiguousarray(vectors[:, ::-1][:, : min(PROJECTED_DIMS, width)].T)


def _points(sequences: list[np.ndarray], positions: list[int], starts, projection: np.ndarray):
    """Projected descriptors (float32) of the windows at starts(len(x)) of the given sequences, and their owners."""
    points, owners = [], []
    for position in positions:
        x = sequences[position]
        descriptors = window_descriptors(x, starts(len(x)))
        descriptors = descriptors[np.isfinite(descriptors).all(axis=1)]
        points.append((descriptors @ projection.T).astype(np.float32))
        owners.append(np.full(len(descriptors), position, dtype=np.int64))
    if not points:
        return np.empty((0, projection.shape[0]), dtype=np.float32), np.empty(0, dtype=np.int64)
    return np.concatenate(points), np.concatenate(owners)


def _hash_keys(points: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """(HASH_TABLES, n) keys: the signs of the points' products with each table's HASH_BITS hyperplanes."""
    weights = (1 << np.arange(planes.shape[1], dtype=np.int64))
    return np.stack([((points @ table.T) > 0) @ weights for table in planes])


def _window_matches(query_points, query_owners, index_points, index_owners, radius: float) -> np.ndarray:
    """Unique (query owner, index owner) codes (query * n_positions + index... as two columns) of window pairs
    within `radius` that share a hash key in some table (random hyperplanes: a near pair of windows falls
    on the same side of most of them)."""
    planes = np.random.default_rng(0).normal(size=(HASH_TABLES, HASH_BITS, index_points.shape[1])).astype(np.float32)
    index_keys, query_keys = _hash_keys(index_points, planes), _hash_keys(query_points, planes)
    width = int(max(index_owners.max(), query_owners.max())) + 1
    found = []
    for table in range(HASH_TABLES):
        order = np.argsort(index_keys[table], kind="stable")
        sorted_keys = index_keys[table][order]
        for chunk in range(0, len(query_points), _QUERY_CHUNK):
            keys = query_keys[table, chunk:chunk + _QUERY_CHUNK]
            low = np.searchsorted(sorted_keys, keys, "left")
            counts = np.searchsorted(sorted_keys, keys, "right") - low
            queries = np.repeat(np.arange(chunk, chunk + len(keys)), counts)
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            hits = order[np.repeat(low, counts) + offsets]
            keep = query_owners[queries] != index_owners[hits]
            queries, hits = queries[keep], hits[keep]
            gap = query_points[queries] - index_points[hits]
            keep = np.einsum("ij,ij->i", gap, gap) <= radius * radius
            found.append(np.unique(query_owners[queries[keep]] * width + index_owners[hits[keep]]))
    codes = np.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)
    return np.stack([codes // width, codes % width], axis=1)


def near_candidates(
    sequences: list[np.ndarray],
    queries: list[int],
    indexed: list[int],
    min_overlap_slices: int,
    min_overlap_fraction: float,
) -> set[tuple[int, int]]:
    """Candidate pairs (i, j), i < j positions in `sequences` ((n_rows, C) difference arrays, one C), of
    a query position and an indexed position: window matches, and every pair with a sequence too short
    to index (see the module docstring). Pairs of a position with itself are left out."""
    if not queries or not indexed:
        return set()

    def short(p):
        return not indexable(len(sequences[p]), min_overlap_slices, min_overlap_fraction)

    candidates: set[tuple[int, int]] = set()
    for query in queries:
        if short(query):
            candidates.update((min(query, other), max(query, other)) for other in indexed if other != query)
    for other in indexed:
        if short(other):
            candidates.update((min(query, other), max(query, other)) for query in queries if query != other)
    long_queries = [p for p in queries if not short(p)]
    long_indexed = [p for p in indexed if not short(p)]
    if not long_queries or not long_indexed:
        return candidates
    projection = _projection([sequences[p] for p in sorted(set(long_queries) | set(long_indexed))])
    index_points, index_owners = _points(sequences, long_indexed, lambda n: np.arange(n - WINDOW_ROWS + 1), projection)
    query_points, query_owners = _points(sequences, long_queries, query_starts, projection)
    if not len(index_points) or not len(query_points):
        return candidates
    radius = float(np.sqrt(2.0 * (1.0 - WINDOW_MIN_CORRELATION)))
    matches = _window_matches(query_points, query_owners, index_points, index_owners, radius)
    candidates.update((int(min(a, b)), int(max(a, b))) for a, b in matches)
    return candidates
