"""Export a training run's EMA weights as one SD1.x single-file checkpoint (``model.diffusion_model.*``,
``first_stage_model.*``, ``cond_stage_model.transformer.text_model.*``), fp16 by default.

The diffusers → original-name mapping is :mod:`glassforge.models.ldm_keys` (the same one the checkpoint
tests build their fixtures with).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..models import ldm_keys

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "data" / "glassforge-shapes.safetensors"


def export_run(run_dir, out: str | Path = DEFAULT_WEIGHTS, dtype: torch.dtype = torch.float16) -> Path:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    from .decoder import load_decoder
    from .recipes import Recipe

    run_dir = Path(run_dir)
    ema = run_dir / "ema"
    if not ema.is_dir():
        raise FileNotFoundError(
            f"{ema} not found; expected a run directory with at least one diffusion checkpoint"
        )

    unet = UNet2DConditionModel.from_pretrained(ema / "unet")
    vae = AutoencoderKL.from_pretrained(ema / "vae")
    load_decoder(vae, run_dir)  # the newest fine-tuned decoder, if one was trained alongside
    text = CLIPTextModel.from_pretrained(ema / "text_encoder")
    sd = ldm_keys.unet_to_ldm(unet.state_dict(), dict(unet.config))
    sd |= ldm_keys.vae_to_ldm(vae.state_dict(), len(vae.config.block_out_channels))
    sd |= ldm_keys.clip_hf_to_ldm(text.state_dict(), "cond_stage_model.transformer.")
    sd = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
    recipe = Recipe.load(run_dir / "recipe.json")
    if recipe.prediction == "v":  # the marker tensors ComfyUI and Forge read (glassforge's detection too)
        sd["v_pred"] = torch.tensor([])
    if recipe.zero_terminal_snr:
        sd["ztsnr"] = torch.tensor([])
    meta = {
        "modelspec.title": "glassforge-shapes",
        "modelspec.architecture": "stable-diffusion-v1",
        "modelspec.resolution": f"{recipe.resolution}x{recipe.resolution}",
        "modelspec.prediction_type": "v" if recipe.prediction == "v" else "epsilon",
        "glassforge.recipe": json.dumps(json.loads(recipe.to_json())),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(out), metadata=meta)
    return out
