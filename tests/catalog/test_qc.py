"""QC pictures (catalog.qc): radiological display whatever the stored orientation."""

from __future__ import annotations

import argparse

import matplotlib.image
import numpy as np
import pytest
import SimpleITK as sitk

from catalog import leaks, qc
from catalog.reader import Catalog


def blob_volume(code: str):
    """A SYNTHETIC volume stored in orientation `code`, with a blob in the patient's left-anterior-superior
    part. Returns the stored (z, y, x) arrays of image and mask and the stored geometry."""
    image = sitk.Image([30, 40, 50], sitk.sitkFloat32)  # LPS: x -> left, y -> posterior, z -> superior
    image.SetSpacing((1.0, 2.0, 3.0))
    image.SetOrigin((-15.0, -40.0, -75.0))
    array = np.zeros((50, 40, 30), dtype=np.float32)
    array[35:42, 8:14, 20:26] = 1  # superior (high z), anterior (low y), left (high x)
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(image)
    stored = sitk.DICOMOrient(mask, code)
    geometry = (stored.GetSpacing(), stored.GetOrigin(), stored.GetDirection())
    return sitk.GetArrayFromImage(stored), geometry


def centre_of(mask: np.ndarray) -> tuple[float, float]:
    """(row, column) centroid as a fraction of the picture (0 = top / left)."""
    rows, columns = np.nonzero(mask)
    return rows.mean() / mask.shape[0], columns.mean() / mask.shape[1]


@pytest.mark.parametrize("code", ["LPS", "RAS", "RAI", "PIL", "SLA", "ILP"])
def test_views_follow_the_radiological_convention_whatever_the_stored_orientation(code):
    array, geometry = blob_volume(code)
    views = {v.name: v for v in qc.radiological_views(qc.to_lps(array * 100, *geometry), qc.to_lps(array, *geometry))}
    # Axial: patient's left on the image's right, anterior at the top.
    row, column = centre_of(views["axial"].mask)
    assert column > 0.5 and row < 0.5
    assert views["axial"].pixel_mm == (2.0, 1.0)
    # Coronal: left on the right, superior at the top. Sagittal: anterior on the left, superior at the top.
    row, column = centre_of(views["coronal"].mask)
    assert column > 0.5 and row < 0.5
    row, column = centre_of(views["sagittal"].mask)
    assert column < 0.5 and row < 0.5
    assert views["sagittal"].mask.shape == (50, 40) and views["sagittal"].pixel_mm == (3.0, 2.0)


def test_direction_letters_sit_on_the_edges_radiologists_expect():
    array, geometry = blob_volume("RAS")
    views = {v.name: v for v in qc.radiological_views(qc.to_lps(array, *geometry), qc.to_lps(array, *geometry))}
    expected = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"), "sagittal": ("A", "P", "S", "I")}
    for name, (left, right, top, bottom) in expected.items():
        marks = {letter: (x, y) for letter, x, y, _, _ in qc.edge_marks(views[name])}
        assert marks[left][0] < 0.1 and marks[right][0] > 0.9, name
        assert marks[top][1] > 0.9 and marks[bottom][1] < 0.1, name


def kidney(raw_catalog, side: str) -> str:
    masks = Catalog(raw_catalog[0]).masks()
    row = masks[(masks.dataset == "Dataset002_TotalSegCTMergedPairs") & (masks.category == f"kidney {side}")]
    assert len(row) == 1 and row.iloc[0].status == "kept" and row.iloc[0].side_source in ("name", "both")
    return row.iloc[0].mask_id


def test_the_split_left_kidney_shows_on_the_right_of_the_axial_view(raw_catalog, tmp_path):
    root = raw_catalog[0]
    left_views, mask_row, _ = qc.mask_views(root, kidney(raw_catalog, "left"))
    right_views, _, _ = qc.mask_views(root, kidney(raw_catalog, "right"))
    assert mask_row["centroid_world_xyz"][0] > 0  # LPS +x: the patient's left, independently of the views
    axial = left_views[0]
    marks = {letter: x for letter, x, _, _, _ in qc.edge_marks(axial)}
    _, column = centre_of(axial.mask)
    assert column > 0.5 and marks["L"] > 0.5 > marks["R"], "the left kidney sits on the side marked L"
    assert centre_of(right_views[0].mask)[1] < 0.5
    assert centre_of(left_views[1].mask)[1] > 0.5  # coronal as well
    png = qc.show_mask(root, kidney(raw_catalog, "left"), tmp_path / "kidney_left.png")
    picture = matplotlib.image.imread(png)
    assert picture.ndim == 3 and picture.shape[1] > 2 * picture.shape[0]


def test_report_pictures_cli_and_errors(raw_catalog, tmp_path, capsys):
    root = raw_catalog[0]
    paths = qc.qc_images_for_report(root, 3, out_dir=tmp_path / "qc")
    assert len(paths) == 3 and all(p.is_file() and p.parent == tmp_path / "qc" for p in paths)
    assert len({p.name.split("__")[0] for p in paths}) == 3, "one picture per dataset first"

    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="catalog_command")
    qc.add_arguments(commands)
    leaks.add_arguments(commands)
    out = tmp_path / "show.png"
    assert qc.run(parser.parse_args(["show", str(root), "--mask", kidney(raw_catalog, "right"), "-o", str(out)])) == 0
    assert out.is_file()
    assert leaks.run(parser.parse_args(["leaks", str(root)])) == 0
    printed = capsys.readouterr().out
    assert "ts_ct_sm" in printed and "3 pairs in 1 groups" in printed

    with pytest.raises(KeyError, match="is not in the catalog"):
        qc.show_mask(root, "no_such_mask")
    masks = Catalog(root).masks()
    rejected = masks[masks.status == "rejected"].mask_id.iloc[0]
    with pytest.raises(KeyError, match="was rejected"):
        qc.show_mask(root, rejected)
