"""Training checkpoints: everything an exact resume needs, loadable with ``weights_only=True``.

A checkpoint is our model checkpoint (:func:`model.network.checkpoint.save_checkpoint`) whose ``extra`` holds the
optimiser and scheduler state, the step, the RNG states of torch / numpy / python (/ CUDA) as tensors and
numbers, and the run's configuration as plain values. Files are ``out/checkpoints/step_XXXXXXX.pt``,
written under a temporary name and renamed, so a killed run never leaves half a checkpoint.
"""

from __future__ import annotations

import os
import random
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.network.checkpoint import read_checkpoint, save_checkpoint
from model.network.sam3d import Sam3D

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"step_(\d{7,})\.pt")


def capture_rng_states() -> dict[str, Any]:
    """RNG states of torch (CPU and CUDA), numpy's global generator and python's ``random``, as tensors/numbers."""
    numpy_state = np.random.get_state(legacy=False)
    version, python_state, gauss = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
        "numpy_pos": int(numpy_state["state"]["pos"]),
        "numpy_has_gauss": int(numpy_state["has_gauss"]),
        "numpy_gauss": float(numpy_state["gauss"]),
        "python_version": int(version),
        "python_state": torch.tensor(python_state, dtype=torch.int64),
        "python_gauss": gauss,
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_states` (CUDA states only when CUDA is available)."""
    torch.set_rng_state(states["torch"])
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": states["numpy_key"].numpy().astype(np.uint32), "pos": states["numpy_pos"]},
            "has_gauss": states["numpy_has_gauss"],
            "gauss": states["numpy_gauss"],
        }
    )
    random.setstate((states["python_version"], tuple(int(v) for v in states["python_state"]), states["python_gauss"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def checkpoint_path(out: str | Path, step: int) -> Path:
    return Path(out) / CHECKPOINT_DIR / f"step_{step:07d}.pt"


def list_checkpoints(out: str | Path) -> list[Path]:
    """Checkpoints of a run folder, oldest step first."""
    folder = Path(out) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def save_training_state(
    out: str | Path,
    model: Sam3D,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    config: dict[str, Any],
    keep: int,
    elapsed_s: float = 0.0,
) -> Path:
    """Write the checkpoint of ``step`` atomically and delete all but the newest ``keep``.

    Args:
        out (str | Path): run folder.
        model, optimizer, scheduler: the training objects (the bare model, not a DDP wrapper).
        step (int): optimiser steps done.
        config (dict): the run's configuration, JSON-like values only.
        keep (int): checkpoints to keep.
        elapsed_s (float): training seconds so far, over all resumed runs.

    Returns:
        Path of the new checkpoint.
    """
    path = checkpoint_path(out, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
    extra = {
        "step": int(step),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": capture_rng_states(),
        "config": config,
        "elapsed_s": float(elapsed_s),
    }
    save_checkpoint(tmp, model, extra=extra)
    os.replace(tmp, path)
    for old in list_checkpoints(out)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Payload of a training checkpoint (weights_only): model_state_dict and extra (step, optimizer, ...)."""
    payload = read_checkpoint(path)
    if "step" not in payload["extra"] or "optimizer" not in payload["extra"]:
        raise ValueError(f"{path} holds model weights only, not a training state to resume from")
    return payload
