"""Stable Diffusion XL base: CLIP ViT-L (transformers layout) + OpenCLIP ViT-bigG (OpenCLIP layout).

``sd_xl_base.yaml``: ``num_head_channels: 64``, ``context_dim: 2048`` (768 + 1280 concatenated),
``adm_in_channels: 2816`` (1280 pooled + 6 × 256 size/crop embeddings), ``scale_factor: 0.13025``.
Both encoders are read at the penultimate layer without the final LayerNorm; bigG's pooled,
projected output conditions ``label_emb``.
"""

from .family import Family, TextEncoderSpec, heads_of_width_64

CLIP_L = TextEncoderSpec(
    name="clip_l",
    prefix="conditioner.embedders.0.transformer.",
    layout="hf",
    activation="quick_gelu",
    with_projection=False,
    min_clip_skip=2,
    final_layer_norm=False,
    pad_id=49407,
    diffusers_subfolder="text_encoder",
)

OPEN_CLIP_G = TextEncoderSpec(
    name="open_clip_g",
    prefix="conditioner.embedders.1.model.",
    layout="open_clip",
    activation="gelu",
    with_projection=True,
    min_clip_skip=2,
    final_layer_norm=False,
    pad_id=0,  # "!"
    diffusers_subfolder="text_encoder_2",
)

SDXL = Family(
    name="sdxl",
    label="SDXL",
    sentinel="conditioner.embedders.1.model.token_embedding.weight",
    text_encoders=(CLIP_L, OPEN_CLIP_G),
    unet_heads=heads_of_width_64,
    vae_scale_factor=0.13025,
    default_size=1024,
)
