"""Candidate pairs for the near-duplicate check of `catalog.leaks`, from an index instead of every pair.

`catalog.leaks.best_alignment` calls two difference sequences (rows: slice-to-slice differences of the
(n_S, 16) slice signatures) a near pair when, at some offset, their Pearson correlation over an overlap of
at least `needed_rows` rows reaches `MIN_CORRELATION`. Checking every pair costs 0.1-0.2 ms a pair. Here:

- Descriptor: a window of `WINDOW_ROWS` consecutive difference rows, flattened, centred and scaled to
  unit length, so that the squared distance of two descriptors is 2 (1 - their correlation); projected
  on the `PROJECTED_DIMS` leading principal axes of a fixed sample of windows (an orthonormal projection
  never lengthens a distance).
- Index: the descriptors at every `INDEX_STRIDE`-th window start of every indexed sequence, keyed in
  `HASH_TABLES` tables by the signs of their products with `HASH_BITS` random hyperplanes (seeded: the
  same keys every run). Two windows of correlation c fall on the same side of a hyperplane with
  probability 1 - arccos(c) / pi (0.88 for c = 0.93, 0.96 for c = 0.99), against 0.5 for unrelated ones.
- Query: blocks of INDEX_STRIDE consecutive window starts of a query sequence (one of them aligns with
  an indexed start, whatever the offset) every s rows, and a last block ending at its last whole window.
  The stride s (at most `QUERY_STRIDE`) is such that every overlap the sequence needs with an equal or
  longer one (`needed_rows`) holds a whole block. Every sequence is a query, so a pair is looked up from
  its shorter member at least.
- Windows sharing a key are compared in the projection, then at full dimension; a query and an indexed
  sequence are a candidate pair when one of their window pairs has correlation >= `WINDOW_MIN_CORRELATION`.
  A sequence whose needed overlap cannot hold a block (under 37 slices) is a candidate with every other.
- Searching some sequences (the images new to a catalog) looks them up among all and all among them,
  with the projection and hyperplanes of a search of all: their candidates are those a search of all
  would give them. (Pairs kept from an earlier search came from that catalog's projection.)

Only candidates get the exact `best_alignment` check, so the pairs found are a subset of the exhaustive
search's. They are all of them when a qualifying overlap holds a query window whose own correlation
reaches WINDOW_MIN_CORRELATION and that window meets its partner in one of the tables. Neither is a
theorem: a pooled correlation of >= 0.95 is a variance-weighted blend of the windows' agreement, so its
best window is rarely below 0.93, and the tables miss one window pair of correlation 0.93 with
probability (1 - 0.88^20)^16 = 0.27 (0.99: 3e-4), while a copy or crop has dozens of matching windows.
(A bound that holds for every sequence is far too loose to index: slice signatures are smooth, and a
range's variance can sit in rows outside its whole windows.) The tests and bench/bench_duplicates.py
compare both searches on the real sample data and on planted duplicates.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

WINDOW_ROWS = 16
QUERY_STRIDE = 8
INDEX_STRIDE = 2
PROJECTED_DIMS = 24
WINDOW_MIN_CORRELATION = 0.93
_PCA_SAMPLE_SEQUENCES = 256
HASH_TABLES = 16
HASH_BITS = 20
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


def index_starts(rows: int) -> np.ndarray:
    """Window starts in the index: every INDEX_STRIDE rows."""
    return np.arange(0, rows - WINDOW_ROWS + 1, INDEX_STRIDE)


def query_starts(rows: int, rule: tuple[int, float]) -> np.ndarray:
    """Window starts of a query: blocks of INDEX_STRIDE consecutive starts (one for each start modulo
    INDEX_STRIDE, so one of them aligns with an indexed window) every `query_stride(rows, rule)` rows,
    and a last block ending at the last whole window."""
    stride = query_stride(rows, rule)
    last = rows - WINDOW_ROWS - INDEX_STRIDE + 1
    firsts = np.append(np.arange(0, last + 1, stride), last)
    starts = (firsts[:, None] + np.arange(INDEX_STRIDE)).ravel()
    return np.unique(starts[(starts >= 0) & (starts <= rows - WINDOW_ROWS)])


def query_stride(rows: int, rule: tuple[int, float]) -> int:
    """Largest block stride s (at most QUERY_STRIDE) at which every overlap this sequence needs with an
    equal or longer one holds a whole block of query windows: WINDOW_ROWS + s + INDEX_STRIDE - 2 <= needed
    rows. `rule`: the (min_overlap_slices, min_overlap_fraction) of `needed_rows`."""
    return max(1, min(QUERY_STRIDE, needed_rows(rows, rows, *rule) - WINDOW_ROWS - INDEX_STRIDE + 2))


def indexable(rows: int, rule: tuple[int, float]) -> bool:
    """Whether every overlap this sequence needs can hold a whole block of query windows (else it is
    compared with all)."""
    return needed_rows(rows, rows, *rule) >= WINDOW_ROWS + INDEX_STRIDE - 1


def _projection(sequences: list[np.ndarray]) -> np.ndarray:
    """(PROJECTED_DIMS, WINDOW_ROWS * C) orthonormal rows: leading principal axes of a fixed sample of windows."""
    step = max(1, len(sequences) // _PCA_SAMPLE_SEQUENCES)
    sample = [window_descriptors(x, np.arange(0, len(x) - WINDOW_ROWS + 1, WINDOW_ROWS)) for x in sequences[::step]]
    sample = np.concatenate(sample)
    sample = sample[np.isfinite(sample).all(axis=1)]
    width = sample.shape[1]
    if len(sample) < 2:
        return np.eye(width)[: min(PROJECTED_DIMS, width)]
    _, vectors = np.linalg.eigh(np.cov(sample, rowvar=False))
    return np.ascontiguousarray(vectors[:, ::-1][:, : min(PROJECTED_DIMS, width)].T)


class _Rows:
    """All sequences' rows stacked (float64), to cut windows from by (owner, start row) without a loop."""

    def __init__(self, sequences: list[np.ndarray]):
        self.values = np.concatenate([np.asarray(x, dtype=np.float64) for x in sequences])
        self.offsets = np.concatenate([[0], np.cumsum([len(x) for x in sequences])]).astype(np.int64)
        width = WINDOW_ROWS * self.values.shape[1]
        self.sums = np.concatenate([[0.0], np.cumsum(self.values.sum(axis=1))])
        self.squares = np.concatenate([[0.0], np.cumsum((self.values**2).sum(axis=1))])
        self.width = width

    def windows(self, positions: list[int], starts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Owner, start row and first stacked row of the windows at starts(len) of each position."""
        owners, firsts = [], []
        for position in positions:
            rows = starts(int(self.offsets[position + 1] - self.offsets[position]))
            owners.append(np.full(len(rows), position, dtype=np.int64))
            firsts.append(rows.astype(np.int64))
        owners, firsts = np.concatenate(owners), np.concatenate(firsts)
        return owners, firsts, self.offsets[owners] + firsts

    def project(self, stacked: np.ndarray, projection: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Projected unit-length centred descriptors (float32) of the windows starting at stacked rows
        `stacked`, and whether each window varies (a constant one has no descriptor)."""
        filters = projection.reshape(len(projection), self.values.shape[1], WINDOW_ROWS).astype(np.float32)
        if len(stacked) < len(self.values):
            # Fewer windows than rows: cut them out and project them, a chunk at a time.
            flat = np.ascontiguousarray(filters.transpose(2, 1, 0).reshape(-1, len(projection)))  # (W * C, k)
            products = np.empty((len(stacked), len(projection)), dtype=np.float32)
            for chunk in range(0, len(stacked), _QUERY_CHUNK):
                firsts = stacked[chunk:chunk + _QUERY_CHUNK]
                windows = self.values[firsts[:, None] + np.arange(WINDOW_ROWS)].astype(np.float32)
                products[chunk:chunk + len(firsts)] = windows.reshape(len(firsts), -1) @ flat
        else:
            # More: one pass over all rows per window row t, summed at each window's start.
            values = self.values.astype(np.float32)
            products = np.zeros((len(stacked), len(projection)), dtype=np.float32)
            for t in range(WINDOW_ROWS):
                products += (values @ filters[:, :, t].T)[stacked + t]
        total = self.sums[stacked + WINDOW_ROWS] - self.sums[stacked]
        square = self.squares[stacked + WINDOW_ROWS] - self.squares[stacked]
        spread = square - total**2 / self.width
        varied = spread > 1e-9 * np.maximum(square, 1e-300)
        mean = (total / self.width).astype(np.float32)
        scale = np.where(varied, 1.0 / np.sqrt(np.where(varied, spread, 1.0)), 0.0).astype(np.float32)
        centred = products - mean[:, None] * projection.sum(axis=1).astype(np.float32)[None, :]
        return centred * scale[:, None], varied

    def correlations(self, first_a: np.ndarray, first_b: np.ndarray) -> np.ndarray:
        """Full-dimension correlation of the window pairs starting at stacked rows first_a, first_b."""
        within = np.arange(WINDOW_ROWS)
        result = np.empty(len(first_a))
        for chunk in range(0, len(first_a), _QUERY_CHUNK):
            part = slice(chunk, chunk + _QUERY_CHUNK)
            pair = []
            for firsts in (first_a[part], first_b[part]):
                windows = self.values[firsts[:, None] + within].reshape(len(firsts), -1)
                windows = windows - windows.mean(axis=1, keepdims=True)
                pair.append(windows / np.linalg.norm(windows, axis=1, keepdims=True))
            result[part] = np.einsum("ij,ij->i", *pair)
        return result


def _hash_keys(points: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """(HASH_TABLES, n) keys: the signs of the points' products with each table's HASH_BITS hyperplanes."""
    tables, bits, dims = planes.shape
    normals = planes.reshape(-1, dims).T
    keys = np.empty((tables, len(points)), dtype=np.int64)
    for chunk in range(0, len(points), _QUERY_CHUNK * 4):
        signs = (points[chunk:chunk + _QUERY_CHUNK * 4] @ normals > 0).reshape(-1, tables, bits)
        packed = np.packbits(signs, axis=2, bitorder="little")
        word = np.zeros((len(signs), tables, 4), dtype=np.uint8)
        word[:, :, : packed.shape[2]] = packed
        keys[:, chunk:chunk + len(signs)] = word.view("<u4")[:, :, 0].T
    return keys


def _colliding_windows(query_points, query_owners, query_keys, index_points, index_owners, index_keys,
                       radius: float) -> np.ndarray:
    """(n, 2) unique (query point, index point) of windows of different owners that share a key in some
    table (keys: `_hash_keys`) and lie within `radius` in the projection."""
    # Sort the smaller side's keys and look the other side's up; a bitmap of the sorted keys skips most misses.
    swap = len(query_points) < len(index_points)
    present = np.zeros(1 << HASH_BITS, dtype=bool)
    found = []
    for table in range(HASH_TABLES):
        sorted_side, probe_side = query_keys[table], index_keys[table]
        if not swap:
            sorted_side, probe_side = probe_side, sorted_side
        order = np.argsort(sorted_side, kind="stable")
        sorted_keys = sorted_side[order]
        present[:] = False
        present[sorted_keys] = True
        probe_positions = np.flatnonzero(present[probe_side])
        for chunk in range(0, len(probe_positions), _QUERY_CHUNK):
            positions = probe_positions[chunk:chunk + _QUERY_CHUNK]
            keys = probe_side[positions]
            low = np.searchsorted(sorted_keys, keys, "left")
            counts = np.searchsorted(sorted_keys, keys, "right") - low
            probes = np.repeat(positions, counts)
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            partners = order[np.repeat(low, counts) + offsets]
            queries, hits = (partners, probes) if swap else (probes, partners)
            keep = query_owners[queries] != index_owners[hits]
            queries, hits = queries[keep], hits[keep]
            gap = query_points[queries] - index_points[hits]
            keep = np.einsum("ij,ij->i", gap, gap) <= radius * radius
            found.append(queries[keep] * len(index_points) + hits[keep])
    codes = np.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)
    return np.stack([codes // len(index_points), codes % len(index_points)], axis=1)


def near_candidates(
    sequences: list[np.ndarray],
    searched: list[int] | None,
    min_overlap_slices: int,
    min_overlap_fraction: float,
) -> set[tuple[int, int]]:
    """Candidate pairs (i, j), i < j positions in `sequences` ((n_rows, C) difference arrays, one C), with
    at least one of `searched` (None: all): window matches (see the module docstring; both ways, so that
    each pair is looked up from its shorter member), and every pair with a sequence too short to index."""
    rule = (min_overlap_slices, min_overlap_fraction)
    everything = list(range(len(sequences)))
    searched = everything if searched is None else sorted(searched)
    wanted = np.zeros(len(sequences), dtype=bool)
    wanted[searched] = True
    short = [not indexable(len(x), rule) for x in sequences]
    candidates: set[tuple[int, int]] = set()
    for one in everything:
        if short[one]:
            partners = everything if wanted[one] else searched
            candidates.update((min(one, other), max(one, other)) for other in partners if other != one)
    long = [p for p in everything if not short[p]]
    if not any(wanted[long]) or len(long) < 2:
        return candidates
    projection = _projection([sequences[p] for p in long])
    rows = _Rows(sequences)
    planes = np.random.default_rng(0).normal(size=(HASH_TABLES, HASH_BITS, len(projection))).astype(np.float32)
    sides = []
    for starts in (lru_cache(maxsize=None)(lambda n: query_starts(n, rule)), lru_cache(maxsize=None)(index_starts)):
        owners, _, first = rows.windows(long, starts)
        points, varied = rows.project(first, projection)
        points, owners, first = points[varied], owners[varied], first[varied]
        sides.append((points, owners, first, _hash_keys(points, planes)))
    (query_points, query_owners, query_first, query_keys), (index_points, index_owners, index_first, index_keys) = sides
    # Slack for float32 rounding: the exact check below decides.
    radius = float(np.sqrt(2.0 * (1.0 - WINDOW_MIN_CORRELATION))) * (1 + 1e-3)
    if len(searched) == len(sequences):
        directions = [(np.arange(len(query_points)), np.arange(len(index_points)))]
    else:  # searched queries against everything, and everything against the searched
        directions = [(np.flatnonzero(wanted[query_owners]), np.arange(len(index_points))),
                      (np.arange(len(query_points)), np.flatnonzero(wanted[index_owners]))]
    for queries, indexed in directions:
        if not len(queries) or not len(indexed):
            continue
        hits = _colliding_windows(query_points[queries], query_owners[queries], query_keys[:, queries],
                                  index_points[indexed], index_owners[indexed], index_keys[:, indexed], radius)
        hits = np.stack([queries[hits[:, 0]], indexed[hits[:, 1]]], axis=1)
        close = rows.correlations(query_first[hits[:, 0]], index_first[hits[:, 1]]) >= WINDOW_MIN_CORRELATION
        ones, others = query_owners[hits[close, 0]], index_owners[hits[close, 1]]
        candidates.update(zip(np.minimum(ones, others).tolist(), np.maximum(ones, others).tolist()))
    return candidates
