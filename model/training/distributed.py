"""One process of a (possibly) distributed run: rank, world size, device, process group.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (and MASTER_ADDR/PORT); without them the run is one process.
The process group uses NCCL on CUDA and Gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessContext:
    """Where this process stands in the run."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, metrics and the progress bar."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int) -> torch.device:
    """"auto" -> this process's CUDA device when CUDA is available, else CPU; other names as given."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def start_process(device_name: str) -> ProcessContext:
    """Read the torchrun environment, pick the device and, for several processes, join the process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return ProcessContext(rank=rank, world_size=world_size, device=device)


def end_process(context: ProcessContext) -> None:
    """Leave the process group (when this run joined one)."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_processes(value: float, context: ProcessContext) -> float:
    """Average a number over all processes (for logging)."""
    if not context.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / context.world_size


def rank0_decides(flag: bool, context: ProcessContext) -> bool:
    """Rank 0's `flag` on every process: a decision taken from a clock must be the same everywhere."""
    if not context.distributed:
        return flag
    value = torch.tensor([float(flag)], device=context.device)
    dist.broadcast(value, src=0)
    return bool(value.item())
