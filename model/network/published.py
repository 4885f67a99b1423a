"""The published SAM-Med3D checkpoint layout (``vit_b_ori``), loaded into our network.

Published layout supported (the one written by the SAM-Med3D training script for
``vit_b_ori``): a dict whose ``model_state_dict`` holds segment-anything style names
such as ``image_encoder.blocks.{i}.attn.rel_pos_d`` or ``mask_decoder.output_upscaling.0.weight``;
:data:`PUBLISHED_KEY_RULES` lists every accepted name and its counterpart here. Other
entries of that dict (optimizer state, losses, args) are ignored.

Loading is strict on names and shapes, but not output-identical to the published code:
the published prompt encoder encodes the dense token grid with its first two axes
swapped relative to the clicks, while ours encodes both in (z, y, x). The published
decoder learned with that mismatch, so expect to fine-tune after loading.
"""

from __future__ import annotations

import argparse
import os
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


def _published_state_dict(source: str | os.PathLike | Mapping[str, Any]) -> Mapping[str, torch.Tensor]:
    if isinstance(source, Mapping):
        payload = source
    else:
        # The published training script stores its argparse arguments next to the weights.
        with torch.serialization.safe_globals([argparse.Namespace]):
            payload = torch.load(source, map_location="cpu", weights_only=True)
    if "model_state_dict" not in payload:
        raise ValueError("published checkpoint has no 'model_state_dict' entry")
    return payload["model_state_dict"]


def load_published_checkpoint(source: str | os.PathLike | Mapping[str, Any]) -> tuple[Sam3D, list[str]]:
    """Load the published SAM-Med3D ``vit_b_ori`` weights into our model, strictly.

    Every published key must map (see :func:`published_to_ours`) to a distinct
    parameter of ours with the same shape, and every parameter of ours except
    NOT_IN_PUBLISHED must be covered.

    Args:
        source (str | PathLike | Mapping): checkpoint file, opened with ``weights_only=True``
            (argparse.Namespace allowed), or its already-loaded dict; a file that stores
            other Python objects must be loaded by the caller, from a trusted source.

    Returns:
        model (Sam3D): ``vit_b_ori`` in reference attention mode.
        not_loaded (list[str]): our names left at their initial values (the box-corner embeddings).
    """
    published = _published_state_dict(source)
    model = build_model("vit_b_ori", attention_mode="reference")
    ours = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    errors = []
    for key, value in published.items():
        try:
            name = published_to_ours(key)
        except KeyError as exc:
            errors.append(str(exc))
            continue
        if name not in ours:
            errors.append(f"{key} maps to {name}, which the model does not have")
        elif name in loaded:
            errors.append(f"{key} maps to {name}, already loaded from another key")
        elif tuple(value.shape) != tuple(ours[name].shape):
            errors.append(f"{key}: shape {tuple(value.shape)} != {name} {tuple(ours[name].shape)}")
        else:
            loaded[name] = value.to(ours[name].dtype)
    not_loaded = sorted(set(ours) - set(loaded))
    missing = [name for name in not_loaded if name not in NOT_IN_PUBLISHED]
    if missing:
        errors.append(f"published checkpoint lacks {missing}")
    if errors:
        raise ValueError("published checkpoint does not match vit_b_ori:\n" + "\n".join(errors))
    model.load_state_dict({**ours, **loaded}, strict=True)
    return model, not_loaded
