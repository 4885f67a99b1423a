"""Own checkpoint round trip and strict loading of the published SAM-Med3D layout."""

from __future__ import annotations

import argparse

import pytest
import torch

from model import build_model, load_model_weights, load_published_checkpoint, published_to_ours, save_checkpoint


def test_own_checkpoint_round_trip(tiny, tmp_path):
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, tiny, extra={"epoch": 3, "best_dice": 0.5})
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["extra"] == {"epoch": 3, "best_dice": 0.5}
    restored = load_model_weights(path)
    assert restored.name == "vit_tiny" and restored.attention_mode == "native"
    for name, value in tiny.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[name], value, rtol=0, atol=0)
    with pytest.raises(ValueError):
        load_model_weights(path, build_model("vit_tiny", attention_mode="reference"))


@pytest.mark.parametrize(
    "part, needs, weight",
    [
        ("click_map", (), lambda model: model.prompt_encoder.click_map.positive_embed),
        ("fine_path", (), lambda model: model.mask_decoder.fine.image_stem.weight),
        ("fine_clicks", ("fine_path",), lambda model: model.mask_decoder.fine.click_mix.weight),
    ],
)
def test_an_optional_part_is_recorded_and_old_checkpoints_load_without_it(tmp_path, part, needs, weight):
    torch.manual_seed(0)
    with_part = build_model("vit_tiny", **{part: True}, **{p: True for p in needs})
    path = tmp_path / f"{part}.pt"
    save_checkpoint(path, with_part)
    restored = load_model_weights(path)
    parts = ("click_map", "fine_path", "fine_clicks")
    assert {p for p in parts if getattr(restored, p)} == {part, *needs}
    torch.testing.assert_close(weight(restored), weight(with_part), rtol=0, atol=0)
    with pytest.raises(ValueError, match=f"{part}=True"):
        load_model_weights(path, build_model("vit_tiny", **{p: True for p in needs}))
    old = tmp_path / "old.pt"
    save_checkpoint(old, build_model("vit_tiny", **{p: True for p in needs}))
    payload = torch.load(old, weights_only=True)
    del payload[part]  # written before the setting existed
    torch.save(payload, old)
    assert not getattr(load_model_weights(old), part)


