"""Which table files are the catalog: publication without rename.

A local catalog keeps its tables at the root (`images.parquet`, `masks.parquet`, and any extra table such
as `duplicates.parquet`), each replaced by temporary file + rename, so `pd.read_parquet("catalog/images.parquet")`
keeps working.

Object storage has no rename and no multi-object transaction. There a run writes its tables under new,
never reused names (`tables/<name>-<version>.parquet`) and then publishes them all at once with one small
object, `catalog.json`, written LAST (a single PUT is atomic)::

    {"format": 1, "version": "20261205T151500Z-3f2a9c1e",
     "tables": {"images": "tables/images-20261205T151500Z-3f2a9c1e.parquet",
                "masks": "tables/masks-20261205T151500Z-3f2a9c1e.parquet"}}

Readers read the manifest first. A run killed before that PUT leaves the previous manifest (or none) in
place, so readers keep seeing the previous catalog; the table files it wrote are named by no manifest and
are removed by `sammed3d catalog gc`. Superseded table files are not removed at publication, since a
reader that read the previous manifest may still be reading them.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pyarrow as pa

from catalog.store.location import CatalogLocation
from catalog.store.locking import confirm_held

MANIFEST = "catalog.json"
TABLES_DIR = "tables"
FORMAT = 1


class ManifestError(ValueError):
    """catalog.json exists but cannot be read as a manifest of this format."""


def read_manifest(location: CatalogLocation) -> dict | None:
    """The published manifest of the catalog, or None when there is none."""
    try:
        data = location.read_bytes(MANIFEST)
    except FileNotFoundError:
        return None
    try:
        manifest = json.loads(data)
    except json.JSONDecodeError as error:
        raise ManifestError(f"{location.url_of(MANIFEST)} is not valid JSON: {error}") from None
    if not (isinstance(manifest, dict) and manifest.get("format") == FORMAT and isinstance(manifest.get("tables"), dict)):
        raise ManifestError(f"{location.url_of(MANIFEST)} is not a catalog manifest of format {FORMAT}")
    return manifest


def table_file(location: CatalogLocation, name: str, manifest: dict | None = None) -> str | None:
    """The current file of table `name` ("images", "masks", ...), relative to the root; None when absent."""
    manifest = manifest if manifest is not None else read_manifest(location)
    if manifest is not None:
        return manifest["tables"].get(name)
    if location.is_local and (location.local_path / f"{name}.parquet").is_file():
        return f"{name}.parquet"
    return None


def published_table_files(location: CatalogLocation) -> set[str]:
    """Every table file the catalog names now (relative paths)."""
    manifest = read_manifest(location)
    if manifest is not None:
        return set(manifest["tables"].values())
    if location.is_local and location.local_path.is_dir():
        return {p.name for p in location.local_path.glob("*.parquet")}
    return set()


def publish_tables(location: CatalogLocation, tables: dict[str, pa.Table]) -> dict[str, str]:
    """Make `tables` (name -> table) the catalog's current tables, all at once for readers.

    Local: each table replaces `<name>.parquet` by rename, in the order given (give images last: its rows
    point at the others). S3: versioned files, then the manifest, which keeps the previous manifest's
    other tables; when this process holds the catalog's lease, the manifest is written only if the lease
    is still its own (`locking.confirm_held`). Returns name -> file written.
    """
    if location.is_local:
        written = {}
        for name, table in tables.items():
            written[name] = f"{name}.parquet"
            location.write_parquet(table, written[name])
        return written
    previous = read_manifest(location)
    version = f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"
    written = {name: f"{TABLES_DIR}/{name}-{version}.parquet" for name in tables}
    for name, table in tables.items():
        location.write_parquet(table, written[name])
    confirm_held(location)
    manifest = {
        "format": FORMAT,
        "version": version,
        "published": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tables": {**(previous or {}).get("tables", {}), **written},
    }
    location.write_bytes(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return written
