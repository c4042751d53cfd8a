"""The three networks of glassforge-shapes in diffusers/transformers form, built from a :class:`Recipe`.

SD1 conventions are kept so the exported file loads like any SD1 checkpoint: the UNet's cross-attention has 8 heads
(diffusers' SD1 ``attention_head_dim=8``), the text encoder is CLIP with the real 49,408-token vocabulary and 64-wide
heads, and the VAE's latents are scaled by SD's 0.18215 — the data's own scale is folded into the VAE's
``quant_conv``/``post_quant_conv`` (:func:`fold_latent_scale`) so no special constant is needed at inference.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

from .recipes import Recipe

VOCAB = 49408
POSITIONS = 77
SD_SCALE = 0.18215


def build_vae(r: Recipe):
    from diffusers import AutoencoderKL

    n = len(r.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * n,
        up_block_types=["UpDecoderBlock2D"] * n,
        block_out_channels=list(r.vae_channels),
        latent_channels=r.latent_channels,
        layers_per_block=r.vae_layers,
        norm_num_groups=32,
        sample_size=r.resolution,
        scaling_factor=SD_SCALE,
    )


def build_text_encoder(r: Recipe):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=VOCAB,
        hidden_size=r.text_width,
        intermediate_size=4 * r.text_width,
        num_hidden_layers=r.text_layers,
        num_attention_heads=max(1, r.text_width // 64),
        max_position_embeddings=POSITIONS,
        hidden_act="quick_gelu",
        projection_dim=r.text_width,
        bos_token_id=49406,
        eos_token_id=49407,
    )
    return CLIPTextModel(config)


def build_unet(r: Recipe):
    from diffusers import UNet2DConditionModel

    n = len(r.unet_channels)
    return UNet2DConditionModel(
        sample_size=r.latent_size,
        in_channels=r.latent_channels,
        out_channels=r.latent_channels,
        block_out_channels=list(r.unet_channels),
        down_block_types=["CrossAttnDownBlock2D"] * n,
        up_block_types=["CrossAttnUpBlock2D"] * n,
        layers_per_block=r.unet_layers,
        cross_attention_dim=r.text_width,
        attention_head_dim=8,  # SD1: 8 heads per attention layer
        norm_num_groups=32,
    )


@lru_cache(maxsize=1)
def _tokenizer():
    from glassforge.models.tokenizer import ClipTokenizer

    return ClipTokenizer("clip-l")


@lru_cache(maxsize=4096)
def _ids(text: str) -> tuple[int, ...]:
    chunks = _tokenizer().tokenize_prompt(text, emphasis="None").chunks
    return chunks[0].ids


def token_ids(texts: list[str]) -> Tensor:
    """[B, 77] CLIP ids as SD1 pipelines build them: BOS, tokens, EOS, EOS padding (first chunk only)."""
    return torch.tensor([_ids(t) for t in texts], dtype=torch.long)


def encode_text(text_encoder, texts: list[str]) -> Tensor:
    return text_encoder(token_ids(texts)).last_hidden_state


def to_pixels(images) -> Tensor:
    """uint8 [B, H, W, 3] → float [B, 3, H, W] in [-1, 1]."""
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1


def to_uint8(x: Tensor) -> Tensor:
    """float [B, 3, H, W] in [-1, 1] → uint8 [B, H, W, 3]."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


@torch.no_grad()
def fold_latent_scale(vae, raw_std: float) -> float:
    """Rescale the VAE so that ``SD_SCALE · latent`` has unit std; returns the factor k applied to latents.

    The encoder's posterior mean is multiplied by k (log-variance shifted by 2 log k) and the decoder's
    ``post_quant_conv`` divides its input by k: reconstructions are unchanged.
    """
    k = 1.0 / (SD_SCALE * raw_std)
    c = vae.config.latent_channels
    q = vae.quant_conv
    q.weight[:c] *= k
    q.bias[:c] *= k
    q.bias[c:] += 2 * math.log(k)
    vae.post_quant_conv.weight /= k
    return k


@torch.no_grad()
def generate(
    unet,
    text_encoder,
    vae,
    prompts: list[str],
    *,
    seed: int = 0,
    steps: int = 20,
    cfg: float = 5.0,
    sampler: str = "Euler",
    negative: str = "",
    latent_size: int | None = None,
    prediction: str = "eps",
    zero_terminal_snr: bool = False,
) -> Tensor:
    """uint8 images [B, H, W, 3] for ``prompts`` with glassforge's own sampling core (A1111 seeds: seed + i)."""
    from glassforge.sampling.denoisers import PredictionDenoiser
    from glassforge.sampling.guidance import CFGDenoiser
    from glassforge.sampling.noise_schedule import DiscreteSchedule
    from glassforge.sampling.run import sample

    schedule = DiscreteSchedule.stable_diffusion(zero_terminal_snr=zero_terminal_snr)
    cond = encode_text(text_encoder, prompts).float()
    uncond = encode_text(text_encoder, [negative] * len(prompts)).float()

    def model(x, t, context):
        return unet(x, t, encoder_hidden_states=context).sample

    denoiser = CFGDenoiser(
        PredictionDenoiser(model, schedule, prediction), {"context": cond}, {"context": uncond}, cfg
    )
    size = latent_size or unet.config.sample_size
    shape = (unet.config.in_channels, size, size)
    latents = sample(
        denoiser, schedule.sigmas, shape, sampler=sampler, steps=steps, seed=seed, batch_size=len(prompts)
    ).latents
    return to_uint8(vae.decode(latents / SD_SCALE).sample)
