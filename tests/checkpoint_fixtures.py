"""Tiny random-weight Stable Diffusion checkpoints in the real key layouts, for tests.

Each family is built as tiny diffusers/transformers modules (seeded random weights), then written
either as a single file in the original layout — ``model.diffusion_model.*`` (openaimodel UNet),
``first_stage_model.*`` (LDM VAE), ``cond_stage_model.*`` / ``conditioner.embedders.*`` (CLIP-L in
transformers names, OpenCLIP with fused ``in_proj``) — or as a diffusers folder via ``save_pretrained``.
The original-layout names are mapped here from the key-naming facts, independently of the loader
(which uses diffusers' conversion), so loading equivalence tests the two against each other.

Usage: ``models = build(TINY["sd1"]); path = write_single_file(models, tmp_path / "x.safetensors")``.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

VOCAB = 49408  # real CLIP vocabulary size, so real token ids work end to end
POSITIONS = 77


@dataclass(frozen=True)
class TinySpec:
    family: str
    unet: dict
    vae: dict
    clips: tuple[dict, ...]  # per text encoder: hidden, layers, (projection)
    clip_layouts: tuple[str, ...]  # "hf" or "open_clip" for each
    clip_prefixes: tuple[str, ...]
    seed: int = 0


TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2,
    "block_out_channels": [32, 64],
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 32,
}

TINY: dict[str, TinySpec] = {
    "sd1": TinySpec(
        family="sd1",
        unet={
            "sample_size": 8,
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": [32, 64],
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "layers_per_block": 1,
            "cross_attention_dim": 32,
            "attention_head_dim": 8,  # SD1: 8 heads per attention layer
            "norm_num_groups": 32,
        },
        vae=TINY_VAE,
        clips=({"hidden": 32, "layers": 2, "act": "quick_gelu"},),
        clip_layouts=("hf",),
        clip_prefixes=("cond_stage_model.transformer.",),
    ),
    "sd2": TinySpec(
        family="sd2",
        unet={
            "sample_size": 8,
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": [64, 128],
            "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            "layers_per_block": 1,
            "cross_attention_dim": 128,
            "attention_head_dim": [1, 2],  # 64-wide heads
            "use_linear_projection": True,
            "norm_num_groups": 32,
        },
        vae=TINY_VAE,
        clips=({"hidden": 128, "layers": 2, "act": "gelu", "projection": 128},),
        clip_layouts=("open_clip",),
        clip_prefixes=("cond_stage_model.model.",),
    ),
    "sdxl": TinySpec(
        family="sdxl",
        unet={
            "sample_size": 8,
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": [32, 64, 128],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            "layers_per_block": 1,
            "transformer_layers_per_block": [1, 1, 2],
            "cross_attention_dim": 96,  # 32 (CLIP-L) + 64 (bigG)
            "attention_head_dim": [1, 1, 2],
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 48 + 6 * 8,  # pooled bigG + 6 size/crop embeddings
            "norm_num_groups": 32,
        },
        vae=TINY_VAE,
        clips=(
            {"hidden": 32, "layers": 2, "act": "quick_gelu"},
            {"hidden": 64, "layers": 3, "act": "gelu", "projection": 48},
        ),
        clip_layouts=("hf", "open_clip"),
        clip_prefixes=("conditioner.embedders.0.transformer.", "conditioner.embedders.1.model."),
    ),
}
TINY["sd1_inpaint"] = replace(TINY["sd1"], unet={**TINY["sd1"].unet, "in_channels": 9}, seed=1)

# Full-size shapes (build with meta=True: no memory), as in the published diffusers configs.
_REAL_VAE = {**TINY_VAE, "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,
             "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4}  # fmt: skip
_SD_BLOCKS = {
    "block_out_channels": [320, 640, 1280, 1280],
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "layers_per_block": 2,
}
REAL: dict[str, TinySpec] = {
    "sd1": replace(
        TINY["sd1"],
        unet={**_SD_BLOCKS, "cross_attention_dim": 768, "attention_head_dim": 8},
        vae=_REAL_VAE,
        clips=({"hidden": 768, "layers": 12, "act": "quick_gelu"},),
    ),
    "sd2": replace(
        TINY["sd2"],
        unet={
            **_SD_BLOCKS,
            "cross_attention_dim": 1024,
            "attention_head_dim": [5, 10, 20, 20],
            "use_linear_projection": True,
        },
        vae=_REAL_VAE,
        clips=({"hidden": 1024, "layers": 24, "act": "gelu", "projection": 1024},),
    ),
    "sdxl": replace(
        TINY["sdxl"],
        unet={
            "block_out_channels": [320, 640, 1280],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            "layers_per_block": 2,
            "transformer_layers_per_block": [1, 2, 10],
            "cross_attention_dim": 2048,
            "attention_head_dim": [5, 10, 20],
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 256,
            "projection_class_embeddings_input_dim": 2816,
        },
        vae=_REAL_VAE,
        clips=(
            {"hidden": 768, "layers": 12, "act": "quick_gelu"},
            {"hidden": 1280, "layers": 32, "act": "gelu", "projection": 1280},
        ),
    ),
}


@dataclass
class TinyModels:
    spec: TinySpec
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoders: list = field(default_factory=list)
    extra: dict[str, Tensor] = field(default_factory=dict)  # additional tensors for the single file


def _randomize(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Seeded random weights everywhere (norm scales around 1) so every tensor matters in outputs."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen) * 0.05
            is_norm_scale = p.ndim == 1 and name.endswith("weight")
            p.copy_(1 + noise if is_norm_scale else noise)


def clip_config(c: dict):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=VOCAB,
        hidden_size=c["hidden"],
        intermediate_size=4 * c["hidden"],
        num_hidden_layers=c["layers"],
        num_attention_heads=max(1, c["hidden"] // 64),
        max_position_embeddings=POSITIONS,
        hidden_act=c["act"],
        projection_dim=c.get("projection", c["hidden"]),
        bos_token_id=49406,
        eos_token_id=49407,
    )


def build(spec: TinySpec, vae_config: dict | None = None, meta: bool = False) -> TinyModels:
    """The spec's modules with seeded random weights, or (``meta``) weightless, for shape-only checks."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    gen = torch.Generator().manual_seed(spec.seed)
    with init_empty_weights(include_buffers=False) if meta else contextlib.nullcontext():
        unet = UNet2DConditionModel(**spec.unet)
        vae = AutoencoderKL(**(vae_config or spec.vae))
        texts = []
        for i, c in enumerate(spec.clips):
            with_projection = spec.family == "sdxl" and i == 1
            cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
            texts.append(cls(clip_config(c)))
    for m in (unet, vae, *texts):
        if not meta:
            _randomize(m, gen)
        m.eval()
    extra = {}
    device = "meta" if meta else "cpu"
    if spec.family == "sd2":  # SD2 files keep OpenCLIP's projection and logit scale (unused for SD)
        h = spec.clips[0]["hidden"]
        extra[spec.clip_prefixes[0] + "text_projection"] = (torch.randn(h, h, generator=gen) * 0.05).to(
            device
        )
    for prefix, layout in zip(spec.clip_prefixes, spec.clip_layouts, strict=True):
        if layout == "open_clip":
            extra[prefix + "logit_scale"] = torch.tensor(4.6052)
    return TinyModels(spec, unet, vae, texts, extra)


