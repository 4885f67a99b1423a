"""Bad inputs become rejected rows with a reason; the rest of the run is curated normally.

All data here is SYNTHETIC (phantoms), damaged on purpose.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from catalog.reader import Catalog
from pipeline.phantoms import CT_LABELS, make_torso_ct_case

SMALL = dict(size=(40, 40, 24), spacing=(6.0, 6.0, 7.5))


def write(image: sitk.Image, path) -> None:
    sitk.WriteImage(image, str(path), useCompression=True)


@pytest.fixture(scope="module")
def damaged_source(tmp_path_factory):
    """A dataset of two good SYNTHETIC cases and one damaged case per kind of bad input."""
    root = tmp_path_factory.mktemp("damaged")
    dataset = root / "Dataset990_SyntheticDamaged"
    (dataset / "imagesTr").mkdir(parents=True)
    (dataset / "labelsTr").mkdir()
    labels = {name: value for name, value in CT_LABELS.items()}
    json.dump({"channel_names": {"0": "CT"}, "labels": labels, "file_ending": ".nii.gz", "synthetic": True},
              open(dataset / "dataset.json", "w"))

    def case(name, seed):
        image, label, _ = make_torso_ct_case(seed=seed, **SMALL)
        return dataset / "imagesTr" / f"{name}_0000.nii.gz", dataset / "labelsTr" / f"{name}.nii.gz", image, label

    for i, name in enumerate(["phantom_good_a", "phantom_good_b"]):
        ip, lp, image, label = case(name, i)
        write(image, ip), write(label, lp)

    ip, lp, image, label = case("phantom_truncated", 10)
    write(image, ip), write(label, lp)
    data = ip.read_bytes()
    ip.write_bytes(data[: len(data) // 2])

    ip, lp, image, label = case("phantom_shape_mismatch", 11)
    write(image, ip)
    write(label[:, :, :20], lp)

    for name, damage in (("phantom_nan_label", np.nan), ("phantom_float_label", 0.5)):
        ip, lp, image, label = case(name, 12)
        write(image, ip)
        array = sitk.GetArrayFromImage(label).astype(np.float32)
        array[5, 5, 5] = damage
        bad = sitk.GetImageFromArray(array)
        bad.CopyInformation(label)
        write(bad, lp)

    ip, lp, image, label = case("phantom_empty_label", 13)
    write(image, ip)
    empty = sitk.Image(label.GetSize(), label.GetPixelID())
    empty.CopyInformation(label)
    write(empty, lp)

    ip, lp, image, label = case("phantom_4d", 14)
    volume = sitk.GetArrayFromImage(image)
    four_d = sitk.GetImageFromArray(np.stack([volume, volume]), isVector=False)
    write(four_d, ip), write(label, lp)

    ip, lp, image, label = case("phantom_missing_label", 15)
    write(image, ip)

    listed = root / "Dataset991_SyntheticListed"
    shutil.copytree(dataset / "imagesTr", listed / "imagesTr", ignore=lambda d, f: [x for x in f if "good_a" not in x])
    shutil.copytree(dataset / "labelsTr", listed / "labelsTr", ignore=lambda d, f: [x for x in f if "good_a" not in x])
    json.dump(
        {"channel_names": {"0": "CT"}, "labels": labels, "file_ending": ".nii.gz",
         "dataset": {"phantom_good_a": {"images": ["imagesTr/phantom_good_a_0000.nii.gz"],
                                        "label": "labelsTr/phantom_good_a.nii.gz"},
                     "phantom_listed_absent": {"images": ["imagesTr/phantom_absent_0000.nii.gz"],
                                               "label": "labelsTr/phantom_absent.nii.gz"}}},
        open(listed / "dataset.json", "w"),
    )
    return root


EXPECTED_REASONS = {
    "Dataset990_SyntheticDamaged__phantom_truncated_0000": "image unreadable",
    "Dataset990_SyntheticDamaged__phantom_shape_mismatch_0000": "image/label size mismatch",
    "Dataset990_SyntheticDamaged__phantom_nan_label_0000": "label map contains NaN",
    "Dataset990_SyntheticDamaged__phantom_float_label_0000": "non-integer (float) values",
    "Dataset990_SyntheticDamaged__phantom_empty_label_0000": "label map is empty",
    "Dataset990_SyntheticDamaged__phantom_4d_0000": "4D",
    "Dataset990_SyntheticDamaged__phantom_missing_label_0000": "label file missing",
    "Dataset991_SyntheticListed__phantom_listed_absent_0000": "image file missing: imagesTr/phantom_absent_0000",
}
GOOD = [
    "Dataset990_SyntheticDamaged__phantom_good_a_0000",
    "Dataset990_SyntheticDamaged__phantom_good_b_0000",
    "Dataset991_SyntheticListed__phantom_good_a_0000",
]


def test_each_bad_input_is_a_rejected_row_and_the_rest_is_curated(damaged_source, prefect_server, tmp_path):
    from flows.curate import curate

    curate(sources=[str(damaged_source)], catalog=str(tmp_path / "catalog"))
    images = Catalog(tmp_path / "catalog").images().set_index("image_id")
    masks = Catalog(tmp_path / "catalog").masks()
    assert sorted(images.index) == sorted([*EXPECTED_REASONS, *GOOD])
    for image_id, reason in EXPECTED_REASONS.items():
        assert images.loc[image_id, "status"] == "rejected"
        assert reason in images.loc[image_id, "reason"], images.loc[image_id, "reason"]
        image_masks = masks[masks.image_id == image_id]
        assert len(image_masks) == len(CT_LABELS) - 1 and (image_masks.status == "rejected").all()
    for image_id in GOOD:
        assert images.loc[image_id, "status"] == "kept"
        assert images.loc[image_id, "masks_kept"] >= 8


def test_killing_the_flow_mid_run_leaves_nothing_half_visible_and_a_rerun_completes(
    phantom_data, prefect_server, tmp_path
):
    """Kill -9 the curation process after its first finished case; rerun; compare with an uninterrupted run."""
    from prefect.settings import PREFECT_API_URL

    from flows.curate import curate

    root = tmp_path / "killed"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    command = [sys.executable, "-m", "flows.cli", "curate", str(phantom_data), "--catalog", str(root), "--threads", "1"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((root / "_parts").glob("*.images.parquet")):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    parts = list((root / "_parts").glob("*.images.parquet"))
    assert parts, "the run was killed before it finished any case"
    assert not (root / "images.parquet").exists(), "the tables appear only when the run completes"

    result = curate(sources=[str(phantom_data)], catalog=str(root))
    assert result["skipped"] >= 1, "finished cases of the killed run are not redone"
    clean = tmp_path / "clean"
    curate(sources=[str(phantom_data)], catalog=str(clean))
    for table in ("images.parquet", "masks.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(root / table), pd.read_parquet(clean / table))
    leftovers = [p for p in (root / "shards").rglob("*") if p.name.startswith((".tmp-", ".old-"))]
    assert leftovers == [] and not list((root / "_parts").glob("*"))
    images = Catalog(root).images()
    for shard_path in images[images.status == "kept"].shard_path:
        assert (root / shard_path / "zarr.json").is_file()
