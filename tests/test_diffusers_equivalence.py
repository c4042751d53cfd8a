"""Our txt2img path against diffusers' StableDiffusionPipeline on the same weights, noise and σ schedule.

Both run Euler over the same Karras sigmas from the same initial noise, with the same text embeddings; diffusers
applies CFG on ε and steps with its EulerDiscreteScheduler, we apply CFG on the denoised estimate and step with our
sampler. The final latents must agree to float32 rounding — for ε-prediction (SD1) and v-prediction (SD2).
"""

import pytest
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
from diffusers.utils import logging as diffusers_logging

import checkpoint_fixtures as fx
from glassforge.models.loader import load_model
from glassforge.models.text_encoding import encode_prompt
from glassforge.sampling.schedules import build_sigmas
from glassforge.txt2img import Txt2ImgParams, txt2img


@pytest.mark.parametrize(("family", "prediction"), [("sd1", "eps"), ("sd2", "v")])
def test_euler_latents_match_diffusers(tmp_path, family, prediction):
    path = fx.write_single_file(fx.build(fx.TINY[family]), tmp_path / f"{family}.safetensors")
    model = load_model(path, dtype=torch.float32, prediction=prediction)
    steps, seed, cfg = 8, 3, 5.0
    ours = txt2img(
        model,
        Txt2ImgParams("a red circle", negative_prompt="blue", seed=seed, steps=steps, width=32, height=32,
                      sampler="Euler", schedule="Karras", cfg_scale=cfg),
    )  # fmt: skip
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="linspace",  # init_noise_sigma = σ_max, as A1111 scales the noise
        prediction_type="v_prediction" if prediction == "v" else "epsilon",
    )
    diffusers_logging.set_verbosity_error()
    pipe = StableDiffusionPipeline(
        vae=model.vae, text_encoder=model.text_encoders[0].model, tokenizer=None, unet=model.unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    cond = encode_prompt(model, "a red circle")
    uncond = encode_prompt(model, "blue", is_negative=True)
    sigmas = build_sigmas(model.schedule.sigmas, steps, "Karras")
    latent_shape = (model.latent_channels, 32 // 2, 32 // 2)  # the tiny VAE has 2 levels: 1/2 scale
    noise = torch.randn(latent_shape, generator=torch.Generator().manual_seed(seed))[None]
    theirs = pipe(
        prompt_embeds=cond.context,
        negative_prompt_embeds=uncond.context,
        latents=noise,
        sigmas=sigmas.tolist(),
        guidance_scale=cfg,
        output_type="latent",
        height=32,
        width=32,
    ).images
    assert torch.equal(torch.as_tensor(scheduler.sigmas), sigmas)  # the same schedule was run
    scale = ours.latents.abs().max()
    assert (theirs - ours.latents).abs().max() <= 1e-5 * scale
