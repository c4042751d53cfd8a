"""diffusers / transformers key names → the original LDM single-file layout (SD1/SD2/SDXL checkpoints).

The reverse of what loading does (loading uses diffusers' own conversion functions): used to export
glassforge's trained model as an SD1.x single file, and by the tests to write tiny checkpoints in the
real layouts. Written from the key-naming facts of the two layouts.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

POSITIONS = 77  # CLIP's text positions (the position_ids buffer SD1 files carry)


_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
           "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}  # fmt: skip
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}  # fmt: skip


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{_RESNET[head]}.{tail}"


def unet_to_ldm(state: dict[str, Tensor], config: dict) -> dict[str, Tensor]:
    """openaimodel names: input_blocks.{1 + level·(L+1) + i}, middle_block.{0,1,2}, output_blocks.{…}."""
    L = config["layers_per_block"]
    up_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    out = {}
    for key, v in state.items():
        if m := re.match(r"(\w+\.linear_[12]|conv_in|conv_norm_out|conv_out)\.(weight|bias)$", key):
            name = f"{_UNET_TOP[m[1]]}.{m[2]}"
        elif m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            name = f"input_blocks.{1 + int(m[1]) * (L + 1) + int(m[2])}.0.{_resnet(m[3])}"
        elif m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
            name = f"input_blocks.{1 + int(m[1]) * (L + 1) + int(m[2])}.1.{m[3]}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            name = f"input_blocks.{1 + int(m[1]) * (L + 1) + L}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.resnets\.(\d)\.(.+)", key):
            name = f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.+)", key):
            name = f"middle_block.1.{m[1]}"
        elif m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            name = f"output_blocks.{int(m[1]) * (L + 1) + int(m[2])}.0.{_resnet(m[3])}"
        elif m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
            name = f"output_blocks.{int(m[1]) * (L + 1) + int(m[2])}.1.{m[3]}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            b = int(m[1])
            name = f"output_blocks.{b * (L + 1) + L}.{2 if up_attn[b] else 1}.conv.{m[2]}"
        else:
            raise KeyError(f"no original name for UNet key {key}")
        out["model.diffusion_model." + name] = v
    return out


_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_VAE_RES = {
    "norm1": "norm1",
    "conv1": "conv1",
    "norm2": "norm2",
    "conv2": "conv2",
    "conv_shortcut": "nin_shortcut",
}


def vae_to_ldm(
    state: dict[str, Tensor], n_levels: int, prefix: str = "first_stage_model."
) -> dict[str, Tensor]:
    """LDM names: encoder.down.{i}.block.{j}, decoder.up.{n−1−k} (reversed), mid.attn_1 as 1×1 convs."""
    out = {}
    for key, v in state.items():
        part, _, rest = key.partition(".")
        if key.startswith(("quant_conv.", "post_quant_conv.")):
            name = key
        elif m := re.match(r"(conv_in|conv_out|conv_norm_out)\.(.+)", rest):
            name = f"{part}.{'norm_out' if m[1] == 'conv_norm_out' else m[1]}.{m[2]}"
        elif m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(.+)", rest):
            name = f"{part}.down.{m[1]}.block.{m[2]}.{_VAE_RES[m[3]]}.{m[4]}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", rest):
            name = f"{part}.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(.+)", rest):
            name = f"{part}.up.{n_levels - 1 - int(m[1])}.block.{m[2]}.{_VAE_RES[m[3]]}.{m[4]}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", rest):
            name = f"{part}.up.{n_levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.match(r"mid_block\.resnets\.(\d)\.(\w+)\.(.+)", rest):
            name = f"{part}.mid.block_{int(m[1]) + 1}.{_VAE_RES[m[2]]}.{m[3]}"
        elif m := re.match(r"mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.+)", rest):
            name = f"{part}.mid.attn_1.{_VAE_ATTN[m[1]]}.{m[2]}"
            if v.ndim == 2:  # LDM's attention projections are 1×1 convolutions
                v = v[:, :, None, None]
        else:
            raise KeyError(f"no original name for VAE key {key}")
        out[prefix + name] = v
    return out


def clip_hf_to_ldm(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """transformers CLIP names under ``prefix + "text_model."``, with the position_ids buffer SD1 files carry."""
    out = {prefix + "text_model." + k.removeprefix("text_model."): v for k, v in state.items()}
    out[prefix + "text_model.embeddings.position_ids"] = torch.arange(POSITIONS)[None]
    return out


_OPEN_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
               "self_attn.out_proj": "attn.out_proj"}  # fmt: skip


def clip_to_open_clip(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """OpenCLIP names: fused q/k/v ``in_proj``, ``positional_embedding``, ``ln_final``, ``text_projection``ᵀ."""
    state = {k.removeprefix("text_model."): v for k, v in state.items()}
    out = {}
    for key, v in state.items():
        if key == "embeddings.token_embedding.weight":
            out["token_embedding.weight"] = v
        elif key == "embeddings.position_embedding.weight":
            out["positional_embedding"] = v
        elif key.startswith("final_layer_norm."):
            out["ln_final." + key.split(".")[-1]] = v
        elif key == "text_projection.weight":
            out["text_projection"] = v.T.contiguous()
        elif m := re.match(r"encoder\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)", key):
            i, p = m[1], m[2]
            qkv = [state[f"encoder.layers.{i}.self_attn.{n}_proj.{p}"] for n in "qkv"]
            out[f"transformer.resblocks.{i}.attn.in_proj_{p}"] = torch.cat(qkv)
        elif re.match(r"encoder\.layers\.\d+\.self_attn\.[kv]_proj\.", key):
            continue
        elif m := re.match(
            r"encoder\.layers\.(\d+)\.(layer_norm[12]|mlp\.fc[12]|self_attn\.out_proj)\.(.+)", key
        ):
            out[f"transformer.resblocks.{m[1]}.{_OPEN_LAYER[m[2]]}.{m[3]}"] = v
        else:
            raise KeyError(f"no OpenCLIP name for {key}")
    return {prefix + k: v for k, v in out.items()}
