"""What a model family is: the facts its checkpoints' shapes cannot tell.

Each family (``sd1.py``, ``sd2.py``, ``sdxl.py``) is one :class:`Family` value: the sentinel key that
identifies its checkpoints, its text encoders (where their weights live, their layout and activation,
how A1111 reads their hidden states), the rule for attention heads, and the VAE's latent scale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def heads_of_width_64(width: int) -> int:
    """Attention heads 64 channels wide (CLIP text encoders, SD2/SDXL UNets); one head below 64 (tiny models)."""
    if width % 64 == 0:
        return width // 64
    if width < 64:
        return 1
    raise ValueError(f"width {width} is not a multiple of 64; this family's attention heads are 64 wide")


def eight_heads(width: int) -> int:
    """SD1's UNet: 8 heads in every attention layer, whatever its width."""
    if width % 8:
        raise ValueError(f"width {width} cannot be split into SD1's 8 attention heads")
    return 8


@dataclass(frozen=True)
class TextEncoderSpec:
    """One text encoder of a family.

    ``min_clip_skip`` and ``final_layer_norm`` say how A1111/Forge read it: the hidden state
    ``hidden_states[-max(clip_skip, min_clip_skip)]``, then the final LayerNorm if ``final_layer_norm``.
    ``pad_id`` is what A1111 pads its 77-token chunks with after the end token.
    """

    name: str  # "clip_l", "open_clip_h", "open_clip_g"
    prefix: str  # key prefix of its weights in a single-file checkpoint
    layout: str  # "hf" (transformers names) or "open_clip"
    activation: str  # transformers ``hidden_act``: CLIP-L "quick_gelu", OpenCLIP "gelu"
    with_projection: bool  # built as CLIPTextModelWithProjection (its pooled projection is used)
    min_clip_skip: int
    final_layer_norm: bool
    pad_id: int
    diffusers_subfolder: str  # "text_encoder" or "text_encoder_2"


@dataclass(frozen=True)
class Family:
    name: str  # "sd1", "sd2", "sdxl"
    label: str  # what users call it
    sentinel: str  # a key only this family's single-file checkpoints have
    text_encoders: tuple[TextEncoderSpec, ...]
    unet_heads: Callable[[int], int]  # UNet level width → attention heads
    vae_scale_factor: float  # latent = vae.encode(x) * factor (A1111 / LDM ``scale_factor``)
    default_size: int  # the training resolution (pixels)
    key_renames: tuple[tuple[str, str], ...] = ()  # legacy key prefixes → current ones

    def text_encoder(self, name: str) -> TextEncoderSpec:
        return next(spec for spec in self.text_encoders if spec.name == name)