# ---- diffusers / transformers names → original names --------------------------------------------

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


def ldm_state_dict(models: TinyModels) -> dict[str, Tensor]:
    spec = models.spec
    sd = unet_to_ldm(models.unet.state_dict(), dict(models.unet.config))
    sd |= vae_to_ldm(models.vae.state_dict(), len(models.vae.config.block_out_channels))
    for te, layout, prefix in zip(models.text_encoders, spec.clip_layouts, spec.clip_prefixes, strict=True):
        convert = clip_hf_to_ldm if layout == "hf" else clip_to_open_clip
        sd |= convert(te.state_dict(), prefix)
    return sd | models.extra


def save(sd: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata=metadata)
    return path


def write_single_file(
    models: TinyModels, path: Path, dtype: torch.dtype | None = None, metadata: dict[str, str] | None = None
) -> Path:
    sd = ldm_state_dict(models)
    if dtype is not None:
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    return save(sd, path, metadata)


def write_vae_file(vae: torch.nn.Module, path: Path, prefix: str = "") -> Path:
    """A standalone VAE file in the LDM layout (bare keys like vae-ft-mse-840000-ema-pruned)."""
    return save(vae_to_ldm(vae.state_dict(), len(vae.config.block_out_channels), prefix), path)


def write_diffusers_folder(models: TinyModels, folder: Path, prediction: str = "eps") -> Path:
    """A diffusers pipeline folder written by the libraries' own ``save_pretrained``."""
    spec = models.spec
    xl = spec.family == "sdxl"
    models.unet.save_pretrained(folder / "unet")
    models.vae.save_pretrained(folder / "vae")
    names = ["text_encoder", "text_encoder_2"][: len(models.text_encoders)]
    for te, name in zip(models.text_encoders, names, strict=True):
        te.save_pretrained(folder / name)
    index = {
        "_class_name": "StableDiffusionXLPipeline" if xl else "StableDiffusionPipeline",
        "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
    }
    if xl:
        index["text_encoder_2"] = ["transformers", "CLIPTextModelWithProjection"]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    (folder / "scheduler").mkdir(exist_ok=True)
    scheduler = {
        "_class_name": "EulerDiscreteScheduler",
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "num_train_timesteps": 1000,
        "prediction_type": "v_prediction" if prediction == "v" else "epsilon",
    }
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=2))
    return folder


def with_v_statistic(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Give an SD2 state dict the weight statistic of the real 768-v models (ComfyUI's tell: the std of
    the last output block's first ``norm1.bias`` is above 0.09; it is ``output_blocks.11`` at full size)."""
    last = max(int(k.split(".")[3]) for k in sd if k.startswith("model.diffusion_model.output_blocks."))
    key = f"model.diffusion_model.output_blocks.{last}.1.transformer_blocks.0.norm1.bias"
    gen = torch.Generator().manual_seed(7)
    return sd | {key: torch.randn(sd[key].shape, generator=gen) * 0.2}
