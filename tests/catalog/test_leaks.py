"""Duplicate detection and the group split rule (catalog.leaks)."""

from __future__ import annotations

import hashlib
import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import SimpleITK as sitk

from catalog import leaks
from catalog.leaks import (
    MIN_CORRELATION,
    _Entry,
    apply_group_splits,
    best_alignment,
    duplicate_groups,
    find_duplicate_pairs,
    find_duplicate_pairs_exhaustive,
    stored_pairs,
)
from catalog.reader import Catalog
from catalog.schema import DUPLICATES_TABLE, IMAGE_SCHEMA, MASK_SCHEMA
from catalog.writer import consolidate, write_part
from pipeline.curate import _stored_image
from pipeline.geometry import Geometry
from pipeline.steps.step5_resample import target_grid

TS_CT_GROUP = {
    ("Dataset001_TotalSegCT", "ts_ct"),
    ("Dataset001_TotalSegCT", "ts_ct_sm"),
    ("Dataset002_TotalSegCTMergedPairs", "ts_ct_merged"),
}


def test_real_catalog_pairs_are_exactly_the_ts_ct_copies(raw_catalog):
    images = Catalog(raw_catalog[0]).images()
    pairs = find_duplicate_pairs(images).set_index(["case_a", "case_b"])
    assert sorted(pairs.index) == [("ts_ct", "ts_ct_merged"), ("ts_ct", "ts_ct_sm"), ("ts_ct_sm", "ts_ct_merged")]
    # Dataset002 is the same CT relabelled: equal stored arrays.
    assert pairs.loc[("ts_ct", "ts_ct_merged")].kind == "exact"
    # ts_ct_sm holds ts_ct's top 30 slices (82-111 at 3 mm: stored slices 164-223 at 1.5 mm) but kept
    # ts_ct's origin, so only the content finds the offset; its header misplaces it by 164 x 1.5 mm.
    crop = pairs.loc[("ts_ct", "ts_ct_sm")]
    assert crop.kind == "near" and crop.correlation > 0.999
    assert crop.shift_slices == 164 and crop.header_offset_mm == pytest.approx(-246.0)


def test_no_other_real_pair_comes_near_the_threshold(raw_catalog):
    """Different patients in one atlas space (BraTS 2013) and channels of other cases stay far below it."""
    images = Catalog(raw_catalog[0]).images()
    entries = [_Entry(r) for r in images[images.status == "kept"].itertuples(index=False)]
    highest = max(
        best_alignment(a.differences, b.differences)[0]
        for a, b in itertools.combinations(entries, 2)
        if a.differences is not None and b.differences is not None and a.bucket == b.bucket
        and {a.case, b.case} - TS_CT_GROUP and a.case != b.case
    )
    assert highest < MIN_CORRELATION - 0.1


def test_every_row_of_a_duplicate_group_shares_one_split(raw_catalog):
    catalog = Catalog(raw_catalog[0])
    images, masks = catalog.images(), catalog.masks()
    grouped = images[images.duplicate_group.notna()]
    assert set(zip(grouped.dataset, grouped.case_id)) == TS_CT_GROUP
    assert set(grouped.duplicate_group) == {"Dataset001_TotalSegCT/ts_ct"}
    group_masks = masks[masks.case_id.isin([case for _, case in TS_CT_GROUP])]
    assert grouped.split.nunique() == 1 and set(group_masks.split) == set(grouped.split)
    for (dataset, case_id), rows in images.groupby(["dataset", "case_id"]):
        mask_rows = masks[(masks.dataset == dataset) & (masks.case_id == case_id)]
        assert rows.split.nunique() == 1 and set(mask_rows.split) == set(rows.split)


def test_best_alignment_matches_a_brute_force_search():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 16))
    b = a[23:53] * 2.0 + 5.0 + rng.normal(scale=0.01, size=(30, 16))
    correlation, shift, overlap = best_alignment(a, b)
    assert (shift, overlap) == (23, 31) and correlation > 0.999
    brute = max(
        (np.corrcoef(a[max(0, s):min(60, s + 30)].ravel(), b[max(0, -s):min(30, 60 - s)].ravel())[0, 1], s)
        for s in range(-29, 60) if min(60, s + 30) - max(0, s) >= 15
    )
    assert brute[1] == shift and brute[0] == pytest.approx(correlation)
    assert best_alignment(a[:10], b[:10])[0] == -1.0  # too short to compare


def stored_row(image: sitk.Image, image_id: str, dataset: str, case_id: str) -> dict:
    """The fingerprint columns `curate_case` writes, for an image resampled to 1.5 mm."""
    grid = target_grid(Geometry.of(image), sitk.GetArrayViewFromImage(image).shape, (1.5, 1.5, 1.5))
    with ThreadPoolExecutor(max_workers=1) as hashing:
        stored, signature, shape, digest = _stored_image(image, grid, hashing)
    return {
        "image_id": image_id, "dataset": dataset, "case_id": case_id, "status": "kept",
        "stored_sha256": digest, "similarity_signature": signature.ravel(),
        "canonical_shape_spl": list(shape), "stored_spacing_xyz": list(grid.geometry.spacing_xyz),
        "stored_origin_xyz": list(grid.geometry.origin_xyz), "stored_direction": list(grid.geometry.direction),
        "stored_shape_zyx": list(stored.shape),
    }


