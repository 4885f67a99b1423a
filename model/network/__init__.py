"""The SAM-Med3D network.

``attention`` (relative-position attention, windows), ``layers`` (channel LayerNorm, MLPs),
``image_encoder`` (3D ViT), ``prompt_encoder`` (clicks, boxes, mask prompt), ``two_way_transformer``,
``mask_decoder``, ``sam3d`` (the full model), ``registry`` (named configurations), ``checkpoint`` (our
file format), ``published`` (the published SAM-Med3D checkpoint layout), ``loading`` (either file format).
"""
