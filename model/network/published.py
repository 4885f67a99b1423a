"""The published SAM-Med3D checkpoint layout (``vit_b_ori``), loaded into our network.

Published layout supported (the one written by the SAM-Med3D training script for
``vit_b_ori``): a dict whose ``model_state_dict`` holds segment-anything style names
such as ``image_encoder.blocks.{i}.attn.rel_pos_d`` or ``mask_decoder.output_upscaling.0.weight``;
:data:`PUBLISHED_KEY_RULES` lists every accepted name and its counterpart here. Other
entries of that dict (optimizer state, losses, args) are ignored.

Loading is strict on names and shapes, and the network it returns computes what the published
code computes (``convention="published"``: its windowed attention, its relative-position
broadcasting and its dense grid with the first two axes swapped relative to the points; checked
against ``../shared/fixtures/published_parity``). Its inputs follow the published convention too:
RAS crops in (x, y, z) order, see :mod:`model.input_convention`.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
from collections.abc import Mapping
from typing import Any

import torch

from model.network.registry import build_model
from model.network.sam3d import Sam3D

# Parameters of ours that the published model does not have: it trained no box corners.
NOT_IN_PUBLISHED = ("prompt_encoder.box_corner_embed",)

_BLOCK = r"image_encoder\.blocks\.(\d+)\."
_OURS_BLOCK = r"image_encoder.blocks.\1."
_LAYER = r"mask_decoder\.transformer\.layers\.(\d+)\."
_OURS_LAYER = r"mask_decoder.transformer.blocks.\1."
_WB = r"(weight|bias)"

# (published name regex, our name template); matched with re.fullmatch, first hit wins.
PUBLISHED_KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"image_encoder\.patch_embed\.proj\." + _WB, r"image_encoder.patch_embed.\1"),
    (r"image_encoder\.pos_embed", "image_encoder.pos_embed"),
    (_BLOCK + r"norm1\." + _WB, _OURS_BLOCK + r"norm_attn.\2"),
    (_BLOCK + r"attn\.(qkv|proj)\." + _WB, _OURS_BLOCK + r"attn.\2.\3"),
    (_BLOCK + r"attn\.rel_pos_d", _OURS_BLOCK + "attn.rel_pos_z"),
    (_BLOCK + r"attn\.rel_pos_h", _OURS_BLOCK + "attn.rel_pos_y"),
    (_BLOCK + r"attn\.rel_pos_w", _OURS_BLOCK + "attn.rel_pos_x"),
    (_BLOCK + r"norm2\." + _WB, _OURS_BLOCK + r"norm_mlp.\2"),
    (_BLOCK + r"mlp\.lin1\." + _WB, _OURS_BLOCK + r"mlp.fc1.\2"),
    (_BLOCK + r"mlp\.lin2\." + _WB, _OURS_BLOCK + r"mlp.fc2.\2"),
    (r"image_encoder\.neck\.0\.weight", "image_encoder.neck.reduce.weight"),
    (r"image_encoder\.neck\.1\." + _WB, r"image_encoder.neck.reduce_norm.\1"),
    (r"image_encoder\.neck\.2\.weight", "image_encoder.neck.refine.weight"),
    (r"image_encoder\.neck\.3\." + _WB, r"image_encoder.neck.refine_norm.\1"),
    (r"prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix", "prompt_encoder.fourier.gaussian_matrix"),
    # The published encoder adds point_embeddings[0] to label 0 and [1] to label 1.
    (r"prompt_encoder\.point_embeddings\.0\.weight", "prompt_encoder.negative_point_embed"),
    (r"prompt_encoder\.point_embeddings\.1\.weight", "prompt_encoder.positive_point_embed"),
    (r"prompt_encoder\.not_a_point_embed\.weight", "prompt_encoder.not_a_point_embed"),
    (r"prompt_encoder\.mask_downscaling\.0\." + _WB, r"prompt_encoder.mask_downscaler.conv1.\1"),
    (r"prompt_encoder\.mask_downscaling\.1\." + _WB, r"prompt_encoder.mask_downscaler.norm1.\1"),
    (r"prompt_encoder\.mask_downscaling\.3\." + _WB, r"prompt_encoder.mask_downscaler.conv2.\1"),
    (r"prompt_encoder\.mask_downscaling\.4\." + _WB, r"prompt_encoder.mask_downscaler.norm2.\1"),
    (r"prompt_encoder\.mask_downscaling\.6\." + _WB, r"prompt_encoder.mask_downscaler.proj.\1"),
    (r"prompt_encoder\.no_mask_embed\.weight", "prompt_encoder.no_mask_embed"),
    (_LAYER + r"self_attn\.(q|k|v|out)_proj\." + _WB, _OURS_LAYER + r"self_attn.\2_proj.\3"),
    (_LAYER + r"cross_attn_token_to_image\.(q|k|v|out)_proj\." + _WB, _OURS_LAYER + r"cross_token_to_image.\2_proj.\3"),
    (_LAYER + r"cross_attn_image_to_token\.(q|k|v|out)_proj\." + _WB, _OURS_LAYER + r"cross_image_to_token.\2_proj.\3"),
    (_LAYER + r"norm1\." + _WB, _OURS_LAYER + r"norm_self.\2"),
    (_LAYER + r"norm2\." + _WB, _OURS_LAYER + r"norm_token_to_image.\2"),
    (_LAYER + r"norm3\." + _WB, _OURS_LAYER + r"norm_mlp.\2"),
    (_LAYER + r"norm4\." + _WB, _OURS_LAYER + r"norm_image_to_token.\2"),
    (_LAYER + r"mlp\.lin1\." + _WB, _OURS_LAYER + r"mlp.fc1.\2"),
    (_LAYER + r"mlp\.lin2\." + _WB, _OURS_LAYER + r"mlp.fc2.\2"),
    (
        r"mask_decoder\.transformer\.final_attn_token_to_image\.(q|k|v|out)_proj\." + _WB,
        r"mask_decoder.transformer.final_token_to_image.\1_proj.\2",
    ),
    (r"mask_decoder\.transformer\.norm_final_attn\." + _WB, r"mask_decoder.transformer.norm_final.\1"),
    (r"mask_decoder\.iou_token\.weight", "mask_decoder.iou_token"),
    (r"mask_decoder\.mask_tokens\.weight", "mask_decoder.mask_tokens"),
    (r"mask_decoder\.output_upscaling\.0\." + _WB, r"mask_decoder.upscaler.deconv1.\1"),
    (r"mask_decoder\.output_upscaling\.1\." + _WB, r"mask_decoder.upscaler.norm.\1"),
    (r"mask_decoder\.output_upscaling\.3\." + _WB, r"mask_decoder.upscaler.deconv2.\1"),
    (
        r"mask_decoder\.output_hypernetworks_mlps\.(\d+)\.layers\.(\d+)\." + _WB,
        r"mask_decoder.mask_hypernets.\1.layers.\2.\3",
    ),
    (r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\." + _WB, r"mask_decoder.iou_head.layers.\1.\2"),
)


def published_to_ours(key: str) -> str:
    """Translate one published state-dict key into our parameter/buffer name.

    Args:
        key (str): published name, e.g. ``"image_encoder.blocks.3.attn.rel_pos_d"``.

    Returns:
        str: our name, e.g. ``"image_encoder.blocks.3.attn.rel_pos_z"``.

    Raises:
        KeyError: the name matches no rule of PUBLISHED_KEY_RULES.
    """
    for pattern, template in PUBLISHED_KEY_RULES:
        match = re.fullmatch(pattern, key)
        if match:
            return match.expand(template)
    raise KeyError(f"no mapping for published key {key!r}")


def ours_to_published(name: str) -> str | None:
    """The published key of one of our parameter names (inverse of :func:`published_to_ours`).

    Returns:
        str | None: e.g. ``"image_encoder.blocks.3.attn.rel_pos_d"`` for ``"image_encoder.blocks.3.attn.rel_pos_z"``;
        None when the published layout has no such parameter (NOT_IN_PUBLISHED).
    """
    for pattern, template in PUBLISHED_KEY_RULES:
        groups = re.findall(r"\(([^()]*)\)", pattern)
        order = [int(n) for n in re.findall(r"\\(\d)", template)]
        literals = re.split(r"\\\d", template)
        regex = "".join(
            re.escape(part) + (f"({groups[order[i] - 1]})" if i < len(order) else "") for i, part in enumerate(literals)
        )
        match = re.fullmatch(regex, name)
        if match:
            values = {number: match.group(i + 1) for i, number in enumerate(order)}
            counter = iter(range(1, len(groups) + 1))
            key = re.sub(r"\([^()]*\)", lambda _: values[next(counter)], pattern).replace("\\.", ".")
            if published_to_ours(key) == name:
                return key
    return None


def _short(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def open_checkpoint_file(path: str | os.PathLike) -> Any:
    """``torch.load`` on CPU with ``weights_only=True`` (argparse.Namespace allowed).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file needs arbitrary pickled Python objects (refused: unpickling them can run
            any code) or is not a torch file at all; the message names the file and the reason.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file {os.fspath(path)!r} does not exist")
    try:
        # The published training script stores its argparse arguments next to the weights.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        reason = next((line.strip() for line in first if "GLOBAL" in line or "Unsupported" in line), first[0])
        raise ValueError(
            f"refusing to load {os.fspath(path)!r}: it needs arbitrary pickled Python objects ({reason}), and "
            "unpickling those can run any code. Only tensors, numbers, strings, containers and "
            "argparse.Namespace are accepted; re-save the weights as a plain state dict from a trusted copy."
        ) from None
    except RuntimeError as exc:
        raise ValueError(f"{os.fspath(path)!r} is not a readable torch checkpoint: {exc}") from None


