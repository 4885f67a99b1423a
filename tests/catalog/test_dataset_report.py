"""The per-dataset report (catalog.dataset_report) on the REAL sample catalog."""

from __future__ import annotations

import argparse

import matplotlib.image
import pandas as pd

from catalog import dataset_report


def test_report_counts_reasons_categories_and_duplicates_per_dataset(raw_catalog, tmp_path, capsys):
    root = raw_catalog[0]
    parser = argparse.ArgumentParser()
    dataset_report.add_arguments(parser.add_subparsers(dest="catalog_command"))
    assert dataset_report.run(parser.parse_args(["report", str(root), "-o", str(tmp_path / "report")])) == 0
    path = tmp_path / "report" / "datasets.md"
    assert capsys.readouterr().out.strip() == str(path)
    text = path.read_text()
    images = pd.read_parquet(root / "images.parquet")
    masks = pd.read_parquet(root / "masks.parquet")
    for dataset, rows in images.groupby("dataset"):
        picture = tmp_path / "report" / f"{dataset}.png"
        assert f"## {dataset}" in text and f"![{dataset}]({picture.name})" in text
        assert matplotlib.image.imread(picture).shape[2] in (3, 4)
        kept_masks = masks[(masks.dataset == dataset) & (masks.status == "kept")]
        row = next(line for line in text.splitlines() if line.startswith(f"| {dataset} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2:7] == [str((rows.status == "kept").sum()), str((rows.status == "rejected").sum()),
                              str(len(kept_masks)), str((masks.dataset == dataset).sum() - len(kept_masks)),
                              str(kept_masks.category.nunique())]
    three_slice = text.split("## Dataset008_CT3Slice")[1].split("## ")[0]
    assert "step 1: physical extent too small" in three_slice
    assert "step 2: label absent from the map" in text.split("## Dataset001_TotalSegCT")[1].split("## ")[0]
    duplicates = pd.read_csv(tmp_path / "report" / "duplicates.csv")
    assert len(duplicates) == 3 and set(duplicates.kind) == {"exact", "near"}
    assert "Duplicate pairs involving this dataset" in text.split("## Dataset002_TotalSegCTMergedPairs")[1]
    merged = text.split("## Dataset002_TotalSegCTMergedPairs")[1].split("\n## ")[0]
    assert "Left/right split by rule" in merged and "both: known paired structure" in merged
