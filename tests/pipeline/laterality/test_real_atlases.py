"""Left/right recovery on the REAL shared atlases, whose sides the tests merge themselves (temporary copies).

Dataset005 (AAL on MNI152, `_L`/`_R`) and Dataset009 (FreeSurfer `Left-`/`Right-`, stored without
geometry, so its names contradict the world axes and the image is flagged `orientation_suspect`).
"""

from __future__ import annotations

import json

import pytest

from pipeline.config import CurationConfig
from pipeline.curate import curate_case
from pipeline.importers import read_dataset
from pipeline.steps.step4_symmetry_split import SPLIT_SOURCES
from pipeline.vocabulary import parse_label_name
from tests.pipeline.laterality.merged_atlas import merge_sides, recovered_sides

AAL = "Dataset005_MNI152AAL"
FREESURFER = "Dataset009_VoxelMorphT1NoGeometry"
# Dataset009 keeps these pairs named, so its orientation can still be checked against the world axes.
FREESURFER_KEPT_NAMED = ("thalamus", "caudate", "putamen", "pallidum")
# First words of the paired structures in the shared datasets; costal cartilages are merged left and
# right cartilages (one TotalSegmentator label, not split by name, bilateral by anatomy).
PAIRED_FIRST_WORDS = {
    "kidney", "adrenal", "lung", "femur", "hip", "humerus", "scapula", "clavicula", "rib", "gluteus", "iliopsoas",
    "autochthon", "common", "subclavian", "brachiocephalic", "iliac",
}
OTHER_DATASETS = (
    "Dataset001_TotalSegCT", "Dataset002_TotalSegCTMergedPairs", "Dataset003_TotalSegMR", "Dataset004_BraTS2013",
    "Dataset006_BraTS2021Edema", "Dataset007_SpinalCordMRI",
)


@pytest.fixture(scope="module")
def config():
    return CurationConfig()


@pytest.fixture(scope="module")
def original_aal(raw_data, config):
    return curate_case(read_dataset(raw_data / AAL)[0], config)


@pytest.fixture(scope="module")
def merged_aal(raw_data, tmp_path_factory, config):
    target = tmp_path_factory.mktemp("merged") / AAL
    pairs = merge_sides(raw_data / AAL, target)
    return pairs, curate_case(read_dataset(target)[0], config)


def test_merged_aal_pairs_split_back_into_their_sides(original_aal, merged_aal):
    pairs, merged = merged_aal
    assert len(pairs) == 54
    recovered, total, failures = recovered_sides(original_aal.masks, merged.masks, set(pairs))
    assert total == 108
    assert recovered >= 0.98 * total, failures
    split = [m for m in merged.masks if m["side_source"] in SPLIT_SOURCES]
    assert {m["base_category"] for m in split} == set(pairs)
    # Evidence recorded for every split half; most pairs are also bilateral by their data alone.
    assert all(m["side_symmetry"] is not None and m["side_midline_fraction"] is not None for m in split)
    assert sum(m["side_source"] == "both" for m in split) >= 0.7 * len(split)


def test_aal_vermis_is_never_split(merged_aal):
    _, merged = merged_aal
    vermis = [m for m in merged.masks if m["base_category"].startswith("vermis")]
    assert len(vermis) == 8
    assert all(m["side"] is None and m["side_source"] is None and m["status"] == "kept" for m in vermis)