def published_shapes() -> dict[str, tuple[int, ...]]:
    """Names and shapes of the published vit_b_ori state dict, written out from its configuration."""
    s: dict[str, tuple[int, ...]] = {
        "image_encoder.patch_embed.proj.weight": (768, 1, 16, 16, 16),
        "image_encoder.patch_embed.proj.bias": (768,),
        "image_encoder.pos_embed": (1, 8, 8, 8, 768),
        "image_encoder.neck.0.weight": (384, 768, 1, 1, 1),
        "image_encoder.neck.1.weight": (384,),
        "image_encoder.neck.1.bias": (384,),
        "image_encoder.neck.2.weight": (384, 384, 3, 3, 3),
        "image_encoder.neck.3.weight": (384,),
        "image_encoder.neck.3.bias": (384,),
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": (3, 128),  # 384 = [sin, cos, sin] x 128
        "prompt_encoder.point_embeddings.0.weight": (1, 384),
        "prompt_encoder.point_embeddings.1.weight": (1, 384),
        "prompt_encoder.not_a_point_embed.weight": (1, 384),
        "prompt_encoder.mask_downscaling.0.weight": (4, 1, 2, 2, 2),
        "prompt_encoder.mask_downscaling.0.bias": (4,),
        "prompt_encoder.mask_downscaling.1.weight": (4,),
        "prompt_encoder.mask_downscaling.1.bias": (4,),
        "prompt_encoder.mask_downscaling.3.weight": (16, 4, 2, 2, 2),
        "prompt_encoder.mask_downscaling.3.bias": (16,),
        "prompt_encoder.mask_downscaling.4.weight": (16,),
        "prompt_encoder.mask_downscaling.4.bias": (16,),
        "prompt_encoder.mask_downscaling.6.weight": (384, 16, 1, 1, 1),
        "prompt_encoder.mask_downscaling.6.bias": (384,),
        "prompt_encoder.no_mask_embed.weight": (1, 384),
        "mask_decoder.iou_token.weight": (1, 384),
        "mask_decoder.mask_tokens.weight": (4, 384),
        "mask_decoder.output_upscaling.0.weight": (384, 96, 2, 2, 2),
        "mask_decoder.output_upscaling.0.bias": (96,),
        "mask_decoder.output_upscaling.1.weight": (96,),
        "mask_decoder.output_upscaling.1.bias": (96,),
        "mask_decoder.output_upscaling.3.weight": (96, 48, 2, 2, 2),
        "mask_decoder.output_upscaling.3.bias": (48,),
        "mask_decoder.transformer.norm_final_attn.weight": (384,),
        "mask_decoder.transformer.norm_final_attn.bias": (384,),
    }

    def linear(prefix: str, i: int, o: int) -> None:
        s[prefix + ".weight"] = (o, i)
        s[prefix + ".bias"] = (o,)

    def attention(prefix: str, inner: int) -> None:
        for proj in ("q_proj", "k_proj", "v_proj"):
            linear(f"{prefix}.{proj}", 384, inner)
        linear(f"{prefix}.out_proj", inner, 384)

    for i in range(12):
        b = f"image_encoder.blocks.{i}"
        rows = 15 if (i + 1) % 3 == 0 else 27  # global 2*8-1, windowed 2*14-1
        for norm in ("norm1", "norm2"):
            s[f"{b}.{norm}.weight"] = s[f"{b}.{norm}.bias"] = (768,)
        linear(f"{b}.attn.qkv", 768, 2304)
        linear(f"{b}.attn.proj", 768, 768)
        for axis in "dhw":
            s[f"{b}.attn.rel_pos_{axis}"] = (rows, 64)
        linear(f"{b}.mlp.lin1", 768, 3072)
        linear(f"{b}.mlp.lin2", 3072, 768)
    for i in range(2):
        layer = f"mask_decoder.transformer.layers.{i}"
        attention(f"{layer}.self_attn", 384)
        attention(f"{layer}.cross_attn_token_to_image", 192)
        attention(f"{layer}.cross_attn_image_to_token", 192)
        for norm in ("norm1", "norm2", "norm3", "norm4"):
            s[f"{layer}.{norm}.weight"] = s[f"{layer}.{norm}.bias"] = (384,)
        linear(f"{layer}.mlp.lin1", 384, 2048)
        linear(f"{layer}.mlp.lin2", 2048, 384)
    attention("mask_decoder.transformer.final_attn_token_to_image", 192)
    for t in range(4):
        linear(f"mask_decoder.output_hypernetworks_mlps.{t}.layers.0", 384, 384)
        linear(f"mask_decoder.output_hypernetworks_mlps.{t}.layers.1", 384, 384)
        linear(f"mask_decoder.output_hypernetworks_mlps.{t}.layers.2", 384, 48)
    linear("mask_decoder.iou_prediction_head.layers.0", 384, 256)
    linear("mask_decoder.iou_prediction_head.layers.1", 256, 256)
    linear("mask_decoder.iou_prediction_head.layers.2", 256, 4)
    return s


@pytest.fixture(scope="module")
def published():
    gen = torch.Generator().manual_seed(1)
    return {name: torch.randn(shape, generator=gen) for name, shape in published_shapes().items()}


def test_published_layout_size():
    total = sum(torch.Size(shape).numel() for shape in published_shapes().values())
    assert total == 100_509_232 + 3 * 128  # parameters plus the Gaussian matrix buffer


def test_mapping_is_injective():
    names = [published_to_ours(key) for key in published_shapes()]
    assert len(set(names)) == len(names)
    assert published_to_ours("image_encoder.blocks.7.attn.rel_pos_d") == "image_encoder.blocks.7.attn.rel_pos_z"
    assert published_to_ours("prompt_encoder.point_embeddings.1.weight") == "prompt_encoder.positive_point_embed"
    with pytest.raises(KeyError):
        published_to_ours("image_encoder.blocks.0.attn.rel_pos_t")


def test_published_checkpoint_loads_completely(published):
    model, not_loaded = load_published_checkpoint({"model_state_dict": published, "epoch": 10})
    assert model.attention_mode == "reference" and model.name == "vit_b_ori"
    assert not_loaded == ["prompt_encoder.box_corner_embed"]
    ours = model.state_dict()
    for key, value in published.items():
        assert torch.equal(ours[published_to_ours(key)], value), key


@pytest.mark.parametrize("breakage", ["unknown_key", "wrong_shape", "missing_key"])
def test_published_checkpoint_is_strict(published, breakage):
    broken = dict(published)
    if breakage == "unknown_key":
        broken["image_encoder.extra.weight"] = torch.zeros(3)
    elif breakage == "wrong_shape":
        broken["image_encoder.blocks.0.attn.rel_pos_h"] = torch.zeros(15, 64)  # global size in a windowed block
    else:
        del broken["mask_decoder.mask_tokens.weight"]
    with pytest.raises(ValueError):
        load_published_checkpoint({"model_state_dict": broken})


