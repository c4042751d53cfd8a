"""Library configs derived locally from shapes + family rules, and the original → library key conversion.

The conversion itself is diffusers' (``diffusers.loaders.single_file_utils``), which maintains the LDM
and OpenCLIP key maps; this module only supplies the configs those functions need and adapts their
output to today's transformers layout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from .architecture import ClipArch, UNetArch, VAEArch
from .checkpoint import CheckpointError
from .family import Family, TextEncoderSpec, heads_of_width_64

CLIP_BOS_ID, CLIP_EOS_ID = 49406, 49407


def unet_config(arch: UNetArch, family: Family, addition_time_embed_dim: int | None = None) -> dict[str, Any]:
    """A ``UNet2DConditionModel`` config for ``arch`` (diffusers' own naming quirks included)."""
    widths = arch.block_out_channels
    last = len(widths) - 1
    if arch.transformer_depth[last] and arch.transformer_depth[last] != arch.transformer_depth_middle:
        raise CheckpointError(
            f"UNet middle transformer depth {arch.transformer_depth_middle} differs from the deepest level's "
            f"{arch.transformer_depth[last]}; diffusers' UNet2DConditionModel cannot express that"
        )
    # Unused entries (levels without attention) are 1; the last one doubles as the middle block's depth.
    depth = [d or 1 for d in arch.transformer_depth]
    depth[last] = arch.transformer_depth_middle
    up_depth = [d or 1 for d in reversed(arch.transformer_depth_output)]  # deepest first, like up_blocks
    try:
        heads = [family.unet_heads(w) for w in widths]
    except ValueError as e:
        raise CheckpointError(f"{family.label} UNet: {e}") from None
    config: dict[str, Any] = {
        "sample_size": family.default_size // 8,
        "in_channels": arch.in_channels,
        "out_channels": arch.out_channels,
        "down_block_types": ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in arch.transformer_depth],
        "up_block_types": [
            "CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(arch.transformer_depth_output)
        ],
        "block_out_channels": list(widths),
        "layers_per_block": arch.num_res_blocks,
        "cross_attention_dim": arch.context_dim,
        # diffusers' historical misnomer: ``attention_head_dim`` is the number of heads per level
        "attention_head_dim": heads[0] if len(set(heads)) == 1 else heads,
        "use_linear_projection": arch.use_linear_in_transformer,
        "transformer_layers_per_block": depth[0] if len(set(depth)) == 1 else depth,
    }
    if up_depth != list(reversed(depth)):
        config["reverse_transformer_layers_per_block"] = up_depth
    if arch.adm_in_channels is not None:
        config.update(
            addition_embed_type="text_time",
            addition_time_embed_dim=addition_time_embed_dim,
            projection_class_embeddings_input_dim=arch.adm_in_channels,
        )
    return config


def vae_config(arch: VAEArch, family: Family) -> dict[str, Any]:
    n = len(arch.ch_mult)
    for w in arch.block_out_channels:
        if w % 32:
            raise CheckpointError(f"VAE width {w} is not a multiple of 32 (its GroupNorm has 32 groups)")
    return {
        "in_channels": arch.in_channels,
        "out_channels": arch.out_channels,
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "block_out_channels": list(arch.block_out_channels),
        "latent_channels": arch.z_channels,
        "layers_per_block": arch.num_res_blocks,
        "scaling_factor": family.vae_scale_factor,
        "sample_size": family.default_size,
        "use_quant_conv": arch.use_quant_conv,
        "use_post_quant_conv": arch.use_post_quant_conv,
        "mid_block_add_attention": arch.mid_attention,
    }


def clip_config(arch: ClipArch, spec: TextEncoderSpec):
    from transformers import CLIPTextConfig

    try:
        heads = heads_of_width_64(arch.hidden_size)
    except ValueError as e:
        raise CheckpointError(f"text encoder {spec.name}: {e}") from None
    return CLIPTextConfig(
        vocab_size=arch.vocab_size,
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=heads,
        max_position_embeddings=arch.max_positions,
        hidden_act=spec.activation,
        layer_norm_eps=1e-5,
        projection_dim=arch.projection_dim or arch.hidden_size,
        bos_token_id=CLIP_BOS_ID,
        eos_token_id=CLIP_EOS_ID,  # pooled output at the first end token (= OpenCLIP's argmax)
    )


# ---- key conversion (diffusers' maintained maps) --------------------------------------------------


def convert_unet(tensors: Mapping[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
    """``model.diffusion_model.*`` → diffusers names (tensors are not copied)."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    return convert_ldm_unet_checkpoint(dict(tensors), config)


def convert_vae(tensors: Mapping[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
    """LDM VAE tensors with their prefix removed → diffusers names (1×1 conv attention → linear views)."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    return convert_ldm_vae_checkpoint(dict(tensors), config)


def _flatten_text_model(state: dict[str, Tensor], with_projection: bool) -> dict[str, Tensor]:
    """transformers ≥ 5.6 flattened ``CLIPTextModel`` (no ``text_model.`` level); the projection model kept it."""
    if with_projection:
        return state
    return {k.removeprefix("text_model."): v for k, v in state.items() if k != "text_projection.weight"}


def convert_clip(tensors: Mapping[str, Tensor], spec: TextEncoderSpec, model) -> dict[str, Tensor]:
    """One text encoder's tensors (``spec.prefix`` still on the keys) → transformers names."""
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint

    if spec.layout == "hf":
        state = convert_ldm_clip_checkpoint(dict(tensors), remove_prefix=spec.prefix)
        # position_ids is a buffer transformers rebuilds; some merged SD1 files carry damaged copies
        state.pop("text_model.embeddings.position_ids", None)
    else:
        # diffusers drops SD2's resblocks.23 and text_projection by absolute key name
        # (SD_2_TEXT_ENCODER_KEYS_TO_IGNORE); a neutral prefix keeps every layer the file has, so A1111's
        # "penultimate layer" and clip skip address the same layers as in the original model.
        n = len(spec.prefix)
        neutral = {"open_clip." + k[n:]: v for k, v in tensors.items()}
        state = convert_open_clip_checkpoint(model, neutral, prefix="open_clip.")
        # diffusers splits the fused in_proj into q/k/v copies (.clone()); row blocks of the mapped
        # tensor are contiguous views, so keep those instead and the weights stay memory-mapped
        for key, fused in neutral.items():
            if m := _IN_PROJ.match(key):
                width = fused.shape[0] // 3
                for j, name in enumerate("qkv"):
                    state[f"text_model.encoder.layers.{m[1]}.self_attn.{name}_proj.{m[2]}"] = fused[
                        j * width : (j + 1) * width
                    ]
    return _flatten_text_model(state, spec.with_projection)


_IN_PROJ = re.compile(r"open_clip\.transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$")
