"""`sammed3d`: the command line. Bad arguments or inputs end with one sentence on stderr, not a traceback.

Subcommands that live in other modules (training, evaluation, inference, serving, catalog tools) are
imported only when they are the command being run, so `sammed3d catalog summary` does not pay for torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

_EXPECTED_ERRORS: tuple[type[Exception], ...] = (FileNotFoundError, ValueError, KeyError)

# command -> (module with add_arguments(subparsers) and run(args), one-line help)
_MODULE_COMMANDS = {
    "train": ("model.training.trainer", "train the network on 128³ patches from a catalog"),
    "evaluate": ("model.evaluation.evaluate", "click-based evaluation (Dice after 1/3/5/10 clicks) with a baseline"),
    "segment": ("model.evaluation.inference", "segment an image from clicks, without ground truth"),
    "serve": ("flows.deployments", "serve the curate flow as a Prefect deployment"),
}
_CATALOG_MODULE_COMMANDS = {
    "show": ("catalog.qc", "QC picture of one mask (axial, coronal, sagittal views)"),
    "leaks": ("catalog.leaks", "list images that are the same scan (duplicates, crops)"),
    "report": ("catalog.dataset_report", "per-dataset report: counts, reasons, histograms, duplicates"),
    "gc": ("catalog.store.gc", "remove shards and table files no published table names"),
}


def _add_module_commands(subparsers, commands: dict, selected: str | None) -> None:
    for name, (module, help_text) in commands.items():
        if name == selected:
            importlib.import_module(module).add_arguments(subparsers)
        else:
            subparsers.add_parser(name, help=help_text)


def _parser(argv: list[str]) -> argparse.ArgumentParser:
    from pipeline.importers import LAYOUTS

    parser = argparse.ArgumentParser(prog="sammed3d", description="SAM-Med3D curation catalog and trainer")
    commands = parser.add_subparsers(dest="command", required=True)
    words = [a for a in argv if not a.startswith("-")]
    selected = words[0] if words else None

    curate = commands.add_parser("curate", help="curate datasets into a Zarr/Parquet catalog")
    curate.add_argument("sources", nargs="+", help="dataset folders or folders of them")
    curate.add_argument("--catalog", required=True, help="catalog folder or s3://bucket/prefix (created if missing)")
    curate.add_argument("--config", help="YAML/JSON file of CurationConfig overrides")
    curate.add_argument("--layout", choices=LAYOUTS, help="input layout (default: detected per folder)")
    dask = curate.add_mutually_exclusive_group()
    dask.add_argument("--dask", metavar="ADDRESS", help="run tasks on this Dask scheduler")
    dask.add_argument("--dask-workers", type=int, metavar="N", help="start a local Dask cluster of N workers")
    curate.add_argument("--threads", type=int, default=2, help="thread-pool size without Dask (default 2)")
    curate.add_argument(
        "--batch-size", type=int, metavar="N", help="cases per Prefect task (default: 4 tasks per worker)"
    )

    catalog = commands.add_parser("catalog", help="inspect a catalog")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", required=True)
    summary = catalog_commands.add_parser("summary", help="counts by dataset, modality, group, status, reason")
    summary.add_argument("root", help="catalog folder or s3:// URL")
    catalog_selected = words[1] if selected == "catalog" and len(words) > 1 else None
    _add_module_commands(catalog_commands, _CATALOG_MODULE_COMMANDS, catalog_selected)

    phantoms = commands.add_parser("phantoms", help="write SYNTHETIC phantom datasets (nnU-Net v2 layout)")
    phantoms.add_argument("out", help="folder to write the datasets into")
    phantoms.add_argument("--seed", type=int, default=0)
    phantoms.add_argument("--ct-cases", type=int, default=4)
    phantoms.add_argument("--mr-cases", type=int, default=3)

    demo = commands.add_parser("demo", help="phantoms -> curate -> train -> evaluate, on embedded synthetic data")
    demo.add_argument("--out", default="demo-output", help="working folder (default ./demo-output)")
    demo.add_argument("--train-steps", type=int, default=400, help="vit_tiny training steps (default 400)")
    demo.add_argument("--train-minutes", type=float, default=5.0, help="or this many minutes (default 5)")
    demo.add_argument("--eval-masks", type=int, default=8, help="masks to evaluate (default 8)")

    _add_module_commands(commands, _MODULE_COMMANDS, selected)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Without a Prefect server, a run starts a temporary one and waits 20 s for it by default: on a busy
    # 2-core machine that start has been seen to take longer. Prefect reads its settings at import.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    args = _parser(argv).parse_args(argv)
    from catalog.lock import CatalogLockedError
    from catalog.reader import CatalogNotFoundError
    from pipeline.importers import DatasetLayoutError

    try:
        return _run(args)
    except (*_EXPECTED_ERRORS, DatasetLayoutError, CatalogNotFoundError, CatalogLockedError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"sammed3d: error: {message}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "curate":
        return _curate(args)
    if args.command == "catalog":
        if args.catalog_command == "summary":
            from catalog.report import print_summary

            print_summary(args.root)
            return 0
        return importlib.import_module(_CATALOG_MODULE_COMMANDS[args.catalog_command][0]).run(args)
    if args.command == "phantoms":
        from pipeline.phantoms import write_phantom_datasets

        for folder in write_phantom_datasets(args.out, seed=args.seed, n_ct=args.ct_cases, n_mr=args.mr_cases):
            print(f"wrote SYNTHETIC dataset {folder}")
        return 0
    if args.command == "demo":
        from flows.demo import run_demo

        return run_demo(
            Path(args.out), train_steps=args.train_steps, train_minutes=args.train_minutes, eval_masks=args.eval_masks
        )
    return importlib.import_module(_MODULE_COMMANDS[args.command][0]).run(args)


def _curate(args: argparse.Namespace) -> int:
    from catalog.store.location import CatalogLocation
    from pipeline.config import CurationConfig

    # Before a Prefect server starts: another scheme, an unreachable endpoint, refused credentials or a
    # missing bucket are one clear sentence, not a folder named "s3:" nor a flow run that fails.
    location = CatalogLocation.parse(args.catalog)
    location.check_access(for_writing=True)
    for source in args.sources:
        if not Path(source).exists():
            raise FileNotFoundError(f"source {source} does not exist")
    if args.threads < 1 or (args.dask_workers is not None and args.dask_workers < 1):
        raise ValueError("--threads and --dask-workers must be at least 1")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    config = CurationConfig.from_file(args.config) if args.config else CurationConfig()
    from flows.curate import curate

    result = curate(
        sources=[str(Path(s).resolve()) for s in args.sources],
        catalog=location.absolute,
        config=config,
        dask_address=args.dask,
        dask_workers=args.dask_workers,
        threads=args.threads,
        layout=args.layout,
        batch_size=args.batch_size,
    )
    print(
        f"catalog {args.catalog}: {result['images']} images, {result['masks']} masks "
        f"({result['curated']} images curated, {result['skipped']} unchanged)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