def test_published_checkpoint_from_file(tmp_path):
    # Exercises the weights_only file path, including the argparse.Namespace the published trainer stores.
    state = {name: torch.zeros(shape) for name, shape in published_shapes().items()}
    path = tmp_path / "sam_med3d.pth"
    torch.save({"model_state_dict": state, "args": argparse.Namespace(lr=1e-4)}, path)
    model, not_loaded = load_published_checkpoint(path)
    assert not_loaded == ["prompt_encoder.box_corner_embed"]
    assert model.image_encoder.pos_embed.abs().sum() == 0


class _Unsafe:
    """A class the weights_only unpickler does not know: stands for any arbitrary pickled object."""


def test_a_file_needing_arbitrary_pickled_objects_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"model_state_dict": {}, "trainer": _Unsafe()}, path)
    with pytest.raises(ValueError, match="arbitrary pickled Python objects.*_Unsafe.*can run any code"):
        load_published_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_published_checkpoint(tmp_path / "absent.pth")


def test_errors_name_missing_unexpected_and_misshaped_keys(published):
    broken = dict(published)
    del broken["mask_decoder.mask_tokens.weight"]
    del broken["image_encoder.blocks.4.attn.rel_pos_d"]
    broken["image_encoder.extra.weight"] = torch.zeros(3)
    broken["image_encoder.blocks.0.attn.rel_pos_h"] = torch.zeros(15, 64)
    with pytest.raises(ValueError) as error:
        load_published_checkpoint({"model_state_dict": broken})
    message = str(error.value)
    assert "missing keys: image_encoder.blocks.4.attn.rel_pos_d, mask_decoder.mask_tokens.weight" in message
    assert "unexpected keys: image_encoder.extra.weight" in message
    assert "mis-shaped keys: image_encoder.blocks.0.attn.rel_pos_h (15, 64) (vit_b_ori: (27, 64))" in message


def _resized(shapes: dict[str, tuple[int, ...]], old: int, new: int) -> dict[str, torch.Tensor]:
    return {k: torch.zeros(tuple(new if n == old else n for n in s)) for k, s in shapes.items()}


@pytest.mark.parametrize(
    ("size", "hint"),
    [("vit_l", "encoder width is 1024 (vit_l)"), ("vit_h", "encoder width is 1280 (vit_h)"),
     ("decoder_256", "decoder width is 256")],
)
def test_other_model_sizes_are_named(size, hint):
    shapes = published_shapes()
    if size == "decoder_256":
        state = _resized({k: v for k, v in shapes.items() if not k.startswith("image_encoder")}, 384, 256)
        state.update({k: torch.zeros(v) for k, v in shapes.items() if k.startswith("image_encoder")})
    else:
        width, depth = {"vit_l": (1024, 24), "vit_h": (1280, 32)}[size]
        state = _resized(shapes, 768, width)
        for i in range(12, depth):  # the deeper encoders' extra blocks
            state.update({k.replace(".blocks.0.", f".blocks.{i}."): v for k, v in state.items() if ".blocks.0." in k})
    with pytest.raises(ValueError, match="does not match the published vit_b_ori layout") as error:
        load_published_checkpoint({"model_state_dict": state})
    message = str(error.value)
    assert hint in message and "mis-shaped keys: " in message
    if size != "decoder_256":
        assert "unexpected keys: image_encoder.blocks.12." in message and "blocks" in message


def test_the_convention_is_recorded_and_old_checkpoints_are_native(tmp_path):
    published = build_model("vit_tiny", attention_mode="reference", convention="published")
    path = tmp_path / "published_tiny.pt"
    save_checkpoint(path, published)
    assert load_model_weights(path).convention == "published"
    with pytest.raises(ValueError, match="convention=published"):
        load_model_weights(path, build_model("vit_tiny", attention_mode="reference"))
    payload = torch.load(path, weights_only=True)
    del payload["convention"]  # written before the setting existed
    torch.save(payload, path)
    assert load_model_weights(path).convention == "native"


def test_load_network_reads_ours_and_the_published_layout(tmp_path):
    from model.network.loading import load_network

    ours = tmp_path / "ours.pt"
    save_checkpoint(ours, build_model("vit_tiny", click_map=True))
    restored = load_network(ours)
    assert (restored.name, restored.click_map, restored.convention) == ("vit_tiny", True, "native")
    published = tmp_path / "published.pth"
    torch.save({"model_state_dict": {k: torch.zeros(s) for k, s in published_shapes().items()}}, published)
    network = load_network(published)
    assert (network.name, network.click_map, network.convention) == ("vit_b_ori", False, "published")
    torch.save({"model_state_dict": {"image_encoder.pos_embed": torch.zeros(1, 8, 8, 8, 768)}}, published)
    with pytest.raises(ValueError, match="missing keys: image_encoder.blocks.0"):
        load_network(published)
