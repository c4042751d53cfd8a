"""Stable Diffusion 2.x: OpenCLIP ViT-H/14 text encoder (OpenCLIP layout), 64-wide UNet heads.

``v2-inference(-v).yaml``: ``num_head_channels: 64``, ``use_linear_in_transformer: True``,
``context_dim: 1024``, ``FrozenOpenCLIPEmbedder(layer="penultimate")``. The 768-v models predict v;
nothing in their keys says so (see ``detect.py`` for how it is told).
"""

from .family import Family, TextEncoderSpec, heads_of_width_64

OPEN_CLIP_H = TextEncoderSpec(
    name="open_clip_h",
    prefix="cond_stage_model.model.",
    layout="open_clip",
    activation="gelu",
    with_projection=False,
    min_clip_skip=2,  # penultimate layer …
    final_layer_norm=True,  # … then ln_final (OpenCLIP's encode_with_transformer)
    pad_id=0,
    diffusers_subfolder="text_encoder",
)

SD2 = Family(
    name="sd2",
    label="SD2.x",
    sentinel="cond_stage_model.model.token_embedding.weight",
    text_encoders=(OPEN_CLIP_H,),
    unet_heads=heads_of_width_64,
    vae_scale_factor=0.18215,
    default_size=768,
)
