"""Targets: which catalog masks (pandas filters, held-out cases) and where their patch starts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from catalog.reader import Catalog
from model.targets import patch_start, select_masks
from tests.model.phantom_catalog import phantom_catalog  # noqa: F401  (fixture)


def test_patch_start_keeps_a_fitting_box_inside_and_centres_without_jitter():
    bbox = np.array([10, 20, 30, 20, 40, 35])
    rng = np.random.default_rng(0)
    starts = np.array([patch_start(bbox, 64, rng) for _ in range(500)])
    assert np.all(starts <= bbox[:3]) and np.all(starts + 64 >= bbox[3:])
    assert starts[:, 0].min() == 20 - 64 and starts[:, 0].max() == 10  # the whole allowed range is used
    assert np.array_equal(patch_start(bbox, 64, None), [15 - 32, 30 - 32, 32 - 32])
    big = np.array([0, 0, 0, 100, 100, 100])
    centres = np.array([patch_start(big, 32, rng) for _ in range(200)]) + 16
    assert np.all(centres >= 0) and np.all(centres < 100)


def test_select_masks_filters_with_pandas(phantom_catalog):
    train = select_masks(phantom_catalog, splits=["train"])
    assert len(train) > 0 and set(train.split) == {"train"} and set(train.status) == {"kept"}
    assert (train.stored_voxels >= 1000).all()
    assert {"shard_path", "stored_shape_zyx"} <= set(train.columns)
    mr = select_masks(phantom_catalog, modalities=["MR"], min_stored_voxels=0)
    assert set(mr.modality) == {"MR"}
    assert set(select_masks(phantom_catalog, categories=["liver"]).category) == {"liver"}
    everything = select_masks(phantom_catalog, min_stored_voxels=0)
    assert len(everything) > len(select_masks(phantom_catalog, min_stored_voxels=5000))
    assert list(everything.mask_id) == sorted(everything.mask_id)


def test_cases_select_and_held_out_cases_stay_out_with_their_duplicates(phantom_catalog, tmp_path):  # noqa: F811
    images = Catalog(phantom_catalog).images()
    kept = images[images.status == "kept"]
    first, second = (f"{r.dataset}/{r.case_id}" for r in kept.drop_duplicates("case_id").head(2).itertuples())
    only = select_masks(phantom_catalog, splits=None, cases=[first])
    assert set(only.dataset + "/" + only.case_id) == {first}
    rest = select_masks(phantom_catalog, splits=None, exclude_cases=[first])
    assert first not in set(rest.dataset + "/" + rest.case_id) and second in set(rest.dataset + "/" + rest.case_id)
    with pytest.raises(ValueError, match="no such case in the catalog: nowhere/none"):
        select_masks(phantom_catalog, exclude_cases=["nowhere/none"])

    # Two cases found to be the same scan: holding one out holds out the other.
    copy = tmp_path / "catalog"
    copy.mkdir()
    (copy / "shards").symlink_to(phantom_catalog / "shards")
    pd.read_parquet(phantom_catalog / "masks.parquet").to_parquet(copy / "masks.parquet")
    same = images.copy()
    same.loc[(same.dataset + "/" + same.case_id).isin([first, second]), "duplicate_group"] = first
    same.to_parquet(copy / "images.parquet")
    rest = select_masks(copy, splits=None, exclude_cases=[first])
    assert not {first, second} & set(rest.dataset + "/" + rest.case_id)
