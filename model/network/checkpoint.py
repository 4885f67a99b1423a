"""Our checkpoint format: weights plus the registry name, attention mode, click map and convention to
rebuild the network.

Files are plain tensors, numbers and strings, loaded with ``weights_only=True``. The published
SAM-Med3D layout is read by :mod:`model.network.published`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from model.network.registry import build_model
from model.network.sam3d import Sam3D

CHECKPOINT_FORMAT = "sammed3d-curator/sam3d-v1"


def save_checkpoint(path: str | os.PathLike, model: Sam3D, extra: Mapping[str, Any] | None = None) -> None:
    """Write our checkpoint format.

    Args:
        path (str | PathLike): destination file.
        model (Sam3D): model to save; its registry name, attention mode, click map, convention, fine path
            and fine clicks are recorded.
        extra (Mapping | None): additional entries (tensors, numbers, strings, lists, dicts
            only, so the file stays loadable with ``weights_only=True``).
    """
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "model_name": model.name,
            "attention_mode": model.attention_mode,
            "click_map": model.click_map,
            "convention": model.convention,
            "fine_path": model.fine_path,
            "fine_clicks": model.fine_clicks,
            "model_state_dict": model.state_dict(),
            "extra": dict(extra or {}),
        },
        path,
    )


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load the raw payload of our checkpoint on CPU with ``weights_only=True``.

    Returns:
        dict with keys format, model_name, attention_mode, click_map, convention, fine_path, fine_clicks,
        model_state_dict, extra (click_map, convention, fine_path and fine_clicks absent in files written
        before they existed).
    """
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    return payload


def checkpoint_layout(payload: Mapping[str, Any]) -> tuple[str, str, bool, str, bool, bool]:
    """(model name, attention mode, click map, convention, fine path, fine clicks) recorded in our checkpoint
    payload, the arguments of :func:`build_model` in order.

    Files written before the click map, the convention, the fine path or the fine clicks existed have no
    click map, the native convention, no fine path and no fine clicks.
    """
    return (
        payload["model_name"],
        payload["attention_mode"],
        bool(payload.get("click_map", False)),
        str(payload.get("convention", "native")),
        bool(payload.get("fine_path", False)),
        bool(payload.get("fine_clicks", False)),
    )


def model_layout(model: Sam3D) -> tuple[str, str, bool, str, bool, bool]:
    """The model's (name, attention mode, click map, convention, fine path, fine clicks), as
    :func:`checkpoint_layout`."""
    return (model.name, model.attention_mode, model.click_map, model.convention, model.fine_path, model.fine_clicks)


def load_model_weights(path: str | os.PathLike, model: Sam3D | None = None) -> Sam3D:
    """Load our checkpoint strictly.

    Args:
        path (str | PathLike): file written by :func:`save_checkpoint`.
        model (Sam3D | None): target; built from the recorded name and attention mode when None.

    Returns:
        Sam3D holding the checkpoint weights.
    """
    return model_from_payload(read_checkpoint(path), model)


def model_from_payload(payload: Mapping[str, Any], model: Sam3D | None = None) -> Sam3D:
    """:func:`load_model_weights` on an already-read payload (see :func:`read_checkpoint`)."""
    layout = checkpoint_layout(payload)
    if model is None:
        model = build_model(*layout)
    elif model_layout(model) != layout:
        raise ValueError(
            "checkpoint holds {}/{}/click_map={}/convention={}/fine_path={}/fine_clicks={}, "
            "model is {}/{}/click_map={}/convention={}/fine_path={}/fine_clicks={}".format(
                *layout, *model_layout(model)
            )
        )
    model.load_state_dict(payload["model_state_dict"], strict=True)
    return model
