"""A small SYNTHETIC phantom catalog for the training tests, curated without a Prefect server.

Import the fixture into a test module (``from tests.model.phantom_catalog import phantom_catalog``); the
catalog is built once per session, whichever module asks first.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def build_phantom_catalog(folder: Path, n_ct: int = 2, n_mr: int = 1, catalog: str | None = None) -> Path | str:
    """Write n_ct CT and n_mr two-channel MR phantom cases under folder/raw and curate them to folder/catalog
    (or to `catalog`, e.g. an s3:// URL); returns the catalog root."""
    from catalog.writer import consolidate
    from flows.curate import curate_one_case, load_cases
    from pipeline.catalog_rows import source_hashes
    from pipeline.config import CurationConfig
    from pipeline.phantoms import write_phantom_datasets

    write_phantom_datasets(folder / "raw", seed=0, n_ct=n_ct, n_mr=n_mr)
    root = catalog or folder / "catalog"
    for case in load_cases([str(folder / "raw")]):
        # The task's plain function: same shards and rows as the flow, no Prefect server needed.
        curate_one_case(case, CurationConfig(), str(root), [c.index for c in case.channels], source_hashes(case))
    consolidate(root)
    return root


@pytest.fixture(scope="session")
def phantom_catalog(tmp_path_factory) -> Path:
    """Catalog root of the phantom catalog: 2 CT torso cases and 1 MR head case (2 channels = 2 images)."""
    folder = tmp_path_factory.getbasetemp() / "phantom-training-catalog"
    root = folder / "catalog"
    if not (root / "masks.parquet").exists():
        folder.mkdir(exist_ok=True)
        build_phantom_catalog(folder)
    return root
