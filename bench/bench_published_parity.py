"""Parity of published SAM-Med3D weights here with the published code; prints a Markdown table.

Loads the stand-in weights of ``../shared/fixtures/published_parity`` (recipe.py) in the published layout and
compares, side by side in one run, what the network computes with the published convention (what
``load_published_checkpoint`` returns) and with our native convention on the same weights (what loading
did before issue 12), against the published outputs in expected.npz: worst |ours - published| / max
|published| of the image embedding and of each prompt case's low-resolution logits and IoU, float32, CPU.
The bar is < 1e-4.

Usage: python bench/bench_published_parity.py [--threads N]   (fixtures: $SAMMED3D_PUBLISHED_FIXTURES)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import build_model, load_published_checkpoint  # noqa: E402
from tests.model.published_fixture import fixtures_dir, parity_errors, published_state_dict  # noqa: E402

BAR = 1e-4


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not (fixtures_dir() / "expected.npz").is_file():
        print(f"fixtures not found at {fixtures_dir()}", file=sys.stderr)
        return 2
    published, _ = load_published_checkpoint({"model_state_dict": published_state_dict()})
    native = build_model("vit_b_ori", attention_mode="reference", convention="native")
    native.load_state_dict(published.state_dict())
    start = time.perf_counter()
    ours = parity_errors(published)
    seconds = time.perf_counter() - start
    before = parity_errors(native)
    print(f"fixtures: {fixtures_dir()}; {args.threads} threads; published-convention run {seconds:.1f} s\n")
    print("| output | published convention | native convention (same weights) |")
    print("|---|---|---|")
    for key in ours:
        if key.endswith("mask_voxels"):
            print(f"| {key} (voxels off) | {ours[key]:.0f} | {before[key]:.0f} |")
        else:
            print(f"| {key} | {ours[key]:.2e} | {before[key]:.2e} |")
    worst = max(v for k, v in ours.items() if not k.endswith("mask_voxels"))
    verdict = "meets" if worst < BAR else "MISSES"
    print(f"\nworst relative error, published convention: {worst:.2e} ({verdict} < {BAR:g})")
    return 0 if worst < BAR else 1


if __name__ == "__main__":
    raise SystemExit(main())
