"""Curation speed before and after a change (issue 14: left/right decided from the data), side by side.

Two worker processes curate the same REAL cases, one importing the project from a git revision (unpacked
with `git archive` into a temporary folder), one from this checkout; the parent asks them in turn, case by
case and round by round (alternating who goes first), and reports per case the median seconds of each,
and of the read/write floor (only reading the sources and writing the same shards, in the new worker).

    .venv/bin/python bench/bench_laterality.py --baseline c9c64ef [--rounds 5] [--raw ../shared/data/raw]
        [--case ts_ct_merged ...] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKER = r"""
import json, os, sys, time, tempfile, shutil
from pathlib import Path
import numpy as np, SimpleITK as sitk
import torch
torch.set_num_threads(1)
from catalog.writer import write_shard
from pipeline.config import CurationConfig
from pipeline.curate import curate_case
from pipeline.importers import discover_dataset_dirs, read_dataset
import pipeline
config = CurationConfig()
wanted = set(sys.argv[3:])
cases = [c for d in discover_dataset_dirs(Path(sys.argv[1])) for c in read_dataset(d) if not wanted or c.case_id in wanted]
clock = time.process_time if sys.argv[2] == "cpu" else time.perf_counter
out = Path(tempfile.mkdtemp(prefix="bench-laterality-"))
stored = {}
def ours(case):
    result = curate_case(case, config)
    for image in result.images:
        if image.image is not None:
            write_shard(out, image.row["shard_path"], image.image, image.label, {})
    return result
def floor(case):
    sitk.GetArrayFromImage(sitk.ReadImage(str(case.label_path)))
    for channel in case.channels:
        sitk.GetArrayFromImage(sitk.ReadImage(str(channel.path)))
    for shard_path, image, label in stored[case.case_id]:
        write_shard(out, shard_path, image, label, {})
for case in cases:  # warm-up, and the arrays the floor writes
    result = ours(case)
    stored[case.case_id] = [(i.row["shard_path"], i.image, i.label) for i in result.images if i.image is not None]
print(json.dumps({"cases": [c.case_id for c in cases], "images": [len(stored[c.case_id]) for c in cases],
                  "pipeline": pipeline.__file__}), flush=True)
for line in sys.stdin:
    kind, index = line.split()
    case = cases[int(index)]
    start = clock()
    ours(case) if kind == "ours" else floor(case)
    print(clock() - start, flush=True)
shutil.rmtree(out, ignore_errors=True)
"""


def start_worker(source_root: Path, raw: Path, clock: str, cases: list[str]) -> tuple[subprocess.Popen, dict]:
    env = {**os.environ, "PYTHONPATH": str(source_root), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(raw), clock, *cases], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=env, cwd=source_root,
    )
    return process, json.loads(process.stdout.readline())


def ask(process: subprocess.Popen, kind: str, index: int) -> float:
    process.stdin.write(f"{kind} {index}\n")
    process.stdin.flush()
    return float(process.stdout.readline())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git revision to compare with (e.g. c9c64ef)")
    parser.add_argument("--raw", default=os.environ.get("SAMMED3D_RAW_DATA", str(REPO.parent / "shared/data/raw")))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--case", action="append", help="only this case id (repeatable), e.g. --case ts_ct_merged")
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall",
        help="wall: elapsed seconds (a quiet machine); cpu: CPU seconds of the worker, all its threads (a busy one)",
    )
    args = parser.parse_args()
    raw = Path(args.raw)
    if not raw.is_dir():
        print(f"bench_laterality: error: real sample data not found at {raw} (use --raw)", file=sys.stderr)
        return 2
    before_root = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline], capture_output=True, check=True)
    except subprocess.CalledProcessError as error:
        print(f"bench_laterality: error: git archive {args.baseline} failed: {error.stderr.decode().strip()}",
              file=sys.stderr)
        return 2
    subprocess.run(["tar", "-x", "-C", str(before_root)], input=archive.stdout, check=True)
    before, info = start_worker(before_root, raw, args.clock, args.case or [])
    after, info_after = start_worker(REPO, raw, args.clock, args.case or [])
    assert info["cases"] == info_after["cases"], "both versions must see the same cases"
    print(f"# before: {info['pipeline']}\n# after:  {info_after['pipeline']}\n# {args.rounds} rounds, "
          f"{os.cpu_count()} cores, {args.clock} clock, medians in ms per image", flush=True)
    times = {name: [[] for _ in info["cases"]] for name in ("before", "after", "floor")}
    chosen = [i for i, _ in enumerate(info["cases"]) if info["images"][i]]
    for round_index in range(args.rounds):
        for index in chosen:
            order = ("before", "after") if (round_index + index) % 2 == 0 else ("after", "before")
            for name in order:
                times[name][index].append(ask(before if name == "before" else after, "ours", index))
            times["floor"][index].append(ask(after, "floor", index))
        print(f"\n# after round {round_index + 1} of {args.rounds}", flush=True)
        print_table(info, times, chosen)
    for process in (before, after):
        process.stdin.close()
        process.wait()
    shutil.rmtree(before_root, ignore_errors=True)
    return 0


def print_table(info: dict, times: dict, chosen: list[int]) -> None:
    print("\n| case | images | before (ms/image) | after (ms/image) | floor (ms/image) | after / before "
          "| before / floor | after / floor |")
    print("|---|---|---|---|---|---|---|---|")
    totals = {name: 0.0 for name in times}
    n_images = 0
    for index in chosen:
        case, images = info["cases"][index], info["images"][index]
        median = {name: statistics.median(times[name][index]) for name in times}
        for name in totals:
            totals[name] += median[name]
        n_images += images
        print(f"| {case} | {images} | {median['before'] / images * 1000:.1f} | {median['after'] / images * 1000:.1f} "
              f"| {median['floor'] / images * 1000:.1f} | {median['after'] / median['before']:.2f} "
              f"| {median['before'] / median['floor']:.2f} | {median['after'] / median['floor']:.2f} |")
    print(f"| **all** | {n_images} | {totals['before'] / n_images * 1000:.1f} | {totals['after'] / n_images * 1000:.1f} "
          f"| {totals['floor'] / n_images * 1000:.1f} | {totals['after'] / totals['before']:.2f} "
          f"| {totals['before'] / totals['floor']:.2f} | {totals['after'] / totals['floor']:.2f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
