"""`sammed3d catalog gc`: remove what no published table names any more.

On object storage a run never deletes shards or table files a reader might still use (a reader that read
the previous manifest reads the previous tables and their shards). What they leave behind is removed here,
under the catalog's write lock, when no reader of an older version is expected any more:

- shard prefixes (`shards/<dataset>/<name>.zarr`) that no row of the current images table names, written
  by a run killed before publication or replaced by a later version of the image;
- table files under `tables/` that the manifest does not name (superseded versions, a killed run's).

A local catalog's consolidation already removes its stale shards; gc finds what is left there too.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from catalog.schema import SHARDS_DIR
from catalog.store.location import CatalogLocation
from catalog.store.locking import catalog_write_lock
from catalog.store.manifest import TABLES_DIR, published_table_files, read_manifest, table_file


@dataclass(frozen=True)
class Garbage:
    """One removable prefix or file, relative to the catalog root, and its size in bytes."""

    path: str
    bytes: int


def find_garbage(location: str | Path | CatalogLocation) -> list[Garbage]:
    """Shard prefixes and table files of the catalog that no published table names (see the module doc)."""
    location = CatalogLocation.parse(location)
    manifest = read_manifest(location)
    images_file = table_file(location, "images", manifest)
    if images_file is None:
        raise FileNotFoundError(f"{location.url} holds no catalog: no published images table")
    named = {
        p for p in location.read_parquet(images_file, columns=["shard_path"]).column("shard_path").to_pylist() if p
    }
    found = []
    for dataset in location.list(SHARDS_DIR):
        for entry in location.list(f"{SHARDS_DIR}/{dataset}"):
            relative = f"{SHARDS_DIR}/{dataset}/{entry}"
            if relative not in named:
                found.append(Garbage(relative, location.size_under(relative)))
    tables = published_table_files(location)
    for entry in location.list(TABLES_DIR):
        relative = f"{TABLES_DIR}/{entry}"
        if relative not in tables:
            found.append(Garbage(relative, location.size_under(relative)))
    return found


def collect_garbage(location: str | Path | CatalogLocation, dry_run: bool = False, owner: str = "") -> list[Garbage]:
    """Remove (unless `dry_run`) what `find_garbage` finds, holding the catalog's write lock; returns it."""
    location = CatalogLocation.parse(location)
    location.check_access(for_writing=not dry_run)
    if table_file(location, "images") is None:
        raise FileNotFoundError(f"{location.url} holds no catalog: no published images table")
    with catalog_write_lock(location, owner=owner or "sammed3d catalog gc"):
        garbage = find_garbage(location)
        if not dry_run:
            for item in garbage:
                location.remove_prefix(item.path)
    return garbage


def add_arguments(catalog_commands: argparse._SubParsersAction) -> None:
    """`sammed3d catalog gc LOCATION [--dry-run]`."""
    gc = catalog_commands.add_parser("gc", help="remove shards and table files no published table names")
    gc.add_argument("root", help="catalog folder or s3:// URL")
    gc.add_argument("--dry-run", action="store_true", help="only list what would be removed")


def run(args: argparse.Namespace) -> int:
    garbage = collect_garbage(args.root, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for item in garbage:
        print(f"{verb} {item.path} ({item.bytes} bytes)")
    total = sum(item.bytes for item in garbage)
    freed = "would free" if args.dry_run else "freed"
    url = CatalogLocation.parse(args.root).url
    print(f"{verb} {len(garbage)} unreferenced prefixes/files of {url}; {freed} {total} bytes")
    return 0
