"""`make demo`: SYNTHETIC phantoms -> curate (Prefect flow) -> catalog summary, all on this machine."""

from __future__ import annotations

from pathlib import Path


def run_demo(out: Path) -> int:
    from flows.cli import _print_summary
    from flows.curate import curate
    from pipeline.phantoms import write_phantom_datasets

    data = out / "phantoms"
    catalog = out / "catalog"
    datasets = write_phantom_datasets(data, seed=0)
    print(f"wrote SYNTHETIC phantom datasets: {', '.join(d.name for d in datasets)}")
    result = curate(sources=[str(data.resolve())], catalog=str(catalog.resolve()))
    print(f"curated {result['curated']} images into {catalog} ({result['images']} images, {result['masks']} masks)")
    _print_summary(str(catalog))
    print(f"\ncatalog: {catalog.resolve()}")
    return 0
