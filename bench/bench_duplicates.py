"""Duplicate search (issue 15): the indexed and incremental search against the exhaustive one, on SYNTHETIC signatures.

    OMP_NUM_THREADS=1 nice -n 19 python bench/bench_duplicates.py [--images 10000] [--subsample 1000]

All images are SYNTHETIC slice signatures of one grid (1.5 mm, 160 x 160 in-plane, 80-250 slices, seeded):
per channel of the 4 x 4 blocks, a smooth "anatomy" (Gaussian bumps of 3-25 slices along the body axis
with random heights per block), a slow drift and per-slice noise. Planted among them: exact copies (same
stored sha256 and signature, another case) and shifted crops (a run of 40 or more slices of another image
at a random offset, plus noise). Printed:
1. the first full indexed search of all images (seconds), and the planted pairs found or missed;
2. a rerun that adds new images (a quarter exact copies, a quarter crops of kept images): seconds, and
   whether its pairs equal a full indexed search of the final catalog;
3. on a subsample (every planted pair, filled up with originals), the exhaustive and the indexed search
   side by side: equal pair sets, seconds of each, and the exhaustive time extrapolated to all images
   (times the ratio of the numbers of pairs: all images are of one grid).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from catalog.leaks import find_duplicate_pairs, find_duplicate_pairs_exhaustive, update_duplicate_pairs  # noqa: E402

IN_PLANE = (160, 160)


def synthetic_signature(rng: np.random.Generator, n_slices: int) -> np.ndarray:
    """(n_slices, 16) float32 SYNTHETIC slice signature: smooth bumps along z per block, drift, noise."""
    z = np.arange(n_slices)[:, None]
    count = int(rng.integers(max(4, n_slices // 20), n_slices // 6))
    centres, widths = rng.uniform(-10, n_slices + 10, count), rng.uniform(3, 25, count)
    heights = rng.normal(0, 1, (count, 16))
    anatomy = np.exp(-((z - centres) ** 2) / (2 * widths**2)) @ heights
    drift = np.cumsum(rng.normal(0, 0.05, (n_slices, 16)), axis=0)
    return (100 + 40 * anatomy + drift + rng.normal(0, 0.2, (n_slices, 16))).astype(np.float32)


def image_row(case: str, signature: np.ndarray, sha: str | None = None) -> dict:
    n = len(signature)
    return {
        "image_id": f"SYN__{case}_0000", "dataset": "SYN", "case_id": case, "status": "kept",
        "stored_sha256": sha or hashlib.sha256(signature.tobytes()).hexdigest(),
        "similarity_signature": signature.ravel(), "canonical_shape_spl": [n, *IN_PLANE],
        "stored_spacing_xyz": [1.5, 1.5, 1.5], "stored_origin_xyz": [0.0, 0.0, 0.0],
        "stored_direction": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], "stored_shape_zyx": [n, *IN_PLANE[::-1]],
    }


def planted_images(rng, first: int, count: int, copies: int, crops: int, sources: list[dict]):
    """`count` new rows: `copies` exact copies and `crops` crops of rows in `sources`, the rest fresh.
    Returns the rows and the planted (source image id, new image id) pairs."""
    rows, planted = [], []
    picks = rng.choice(len(sources), copies + crops, replace=False)
    for k in range(count):
        case = f"c{first + k:05d}"
        if k < copies:
            source = sources[picks[k]]
            rows.append(image_row(case, source["signature"], source["stored_sha256"]))
        elif k < copies + crops:
            source = sources[picks[k]]
            full = source["signature"]
            length = int(rng.integers(40, len(full) - 9))
            start = int(rng.integers(1, len(full) - length))
            crop = full[start:start + length] + rng.normal(0, 0.1, (length, 16)).astype(np.float32)
            rows.append(image_row(case, crop))
        else:
            rows.append(image_row(case, synthetic_signature(rng, int(rng.integers(80, 251)))))
        rows[-1]["signature"] = rows[-1]["similarity_signature"].reshape(-1, 16)
        if k < copies + crops:
            planted.append(tuple(sorted((sources[picks[k]]["image_id"], rows[-1]["image_id"]))))
    return rows, planted


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{k: v for k, v in r.items() if k != "signature"} for r in rows])


def pair_set(pairs: pd.DataFrame) -> set:
    return set(zip(pairs.image_a, pairs.image_b, pairs.kind, pairs.correlation, pairs.shift_slices))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--planted", type=int, default=100, help="exact copies, and as many crops")
    parser.add_argument("--added", type=int, default=100)
    parser.add_argument("--subsample", type=int, default=1_000)
    args = parser.parse_args()
    rng = np.random.default_rng(15)

    originals = args.images - 2 * args.planted
    rows, _ = planted_images(rng, 0, originals, 0, 0, [])
    more, planted = planted_images(rng, originals, 2 * args.planted, args.planted, args.planted, rows)
    rows += more
    images = frame(rows)
    print(f"{len(images)} SYNTHETIC images, {originals} originals, {args.planted} exact copies, {args.planted} crops; "
          f"slices {images.canonical_shape_spl.str[0].min()}-{images.canonical_shape_spl.str[0].max()}")

    start, cpu = time.perf_counter(), time.process_time()
    pairs = update_duplicate_pairs(images, None, set())
    first, first_cpu = time.perf_counter() - start, time.process_time() - cpu
    found = {(a, b) for a, b in zip(pairs.image_a, pairs.image_b)}
    print(f"first run (full indexed search): {first:.1f} s ({first_cpu:.1f} s CPU), {len(pairs)} pairs "
          f"({(pairs.kind == 'exact').sum()} exact, {(pairs.kind == 'near').sum()} near); "
          f"planted found {len(set(planted) & found)}/{len(planted)}, missed {sorted(set(planted) - found)}")

    added, planted_added = planted_images(rng, args.images, args.added, args.added // 4, args.added // 4, rows)
    all_images = frame(rows + added)
    start, cpu = time.perf_counter(), time.process_time()
    updated = update_duplicate_pairs(all_images, pairs, set(frame(added).image_id))
    rerun, rerun_cpu = time.perf_counter() - start, time.process_time() - cpu
    found = {(a, b) for a, b in zip(updated.image_a, updated.image_b)}
    start = time.perf_counter()
    full = find_duplicate_pairs(all_images)
    full_seconds = time.perf_counter() - start
    print(f"rerun adding {args.added} images ({args.added // 4} exact copies, {args.added // 4} crops): "
          f"{rerun:.2f} s ({rerun_cpu:.2f} s CPU), "
          f"planted found {len(set(planted_added) & found)}/{len(planted_added)}; "
          f"equal to a full indexed search of all {len(all_images)} ({full_seconds:.1f} s): "
          f"{pair_set(updated) == pair_set(full)}")

    # Every planted pair and its source, filled up with originals.
    chosen = {image_id for pair in planted for image_id in pair}
    chosen |= set(images.image_id[~images.image_id.isin(chosen)].head(max(0, args.subsample - len(chosen))))
    sample = images[images.image_id.isin(chosen)]
    start = time.perf_counter()
    exhaustive = find_duplicate_pairs_exhaustive(sample)
    exhaustive_seconds = time.perf_counter() - start
    start = time.perf_counter()
    indexed = find_duplicate_pairs(sample)
    indexed_seconds = time.perf_counter() - start
    ratio = (len(images) * (len(images) - 1)) / (len(sample) * (len(sample) - 1))
    print(f"subsample of {len(sample)}: exhaustive {exhaustive_seconds:.1f} s, indexed {indexed_seconds:.2f} s "
          f"({exhaustive_seconds / indexed_seconds:.0f}x); {len(exhaustive)} pairs, equal sets: "
          f"{pair_set(exhaustive) == pair_set(indexed)}; exhaustive extrapolated to {len(images)} images: "
          f"{exhaustive_seconds * ratio / 60:.0f} min")


if __name__ == "__main__":
    main()