def test_off_grid_crops_resampled_and_flipped_copies_are_found_other_patients_not(raw_data):
    folder = raw_data / "Dataset004_BraTS2013" / "imagesTr"
    image = sitk.ReadImage(str(folder / "brats13_pat0002_0000.nii.gz"))
    depth = image.GetDepth()
    # 1 mm slices cropped at 7 and resampled to 1.5 mm: the crop's slices fall between the original's.
    crop = image[:, :, 7:depth - 5]
    resampled = sitk.Resample(image, [int(round(n * s / 2.0)) for n, s in zip(image.GetSize(), image.GetSpacing())],
                              sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), (2.0, 2.0, 2.0), image.GetDirection())
    flipped = sitk.DICOMOrient(image, "RPS")  # the same scan stored right-to-left
    rescaled = sitk.Cast(image, sitk.sitkFloat32) * 100.0 + 1000.0
    rows = [stored_row(image, "a", "D1", "original")]
    for name, copy in (("crop", crop), ("resampled", resampled), ("flipped", flipped), ("rescaled", rescaled)):
        rows.append(stored_row(copy, f"copy_{name}", "D2", name))
    rows.append(stored_row(sitk.ReadImage(str(folder / "brats13_pat0003_0000.nii.gz")), "other", "D1", "pat0003"))
    pairs = find_duplicate_pairs(pd.DataFrame(rows))
    linked = pairs[pairs.image_a == "a"].set_index("image_b")
    assert sorted(linked.index) == ["copy_crop", "copy_flipped", "copy_resampled", "copy_rescaled"]
    assert (linked.correlation >= MIN_CORRELATION).all()
    crop = linked.loc["copy_crop"]
    assert crop.shift_slices == 5 and crop.header_offset_mm == pytest.approx(0, abs=1.5)
    assert "other" not in set(pairs.image_a) | set(pairs.image_b)


def table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    full = [{name: row.get(name) for name in schema.names} for row in rows]
    return pa.Table.from_pylist(full, schema=schema)


def test_a_group_is_one_split_unit_and_its_split_reaches_the_masks():
    rng = np.random.default_rng(1)
    signature = rng.normal(size=(40, 4, 4)).astype(np.float32)

    def image(dataset, case_id, sha, sig):
        return {"image_id": f"{dataset}__{case_id}_0000", "dataset": dataset, "case_id": case_id, "status": "kept",
                "stored_sha256": sha, "similarity_signature": sig.ravel().tolist(),
                "canonical_shape_spl": [len(sig), 50, 60],
                "stored_spacing_xyz": [1.5] * 3, "stored_origin_xyz": [0.0] * 3, "stored_shape_zyx": [len(sig), 50, 60],
                "stored_direction": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], "split": None}

    others = [rng.normal(size=(40, 4, 4)).astype(np.float32) for _ in range(5)]
    images = table([
        image("B", "x", "h1", signature),
        image("A", "y", "h1", signature),            # exact copy of B/x
        image("C", "z", "h3", signature[5:30]),      # crop of it: near pair
        *[image("A", f"other{i}", f"o{i}", sig) for i, sig in enumerate(others)],
    ], IMAGE_SCHEMA)
    masks = table([{"mask_id": f"{d}{c}", "dataset": d, "case_id": c, "split": None}
                   for d, c in (("B", "x"), ("C", "z"), ("A", "other0"))], MASK_SCHEMA)
    images, masks = apply_group_splits(images, masks)
    splits = dict(zip(images.column("case_id").to_pylist(), images.column("split").to_pylist()))
    assert splits["x"] == splits["y"] == splits["z"]
    # The group counts as one unit of dataset A (its smallest case A/y): A has 6 units -> 4 train, 1 val, 1 test.
    a_units = [splits["y"]] + [splits[f"other{i}"] for i in range(5)]
    assert sorted(a_units) == ["test", "train", "train", "train", "train", "val"]
    assert images.column("duplicate_group").to_pylist() == ["A/y", "A/y", "A/y"] + [None] * 5
    assert masks.column("split").to_pylist() == [splits["x"], splits["z"], splits["other0"]]
    assert duplicate_groups(find_duplicate_pairs(images.to_pandas())) == {("A", "y"): ("A", "y"), ("B", "x"): ("A", "y"),
                                                                          ("C", "z"): ("A", "y")}


