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
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from glassforge.models.ldm_keys import POSITIONS, clip_hf_to_ldm, clip_to_open_clip, unet_to_ldm, vae_to_ldm

VOCAB = 49408  # real CLIP vocabulary size, so real token ids work end to end


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