def _published_state_dict(source: str | os.PathLike | Mapping[str, Any]) -> Mapping[str, torch.Tensor]:
    payload = source if isinstance(source, Mapping) else open_checkpoint_file(source)
    if not isinstance(payload, Mapping):
        raise ValueError(f"published checkpoint holds a {type(payload).__name__}, not a dict")
    if "model_state_dict" in payload:
        state = payload["model_state_dict"]
    elif any(str(key).startswith("image_encoder.") for key in payload):
        state = payload  # a bare state dict
    else:
        raise ValueError(
            "published checkpoint has no 'model_state_dict' entry "
            f"(top-level keys: {_short(sorted(map(str, payload)))})"
        )
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("published checkpoint's 'model_state_dict' is not a dict of tensors")
    return state


def _size_hint(state: Mapping[str, torch.Tensor]) -> str:
    """A sentence about the encoder/decoder sizes the state dict holds, when they are not vit_b_ori's."""
    hints = []
    pos = state.get("image_encoder.pos_embed")
    if pos is not None and pos.shape[-1] != 768:
        known = {1024: "vit_l", 1280: "vit_h"}.get(int(pos.shape[-1]), "unknown")
        hints.append(f"its encoder width is {int(pos.shape[-1])} ({known}), vit_b_ori's is 768")
    depth = {int(m.group(1)) for k in state if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))}
    if depth and len(depth) != 12:
        hints.append(f"it has {len(depth)} encoder blocks, vit_b_ori has 12")
    tokens = state.get("mask_decoder.iou_token.weight")
    if tokens is not None and tokens.shape[-1] != 384:
        hints.append(f"its decoder width is {int(tokens.shape[-1])}, vit_b_ori's is 384")
    return ("; ".join(hints) + ". ") if hints else ""