def test_indexed_search_equals_the_exhaustive_one_on_the_real_sample_data(raw_catalog):
    catalog = Catalog(raw_catalog[0])
    images = catalog.images()
    exhaustive = find_duplicate_pairs_exhaustive(images)
    pd.testing.assert_frame_equal(find_duplicate_pairs(images), exhaustive)
    # The catalog keeps the pairs its consolidation found; report and `catalog leaks` read them.
    pd.testing.assert_frame_equal(pd.read_parquet(catalog.root / DUPLICATES_TABLE), exhaustive)
    pd.testing.assert_frame_equal(stored_pairs(catalog, images), exhaustive)


def signature_row(case: str, signature: np.ndarray, sha: str | None = None) -> dict:
    """An images-table row with the fingerprint columns of a SYNTHETIC (n, 4, 4) signature."""
    row = {name: None for name in IMAGE_SCHEMA.names}
    n = len(signature)
    row.update(image_id=f"D__{case}_0000", dataset="D", case_id=case, channel=0, status="kept", flags=[],
               side_pairs=0, side_pairs_disagreeing=[], source_hash="s", config_hash="c",
               stored_sha256=sha or hashlib.sha256(signature.tobytes()).hexdigest(),
               similarity_signature=signature.ravel().tolist(), canonical_shape_spl=[n, 50, 60],
               stored_spacing_xyz=[1.5] * 3, stored_origin_xyz=[0.0] * 3,
               stored_direction=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], stored_shape_zyx=[n, 60, 50])
    return row


def test_consolidate_searches_only_new_or_replaced_images_and_keeps_the_pairs(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    signatures = {f"x{i}": rng.normal(size=(120, 4, 4)).astype(np.float32) for i in range(6)}
    signatures["crop"] = signatures["x0"][10:90] + rng.normal(scale=0.01, size=(80, 4, 4)).astype(np.float32)
    checked: list[set[str]] = []
    check = leaks._check_near
    def counted_check(a, b, pairs):
        checked.append({a.case[1], b.case[1]})
        check(a, b, pairs)

    monkeypatch.setattr(leaks, "_check_near", counted_check)

    def write(case, signature, sha=None):
        write_part(tmp_path, f"D__{case}", [signature_row(case, signature, sha)], [])

    def stored():
        return pd.read_parquet(tmp_path / DUPLICATES_TABLE)

    def cases(pairs):
        # (original, copy, kind): the original's case is the x one.
        rows = zip(pairs.case_a, pairs.case_b, pairs.kind)
        return sorted((*sorted((a, b), key=lambda c: c[0] != "x"), kind) for a, b, kind in rows)

    for case, signature in signatures.items():
        write(case, signature)
    consolidate(tmp_path)
    assert cases(stored()) == [("x0", "crop", "near")]

    # One new part with an exact copy of x1 and a crop of x2: only pairs with them are checked.
    checked.clear()
    write("copy", signatures["x1"], signature_row("x1", signatures["x1"])["stored_sha256"])
    write("crop2", signatures["x2"][5:100])
    consolidate(tmp_path)
    assert checked and all(pair & {"copy", "crop2"} for pair in checked)
    assert cases(stored()) == [("x0", "crop", "near"), ("x1", "copy", "exact"), ("x2", "crop2", "near")]
    pd.testing.assert_frame_equal(stored(), find_duplicate_pairs_exhaustive(Catalog(tmp_path).images()))

    # Nothing changed: no search, and the table is left as it is.
    checked.clear()
    before = (tmp_path / DUPLICATES_TABLE).stat().st_mtime_ns
    consolidate(tmp_path)
    assert checked == [] and (tmp_path / DUPLICATES_TABLE).stat().st_mtime_ns == before

    # A replaced image loses its old pairs.
    write("crop", rng.normal(size=(80, 4, 4)).astype(np.float32))
    consolidate(tmp_path)
    assert cases(stored()) == [("x1", "copy", "exact"), ("x2", "crop2", "near")]

    # A catalog from before the pairs table: its next consolidation searches everything once.
    (tmp_path / DUPLICATES_TABLE).unlink()
    checked.clear()
    write("crop3", signatures["x3"][20:110])
    consolidate(tmp_path)
    assert cases(stored()) == [("x1", "copy", "exact"), ("x2", "crop2", "near"), ("x3", "crop3", "near")]
    assert {"copy", "x1"} in checked and {"crop2", "x2"} in checked  # pairs of unchanged images, found again
    pd.testing.assert_frame_equal(stored(), find_duplicate_pairs_exhaustive(Catalog(tmp_path).images()))

    # Pairs stored under another rule (here: another MIN_CORRELATION) are searched anew, not built on.
    checked.clear()
    monkeypatch.setattr(leaks, "MIN_CORRELATION", 0.96)
    write("crop4", signatures["x4"][30:120])
    consolidate(tmp_path)
    assert {"copy", "x1"} in checked, "pairs of unchanged images are checked again under the new rule"
    assert ("x4", "crop4", "near") in cases(stored())
    assert pq.read_schema(tmp_path / DUPLICATES_TABLE).metadata[b"pair_rule"].startswith(b"min_correlation=0.96 ")
