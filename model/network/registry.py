"""Model configurations: one generic builder and a registry of named configurations."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from model.network.image_encoder import ImageEncoder3D
from model.network.mask_decoder import MaskDecoder3D
from model.network.prompt_encoder import PromptEncoder3D
from model.network.sam3d import Sam3D


def build_sam3d(
    *,
    name: str,
    encoder_embed_dim: int,
    encoder_depth: int,
    encoder_num_heads: int,
    global_attn_indexes: Sequence[int],
    embed_dim: int,
    decoder_num_heads: int,
    decoder_mlp_dim: int,
    iou_head_hidden_dim: int,
    pe_frequencies: int | None = None,
    window_size: int = 14,
    image_size: int = 128,
    patch_size: int = 16,
    attention_mode: str = "native",
    click_map: bool = False,
    convention: str = "native",
    fine_path: bool = False,
    fine_clicks: bool = False,
) -> Sam3D:
    """Assemble a Sam3D from widths and depths.

    Args:
        name (str): registry name recorded on the model.
        encoder_embed_dim (int): ViT token width.
        encoder_depth (int): ViT blocks.
        encoder_num_heads (int): ViT heads.
        global_attn_indexes (Sequence[int]): blocks kept global in reference mode.
        embed_dim (int): image-embedding / prompt / decoder width C.
        decoder_num_heads (int): heads in the two-way transformer.
        decoder_mlp_dim (int): token MLP width in the two-way transformer.
        iou_head_hidden_dim (int): hidden width of the IoU head.
        pe_frequencies (int | None): Fourier frequencies of the prompt encoder; None means embed_dim // 2.
        window_size (int): reference-mode window edge in tokens.
        image_size (int): input cube edge S in voxels.
        patch_size (int): patch edge; the token grid is G = S // patch_size.
        attention_mode (str): "native" or "reference".
        click_map (bool): the prompt encoder also encodes clicks densely on the token grid
            (``model.network.prompt_encoder.ClickMap``; not in the published model).
        convention (str): "native" (consistent axes everywhere) or "published" (the published code's
            relative-position broadcasting and dense-grid axis swap; needs attention_mode "reference").
        fine_path (bool): the decoder also reads the image and the mask prompt at mask resolution
            (``model.network.mask_decoder.FinePath``; not in the published model).
        fine_clicks (bool): the fine path also reads the clicks at mask resolution (needs fine_path).

    Returns:
        Sam3D taking (B, 1, S, S, S) and returning logits (B, M, 4G, 4G, 4G).
    """
    grid = image_size // patch_size
    encoder = ImageEncoder3D(
        img_size=image_size,
        patch_size=patch_size,
        embed_dim=encoder_embed_dim,
        depth=encoder_depth,
        num_heads=encoder_num_heads,
        out_chans=embed_dim,
        window_size=window_size,
        global_attn_indexes=global_attn_indexes,
        attention_mode=attention_mode,
        convention=convention,
    )
    prompt_encoder = PromptEncoder3D(
        embed_dim,
        image_size=image_size,
        grid_size=grid,
        num_frequencies=pe_frequencies,
        click_map=click_map,
        convention=convention,
    )
    decoder = MaskDecoder3D(
        embed_dim,
        num_heads=decoder_num_heads,
        mlp_dim=decoder_mlp_dim,
        iou_head_hidden_dim=iou_head_hidden_dim,
        fine_path=fine_path,
        fine_clicks=fine_clicks,
    )
    return Sam3D(encoder, prompt_encoder, decoder, name=name)


def build_vit_b_ori(
    attention_mode: str = "native",
    click_map: bool = False,
    convention: str = "native",
    fine_path: bool = False,
    fine_clicks: bool = False,
) -> Sam3D:
    """Published SAM-Med3D ``vit_b_ori`` layout (ViT-B encoder, 384-wide decoder), 128^3 input."""
    return build_sam3d(
        name="vit_b_ori",
        encoder_embed_dim=768,
        encoder_depth=12,
        encoder_num_heads=12,
        global_attn_indexes=(2, 5, 8, 11),
        embed_dim=384,
        decoder_num_heads=8,
        decoder_mlp_dim=2048,
        iou_head_hidden_dim=256,
        pe_frequencies=128,
        attention_mode=attention_mode,
        click_map=click_map,
        convention=convention,
        fine_path=fine_path,
        fine_clicks=fine_clicks,
    )


def build_vit_tiny(
    attention_mode: str = "native",
    click_map: bool = False,
    convention: str = "native",
    fine_path: bool = False,
    fine_clicks: bool = False,
) -> Sam3D:
    """Small configuration for CPU training and tests; same structure, narrower and shallower."""
    return build_sam3d(
        name="vit_tiny",
        encoder_embed_dim=192,
        encoder_depth=4,
        encoder_num_heads=4,
        global_attn_indexes=(1, 3),
        embed_dim=96,
        decoder_num_heads=4,
        decoder_mlp_dim=512,
        iou_head_hidden_dim=64,
        attention_mode=attention_mode,
        click_map=click_map,
        convention=convention,
        fine_path=fine_path,
        fine_clicks=fine_clicks,
    )


MODEL_REGISTRY: dict[str, Callable[..., Sam3D]] = {
    "vit_b_ori": build_vit_b_ori,
    "vit_tiny": build_vit_tiny,
}


def build_model(
    name: str,
    attention_mode: str = "native",
    click_map: bool = False,
    convention: str = "native",
    fine_path: bool = False,
    fine_clicks: bool = False,
) -> Sam3D:
    """Build a registered configuration.

    Args:
        name (str): key of MODEL_REGISTRY.
        attention_mode (str): "native" (fast, global attention everywhere) or "reference"
            (published windowing, needed to load the published checkpoint).
        click_map (bool): dense click encoding in the prompt encoder (see :func:`build_sam3d`).
        convention (str): "native" or "published" (see :func:`build_sam3d`).
        fine_path (bool): image and mask prompt at mask resolution in the decoder (see :func:`build_sam3d`).
        fine_clicks (bool): the clicks too, at mask resolution (needs fine_path).

    Returns:
        Sam3D with freshly initialised weights.
    """
    if name not in MODEL_REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {sorted(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[name](
        attention_mode=attention_mode,
        click_map=click_map,
        convention=convention,
        fine_path=fine_path,
        fine_clicks=fine_clicks,
    )