def load_published_checkpoint(source: str | os.PathLike | Mapping[str, Any]) -> tuple[Sam3D, list[str]]:
    """Load the published SAM-Med3D ``vit_b_ori`` weights (SAM-Med3D, SAM-Med3D-turbo) into our model.

    Every published key must map (see :func:`published_to_ours`) to a distinct
    parameter of ours with the same shape, and every parameter of ours except
    NOT_IN_PUBLISHED must be covered.

    Args:
        source (str | PathLike | Mapping): checkpoint file, opened with ``weights_only=True``
            (argparse.Namespace allowed), or its already-loaded dict (with ``model_state_dict``,
            or the bare state dict).

    Returns:
        model (Sam3D): ``vit_b_ori`` in reference attention mode and the published convention, no
            click map: it computes what the published code computes.
        not_loaded (list[str]): our names left at their initial values (the box-corner embeddings).

    Raises:
        ValueError: keys unknown, missing or of the wrong shape (all named, with a hint when the file
            holds another model size), or a file that needs arbitrary pickled objects.
    """
    published = _published_state_dict(source)
    model = build_model("vit_b_ori", attention_mode="reference", convention="published")
    ours = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    unknown, duplicate, misshaped = [], [], []
    for key, value in published.items():
        try:
            name = published_to_ours(key)
        except KeyError:
            unknown.append(key)
            continue
        if name not in ours:
            unknown.append(key)
        elif name in loaded:
            duplicate.append(f"{key} (-> {name})")
        elif tuple(value.shape) != tuple(ours[name].shape):
            misshaped.append(f"{key} {tuple(value.shape)} (vit_b_ori: {tuple(ours[name].shape)})")
        else:
            loaded[name] = value.to(ours[name].dtype)
    present = {published_to_ours(k) for k in published if k not in unknown}
    missing = sorted(
        ours_to_published(name) or name for name in set(ours) - present if name not in NOT_IN_PUBLISHED
    )
    errors = [
        f"{label} keys: {_short(keys)}"
        for label, keys in (("missing", missing), ("unexpected", unknown), ("mis-shaped", misshaped),
                            ("duplicate", duplicate))
        if keys
    ]
    if errors:
        raise ValueError(
            "checkpoint does not match the published vit_b_ori layout. " + _size_hint(published) + "; ".join(errors)
        )
    model.load_state_dict({**ours, **loaded}, strict=True)
    return model, sorted(set(ours) - set(loaded))
