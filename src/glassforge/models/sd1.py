"""Stable Diffusion 1.x: CLIP ViT-L/14 text encoder (transformers layout), 8-head UNet attention.

``v1-inference.yaml``: ``num_heads: 8``, ``context_dim: 768``, ``scale_factor: 0.18215``.
"""

from .family import Family, TextEncoderSpec, eight_heads

CLIP_L = TextEncoderSpec(
    name="clip_l",
    prefix="cond_stage_model.transformer.",
    layout="hf",
    activation="quick_gelu",
    with_projection=False,
    min_clip_skip=1,
    final_layer_norm=True,
    pad_id=49407,  # <|endoftext|>
    diffusers_subfolder="text_encoder",
)

SD1 = Family(
    name="sd1",
    label="SD1.x",
    sentinel="cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
    text_encoders=(CLIP_L,),
    unet_heads=eight_heads,
    vae_scale_factor=0.18215,
    default_size=512,
    # checkpoints saved with transformers < 4.? lack the "text_model." level (A1111 renames them too)
    key_renames=(
        ("cond_stage_model.transformer.embeddings.", "cond_stage_model.transformer.text_model.embeddings."),
        ("cond_stage_model.transformer.encoder.", "cond_stage_model.transformer.text_model.encoder."),
        (
            "cond_stage_model.transformer.final_layer_norm.",
            "cond_stage_model.transformer.text_model.final_layer_norm.",
        ),
    ),
)
