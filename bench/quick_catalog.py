"""Curate dataset folders into a catalog without a Prefect server, for the training benchmarks.

Runs the flow's per-case function `curate_one_case` (same shards and rows as the flow), then folds the
parts into the tables. Benchmarks only: production curation goes through the `curate` flow.
"""

from __future__ import annotations

from pathlib import Path


def curate_without_server(sources: list[Path], root: Path) -> Path:
    """Curate every case of the dataset folders (or folders of them) in `sources` into catalog `root`."""
    from catalog.writer import consolidate
    from flows.curate import curate_one_case, load_cases
    from pipeline.catalog_rows import source_hashes
    from pipeline.config import CurationConfig

    config = CurationConfig()
    for case in load_cases([str(s) for s in sources]):
        curate_one_case(case, config, str(root), [c.index for c in case.channels], source_hashes(case))
    consolidate(root)
    return root


def phantom_catalog(folder: Path, n_ct: int = 4, n_mr: int = 3) -> Path:
    """Write the SYNTHETIC phantom datasets under folder/raw and curate them into folder/catalog."""
    from pipeline.phantoms import write_phantom_datasets

    write_phantom_datasets(folder / "raw", seed=0, n_ct=n_ct, n_mr=n_mr)
    return curate_without_server([folder / "raw"], folder / "catalog")
