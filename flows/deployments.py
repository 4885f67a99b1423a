"""The `curate` flow as a Prefect deployment, the quick way: `sammed3d serve`.

Two ways to run curation from a Prefect server (docs/deployment.md):

- `prefect.yaml` (repository root): deployment `curate/process-pool` on the process work pool
  `sammed3d-process`, executed by `prefect worker start --pool sammed3d-process`; docker-compose.yml
  sets this up with a PostgreSQL-backed server and a Dask cluster.
- `sammed3d serve` (this module): no work pool; the serving process registers deployment `curate/<name>`
  and runs each of its flow runs in a subprocess (Prefect's `serve`) until interrupted.

Both take the same typed parameters (CurationConfig shows as a form in the Prefect UI).
"""

from __future__ import annotations

import argparse
from pathlib import Path

WORK_POOL = "sammed3d-process"
SERVE_DEPLOYMENT = "serve"


def add_arguments(subparsers: argparse._SubParsersAction) -> None:
    """Add the `serve` subcommand to the `sammed3d` command line."""
    serve = subparsers.add_parser(
        "serve",
        help="serve the curate flow as a Prefect deployment (runs flow runs here; needs PREFECT_API_URL)",
    )
    serve.add_argument("--name", default=SERVE_DEPLOYMENT, help="deployment name: curate/NAME (default serve)")
    serve.add_argument("--sources", nargs="+", help="default dataset folders of the deployment's runs")
    serve.add_argument("--catalog", help="default catalog (folder or s3:// URL) of the deployment's runs")
    serve.add_argument("--dask", metavar="ADDRESS", help="default Dask scheduler of the deployment's runs")
    serve.add_argument("--limit", type=int, metavar="N", help="run at most N flow runs at once (default: no limit)")


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted. Bad arguments raise FileNotFoundError or ValueError with one sentence."""
    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be at least 1")
    for source in args.sources or []:
        if not Path(source).exists():
            raise FileNotFoundError(f"source {source} does not exist")
    from prefect.settings import get_current_settings

    from catalog.store.location import CatalogLocation

    if not get_current_settings().api.url:
        # Without a server Prefect would start a temporary one inside this process: no UI, gone on exit.
        raise ValueError("sammed3d serve needs a Prefect server: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")
    defaults = {
        "sources": [str(Path(s).resolve()) for s in args.sources] if args.sources else None,
        "catalog": CatalogLocation.parse(args.catalog).absolute if args.catalog else None,
        "dask_address": args.dask,
    }
    from prefect import serve
    from prefect.deployments.runner import EntrypointType

    from flows.curate import curate

    # By module path, each run imports the flow afresh (`python -m prefect.engine`), as a worker does.
    # `curate.serve()` would instead pickle the flow function by value into the run's process, where the
    # string annotations of flows/curate.py (postponed evaluation) no longer resolve: CurationConfig.
    deployment = curate.to_deployment(
        name=args.name,
        parameters={key: value for key, value in defaults.items() if value is not None},
        description="Curate datasets into the Zarr/Parquet catalog (sammed3d serve).",
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    serve(deployment, limit=args.limit)
    return 0