def test_unknown_names_are_decided_by_the_data(raw_data, tmp_path, config, original_aal):
    """Names hidden ("structure N"): pairs that part at the plane are split by their data ("data"),
    the vermis and pairs that touch all along the fissure are kept whole, never split."""
    pairs = merge_sides(raw_data / AAL, tmp_path / AAL, hide_names=True)
    merged = curate_case(read_dataset(tmp_path / AAL)[0], config)
    name_of = {f"structure {value}": base for base, value in pairs.items()}
    for mask in merged.masks:  # back to the atlas names, to compare with the original sides
        base = name_of.get(mask["base_category"])
        if base:
            mask["base_category"], mask["category"] = base, f"{base} {mask['side']}" if mask["side"] else base
    split = [m for m in merged.masks if m["side_source"] == "data"]
    assert {m["base_category"] for m in split} <= set(pairs), "only merged pairs are split"
    recovered, total, failures = recovered_sides(original_aal.masks, merged.masks, set(pairs))
    assert recovered >= 0.75 * total, failures
    labels = json.loads((raw_data / AAL / "dataset.json").read_text())["labels"]
    vermis_values = {value for name, value in labels.items() if name.startswith("Vermis")}
    vermis = [m for m in merged.masks if m["source_label"] in vermis_values]
    assert len(vermis) == 8 and all(m["side"] is None for m in vermis)
    assert all(m["side_dip"] is None or m["side_dip"] > config.bilateral_max_dip for m in vermis)


def test_merged_freesurfer_pairs_split_and_the_orientation_flag_survives(raw_data, tmp_path, config):
    original = curate_case(read_dataset(raw_data / FREESURFER)[0], config)
    assert "orientation_suspect" in original.images[0].row["flags"]
    pairs = merge_sides(raw_data / FREESURFER, tmp_path / FREESURFER, keep_named=FREESURFER_KEPT_NAMED)
    assert len(pairs) == 12  # of 16 FreeSurfer pairs
    merged = curate_case(read_dataset(tmp_path / FREESURFER)[0], config)
    row = merged.images[0].row
    assert "orientation_suspect" in row["flags"] and row["side_pairs"] == len(FREESURFER_KEPT_NAMED)
    # The names say the world's left is the patient's right: split halves follow the names.
    assert "split_sides_follow_names" in row["flags"]
    recovered, total, failures = recovered_sides(original.masks, merged.masks, set(pairs))
    assert total >= 22  # two sides of 12 pairs, less any the original rejects
    assert recovered >= 0.98 * total, failures
    midline = {"brain stem", "3rd ventricle", "4th ventricle", "optic chiasm", "csf", "wm hypointensities"}
    assert all(m["side"] is None for m in merged.masks if m["base_category"] in midline)
    assert all(m["side"] is None for m in merged.masks if m["base_category"].startswith("cc "))


@pytest.mark.parametrize("dataset", OTHER_DATASETS)
def test_no_other_shared_mask_is_split_unless_bilateral(raw_data, tmp_path, config, dataset):
    """The first case of each other dataset, with its names and with its names hidden (only the data can
    tell): only structures with a left and a right are ever split; with names, only known paired ones."""
    case = read_dataset(raw_data / dataset)[0]
    named = curate_case(case, config)
    for mask in named.masks:
        if mask["side_source"] in SPLIT_SOURCES:
            assert mask["side_source"] in ("name", "both"), mask["category"]
            assert mask["base_category"].split(" ")[0] in PAIRED_FIRST_WORDS, mask["category"]
        elif mask["side_source"] is None:
            assert mask["side"] is None, mask["category"]
    merge_sides(raw_data / dataset, tmp_path / dataset, hide_names=True, merge=False)
    hidden_case = next(c for c in read_dataset(tmp_path / dataset) if c.case_id == case.case_id)
    real_name = {value: name for value, name in case.label_names.items()}
    hidden = curate_case(hidden_case, config)
    by_data = {parse_label_name(real_name[m["source_label"]]).base for m in hidden.masks if m["side_source"] == "data"}
    for base in by_data:
        assert base.split(" ")[0] in PAIRED_FIRST_WORDS or base == "costal cartilages", (dataset, base)
    if dataset == "Dataset002_TotalSegCTMergedPairs":  # its merged pairs are found by their data alone
        assert {"kidney", "femur", "hip", "gluteus maximus", "autochthon", "iliopsoas"} <= by_data
