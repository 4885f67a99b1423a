"""The catalog summaries' left/right table (catalog.report.side_split_table)."""

import pandas as pd

from catalog.report import side_split_table


def test_split_halves_are_counted_by_the_rule_that_split_them():
    masks = pd.DataFrame(
        {
            "mask_id": ["a", "b", "c", "d", "e", "f"],
            "status": ["kept", "kept", "kept", "kept", "rejected", "kept"],
            "side_source": ["both", "both", "name", "data", "data", "dataset"],
            "base_category": ["kidney", "kidney", "vessel", "structure 7", "structure 8", "liver"],
            "side_symmetry": [0.8, 0.6, 0.2, 0.5, 0.5, None],
            "side_midline_fraction": [0.0, 0.0, 0.1, 0.02, 0.02, None],
            "side_dip": [0.0, 0.0, 2.0, 0.1, 0.1, None],
        }
    )
    table = side_split_table(masks)
    rows = {index.split(":")[0]: row for index, row in table.iterrows()}
    assert set(rows) == {"both", "name", "data"}
    assert rows["both"].halves == 2 and rows["both"].categories == 1 and rows["both"].median_symmetry == 0.7
    assert rows["data"].halves == 1  # the rejected half is not counted
    assert side_split_table(masks[masks.side_source == "dataset"]).empty
