"""End-to-end curation of the REAL sample datasets (../shared/data/raw) through the Prefect flow."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pandas as pd
import pytest
import zarr

from catalog.reader import Catalog
from pipeline.config import CurationConfig

SPLIT_STRUCTURES = [
    "kidney", "adrenal gland", "lung upper lobe", "lung lower lobe", "femur", "hip", "gluteus maximus",
    "gluteus medius", "gluteus minimus", "iliopsoas", "autochthon",
]


def tables(root):
    catalog = Catalog(root)
    return catalog.images(), catalog.masks()


def test_every_image_and_every_mask_has_a_row(raw_catalog, raw_data):
    root, _ = raw_catalog
    images, masks = tables(root)
    expected_images = set()
    expected_labels = {}
    for dataset_dir in sorted(raw_data.iterdir()):
        meta = json.loads((dataset_dir / "dataset.json").read_text())
        ending = meta["file_ending"]
        for path in (dataset_dir / "imagesTr").glob(f"*{ending}"):
            expected_images.add(f"{dataset_dir.name}__{path.name[: -len(ending)]}")
        expected_labels[dataset_dir.name] = len(meta["labels"]) - 1
    assert set(images.image_id) == expected_images
    # Every label named by a dataset has a row for each image (paired ones may become two, one per side).
    per_image = masks.groupby("image_id").source_label.nunique()
    for image_id, count in per_image.items():
        assert count >= expected_labels[image_id.split("__")[0]]
    assert set(per_image.index) == expected_images
    assert images.status.isin(["kept", "rejected"]).all() and masks.status.isin(["kept", "rejected"]).all()


def test_the_three_slice_ct_is_rejected_for_its_physical_extent(raw_catalog):
    images, masks = tables(raw_catalog[0])
    row = images[images.dataset == "Dataset008_CT3Slice"].iloc[0]
    assert row.status == "rejected"
    assert "physical extent" in row.reason and "z=3.0 mm" in row.reason
    assert (masks[masks.dataset == "Dataset008_CT3Slice"].status == "rejected").all()


def stored_mask(root, images, masks, dataset, case, category) -> np.ndarray:
    image = images[(images.dataset == dataset) & (images.case_id == case)].iloc[0]
    mask = masks[(masks.image_id == image.image_id) & (masks.category == category)]
    assert len(mask) == 1 and mask.iloc[0].status == "kept", f"{dataset} {category}: {mask.reason.tolist()}"
    label = zarr.open_group(str(root / image.shard_path), mode="r")["label"][:]
    return label == mask.iloc[0].label_value


@pytest.mark.parametrize("structure", SPLIT_STRUCTURES)
def test_merged_pairs_split_back_into_the_original_sides(raw_catalog, structure):
    root = raw_catalog[0]
    images, masks = tables(root)
    original_rows = masks[
        (masks.dataset == "Dataset001_TotalSegCT") & (masks.case_id == "ts_ct") & (masks.base_category == structure)
    ]
    sides = sorted(original_rows[original_rows.status == "kept"].side)
    assert sides, f"ts_ct has no kept {structure}"
    for side in sides:
        category = f"{structure} {side}"
        original = stored_mask(root, images, masks, "Dataset001_TotalSegCT", "ts_ct", category)
        recovered = stored_mask(root, images, masks, "Dataset002_TotalSegCTMergedPairs", "ts_ct_merged", category)
        row = masks[(masks.dataset == "Dataset002_TotalSegCTMergedPairs") & (masks.category == category)].iloc[0]
        assert row.side_source in ("name", "both")
        dice = 2 * (original & recovered).sum() / (original.sum() + recovered.sum())
        assert dice >= 0.98, f"{category}: Dice {dice:.4f}"
    merged_sides = masks[(masks.dataset == "Dataset002_TotalSegCTMergedPairs") & (masks.base_category == structure)]
    assert sorted(merged_sides[merged_sides.status == "kept"].side) == sides


def test_orientation_check_flags_only_the_file_without_geometry(raw_catalog):
    images, _ = tables(raw_catalog[0])
    flagged = images.set_index("dataset")["flags"].map(lambda f: "orientation_suspect" in list(f))
    assert flagged.loc["Dataset009_VoxelMorphT1NoGeometry"].all()
    for dataset in ("Dataset001_TotalSegCT", "Dataset003_TotalSegMR", "Dataset005_MNI152AAL"):
        assert not np.any(flagged.loc[dataset]), dataset
        assert images[images.dataset == dataset].side_pairs.min() > 0, "pairs were really compared"


def test_multichannel_cases_give_one_image_per_channel_sharing_masks(raw_catalog):
    root = raw_catalog[0]
    images, masks = tables(root)
    brats = images[images.dataset == "Dataset004_BraTS2013"]
    assert len(brats) == 12
    for case_id, rows in brats.groupby("case_id"):
        assert sorted(rows.channel_name) == ["FLAIR", "T1c"]
        per_image = [
            masks[masks.image_id == i][["category", "label_value", "voxels", "status"]].reset_index(drop=True)
            for i in rows.image_id
        ]
        pd.testing.assert_frame_equal(per_image[0], per_image[1])
        labels = [zarr.open_group(str(root / p), mode="r")["label"][:] for p in rows.shard_path]
        assert np.array_equal(labels[0], labels[1])


def test_the_one_voxel_lung_fragment_does_not_survive(raw_catalog):
    images, masks = tables(raw_catalog[0])
    fragment = masks[(masks.case_id == "ts_ct_sm") & (masks.category == "lung middle lobe right")].iloc[0]
    assert fragment.status == "rejected" and "only 1 voxels" in fragment.reason
    assert fragment.source_voxels == 1


def test_pandas_queries_from_the_readme(raw_catalog):
    root = str(raw_catalog[0])
    masks = pd.read_parquet(root + "/masks.parquet")
    ct_liver = masks[(masks.category == "liver") & (masks.modality == "CT") & (masks.status == "kept")]
    assert set(ct_liver.case_id) == {"ts_ct", "ts_ct_sm", "ts_ct_merged"}
    big_train = masks[(masks.status == "kept") & (masks.split == "train") & (masks.volume_ml > 50)]
    assert (big_train.volume_ml > 50).all() and len(big_train) > 0
    lesions = masks[(masks.group == "lesion") & (masks.modality == "MR") & (masks.status == "kept")]
    assert {"edema", "enhancing tumor"} <= set(lesions.category)


def snapshot(root):
    files = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    return files, pd.read_parquet(root / "images.parquet"), pd.read_parquet(root / "masks.parquet")


def test_a_rerun_with_nothing_changed_rewrites_nothing(raw_catalog, raw_data, prefect_server, tmp_path):
    from flows.curate import curate

    source_root, _ = raw_catalog
    root = tmp_path / "catalog"
    shutil.copytree(source_root, root)
    before_files, before_images, before_masks = snapshot(root)
    # Time a first run and a rerun in the same conditions (same server, warm caches), side by side.
    first_root = tmp_path / "fresh"
    start = time.perf_counter()
    curate(sources=[str(raw_data)], catalog=str(first_root))
    first = time.perf_counter() - start
    start = time.perf_counter()
    result = curate(sources=[str(raw_data)], catalog=str(root))
    rerun = time.perf_counter() - start
    after_files, after_images, after_masks = snapshot(root)
    assert result["curated"] == 0
    assert after_files == before_files, "no file was rewritten"
    pd.testing.assert_frame_equal(before_images, after_images)
    pd.testing.assert_frame_equal(before_masks, after_masks)
    assert rerun < 0.2 * first, f"rerun {rerun:.2f} s vs first run {first:.2f} s"


def test_changing_one_threshold_changes_exactly_the_affected_rows(raw_catalog, raw_data, prefect_server, tmp_path):
    from flows.curate import curate

    root = tmp_path / "catalog"
    shutil.copytree(raw_catalog[0], root)
    _, images_before, masks_before = snapshot(root)
    curate(sources=[str(raw_data)], catalog=str(root), config=CurationConfig(max_background_fraction=0.995))
    _, images_after, masks_after = snapshot(root)

    # config_hash is bookkeeping and changes on every row. Otherwise only masks judged by the changed rule
    # may change: those in (0.99, 0.995] are now kept, those above 0.995 keep their status but their reason
    # quotes the new threshold. Images change only where a mask flipped (kept counts, side pairs).
    ignore = ["config_hash"]
    before = masks_before.drop(columns=ignore).set_index("mask_id")
    after = masks_after.drop(columns=ignore).set_index("mask_id")
    changed = sorted(i for i in before.index if not before.loc[i].equals(after.loc[i]))
    fraction = before.bg_fraction_bbox
    judged = (fraction > 0.99) & ~before.reason.fillna("").str.startswith("image rejected")
    flipped = sorted(before.index[judged & (fraction <= 0.995)])
    assert changed == sorted(before.index[judged]) and len(flipped) > 0
    assert (after.loc[flipped].status == "kept").all()
    assert (after.loc[sorted(set(changed) - set(flipped))].reason.str.contains("exceeds 0.995")).all()
    images_b = images_before.drop(columns=ignore).set_index("image_id")
    images_a = images_after.drop(columns=ignore).set_index("image_id")
    changed_images = sorted(i for i in images_b.index if not images_b.loc[i].equals(images_a.loc[i]))
    assert changed_images == sorted(set(before.loc[flipped].image_id))
