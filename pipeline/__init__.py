"""Pure per-case curation steps (no Prefect, no Zarr): read, filter, clean, split, resample."""

__version__ = "0.1.0"
