"""The typed values that travel over a workflow's links — the seeds' entities made concrete.

=============  ========================================================================================
MODEL          the denoising network (UNet) as a patcher clone, with the checkpoint it came from
CLIP           the text encoders (the "PromptVectorization" machinery) and the clip-skip to use
VAE            the pixel ↔ latent converter ("PixelConversion")
CONDITIONING   an encoded prompt: the text vectors the UNet reads through cross-attention
LATENT         latent images in the model's space (already × the VAE scale factor), plus provenance
IMAGE          pixels [B, H, W, 3] in [0, 1] (ComfyUI's layout), plus provenance
SIGMAS         a noise schedule σ_0 > … > σ_n = 0
SAMPLER        a registered sampler ("IterativeRefinement" rule) with its options
NOISE          where the initial noise comes from (seed and convention)
GUIDER         model + prompts + CFG scale: the guided denoiser's recipe
=============  ========================================================================================

Provenance (``params``) carries what A1111's infotext needs (prompt, seed, steps, sampler…) from the
sampler to the image saver, so a saved PNG says how it was made.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from torch import Tensor


@dataclass(frozen=True)
class ModelValue:
    managed: Any  # ManagedModel: .model (LoadedModel), .name, .hash, .path
    patcher: Any  # UNetPatcher over managed.model.unet

    @property
    def model(self):
        return self.managed.model


@dataclass(frozen=True)
class ClipValue:
    managed: Any
    clip_skip: int = 1  # 1 = the last layer (ComfyUI's stop_at_clip_layer −1)

    @property
    def model(self):
        return self.managed.model


@dataclass(frozen=True)
class VaeValue:
    managed: Any

    @property
    def model(self):
        return self.managed.model


@dataclass(frozen=True)
class ConditioningValue:
    encoded: Any  # glassforge.models.text_encoding.Conditioning
    text: str
    clip_skip: int = 1
    clip: Any = None  # the ClipValue that encoded it: A1111's prompt editing re-encodes per step schedule


@dataclass(frozen=True)
class Latent:
    samples: Tensor  # [B, C, h, w], model space
    params: dict[str, Any] = field(default_factory=dict)
    downscale: int = 8  # pixels per latent cell: EmptyLatentImage assumes SD's 1/8; VAEEncode knows its VAE
    empty: bool = False  # all zeros from EmptyLatentImage: a sampler re-sizes it to its model's VAE

    def with_samples(self, samples: Tensor) -> Latent:
        return replace(self, samples=samples)


@dataclass(frozen=True)
class ImageValue:
    pixels: Tensor  # [B, H, W, 3] float in [0, 1]
    params: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = ()


@dataclass(frozen=True)
class MaskValue:
    mask: Tensor  # [B, H, W] in [0, 1]


@dataclass(frozen=True)
class SigmasValue:
    sigmas: Tensor
    schedule: str = "custom"


@dataclass(frozen=True)
class SamplerValue:
    name: str  # a registered sampler name (ComfyUI's or A1111's)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NoiseValue:
    seed: int
    convention: str = "comfyui"
    add: bool = True  # False: DisableNoise


@dataclass(frozen=True)
class GuiderValue:
    model: ModelValue
    positive: ConditioningValue
    negative: ConditioningValue
    cfg: float
