"""CPU benchmark of the promptable 3D model; prints a Markdown table.

Measures, on 2 threads:
  1. vit_b_ori image-encoder forward (batch 1, no_grad), native vs reference attention;
  2. Predictor latency of one extra click on a cached embedding (vit_tiny, vit_b_ori),
     including the trilinear upsampling of the logits to 128^3;
  3. peak resident memory of one vit_tiny training step (forward + backward, single mask,
     batch 2), measured in a fresh subprocess as the VmHWM line of /proc/self/status
     (Linux). tracemalloc does not see torch's native allocations, and
     getrusage().ru_maxrss survives fork+exec, so a child would report the parent's peak.

The two encoder modes are timed alternately so that load from other processes on the
machine hits both alike; the load average is printed with the table.

Usage: python bench/bench_model.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import Predictor, build_model  # noqa: E402

THREADS = 2


def timings(fn, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def ms(times: list[float]) -> str:
    """Median and minimum; the minimum is the least disturbed by other load on the machine."""
    return f"{statistics.median(times) * 1e3:.1f} ms (min {min(times) * 1e3:.1f})"


def encoder_times(repeats: int) -> dict[str, list[float]]:
    image = torch.randn(1, 1, 128, 128, 128)
    encoders = {
        mode: build_model("vit_b_ori", attention_mode=mode).image_encoder.eval() for mode in ("native", "reference")
    }
    times: dict[str, list[float]] = {mode: [] for mode in encoders}
    with torch.no_grad():
        for encoder in encoders.values():
            encoder(image)
        for _ in range(repeats):
            for mode, encoder in encoders.items():
                start = time.perf_counter()
                encoder(image)
                times[mode].append(time.perf_counter() - start)
    return times


def click_latency(name: str, repeats: int) -> list[float]:
    predictor = Predictor(build_model(name))
    predictor.set_image(torch.randn(128, 128, 128))
    _, _, lowres = predictor.predict([[64.0, 64.0, 64.0]], [1])
    points = [[64.0, 64.0, 64.0], [40.0, 70.0, 90.0]]
    return timings(lambda: predictor.predict(points, [1, 0], mask_input=lowres), repeats, warmup=2)


def peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def train_step_child(steps: int = 4) -> None:
    """Runs in a fresh interpreter so the high-water mark covers model setup and the steps only."""
    torch.set_num_threads(THREADS)
    model = build_model("vit_tiny").train()
    image = torch.randn(2, 1, 128, 128, 128)
    points = torch.tensor([[[64.0, 64.0, 64.0]]]).expand(2, -1, -1)
    labels = torch.ones(2, 1, dtype=torch.long)
    target = (torch.rand(2, 1, 32, 32, 32) > 0.5).float()
    mask_prompt = torch.zeros(2, 1, 32, 32, 32)
    before = peak_rss_mib()
    times = []
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        logits, iou = model(image, points, labels, mask_prompt=mask_prompt)
        loss = F.binary_cross_entropy_with_logits(logits, target) + F.mse_loss(iou, torch.full_like(iou, 0.5))
        loss.backward()
        times.append(time.perf_counter() - start)
    result = {"before_mib": before, "peak_mib": peak_rss_mib(), "seconds": times[1:]}
    print(json.dumps(result))


def train_step_memory() -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--train-step-child"], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per encoder measurement")
    parser.add_argument("--train-step-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_step_child:
        train_step_child()
        return
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]

    enc = encoder_times(args.repeats)
    tiny_click = click_latency("vit_tiny", 20)
    big_click = click_latency("vit_b_ori", 10)
    mem = train_step_memory()

    speedup = statistics.median(enc["reference"]) / statistics.median(enc["native"])
    speedup_min = min(enc["reference"]) / min(enc["native"])
    rows = [
        ("vit_b_ori encoder fwd B=1, native (512 tokens/block)", ms(enc["native"]), ""),
        ("vit_b_ori encoder fwd B=1, reference (14^3 padded windows)", ms(enc["reference"]), ""),
        ("speed-up native vs reference", f"{speedup:.2f}x (of mins {speedup_min:.2f}x)", ">= 3x"),
        ("vit_tiny extra click (cached embedding)", ms(tiny_click), "< 50 ms"),
        ("vit_b_ori extra click (cached embedding)", ms(big_click), ""),
        ("vit_tiny train step B=2: peak RSS of the process", f"{mem['peak_mib']:.0f} MiB", ""),
        ("vit_tiny train step B=2: peak RSS above pre-step peak", f"{mem['peak_mib'] - mem['before_mib']:.0f} MiB", ""),
        ("vit_tiny train step B=2: time (steps 2-4)", ms(mem["seconds"]), ""),
    ]
    print(
        f"torch {torch.__version__}, {THREADS} threads, {args.repeats} interleaved encoder runs per mode; "
        f"1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print("| measurement | value | target |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
