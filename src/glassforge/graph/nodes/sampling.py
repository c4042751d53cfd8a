"""Sampling nodes (the seeds' NoiseConditioning → IterativeRefinement → SamplerApplication).

ComfyUI's nodes follow ComfyUI's conventions by default (one batch-shaped noise from the seed, σ → t by
nearest table index, noise × sqrt(1 + σ_0²) at full denoise), so an exported workflow gives ComfyUI's
image; the optional ``convention`` input "a1111" gives A1111's (per-image seeds, interpolated t) — the
same code path, other data (see :func:`glassforge.txt2img.sample_model`).
"""

from __future__ import annotations

from ...sampling.names import resolve_sampler
from ...sampling.samplers import SAMPLERS
from ...sampling.schedules import SCHEDULES
from ..registry import NodeRegistry
from ..schema import Input, NodeSchema, Output
from ..values import GuiderValue, Latent, NoiseValue, SamplerValue, SigmasValue

# ComfyUI's SAMPLER_NAMES / SCHEDULER_NAMES order first (its frontend shows them), then A1111's labels
COMFY_SAMPLERS = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
    "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "seeds_2", "seeds_3", "exp_heun_2_x0",
    "exp_heun_2_x0_sde", "ddim", "uni_pc", "uni_pc_bh2",
)  # fmt: skip
COMFY_SCHEDULERS = ("simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                    "linear_quadratic", "kl_optimal")  # fmt: skip
SAMPLER_CHOICES = tuple(n for n in COMFY_SAMPLERS if n in SAMPLERS) + tuple(SAMPLERS)
SCHEDULER_CHOICES = tuple(n for n in COMFY_SCHEDULERS if n in SCHEDULES) + tuple(SCHEDULES)
CONVENTION = Input(
    "convention", "COMBO", "whose seed/noise rules to follow: ComfyUI's (default) or A1111's",
    default="comfyui", choices=("comfyui", "a1111"), optional=True,
)  # fmt: skip
A1111_SEED_INPUTS = (
    Input("subseed", "INT", "A1111 variation seed", default=0, min=0, max=2**32 - 1, optional=True),
    Input("subseed_strength", "FLOAT", "A1111 variation strength", default=0.0, min=0, max=1, optional=True),
    Input("eta_noise_seed_delta", "INT", "A1111 ENSD", default=0, min=0, max=2**32 - 1, optional=True),
)
SEED = {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "extra": {"control_after_generate": True}}


def _sampling_listener(ctx, node_total: int, family: str):
    """Forwards sampling events to the run's stream, turns sampler steps into progress (and previews),
    and stops between steps when interrupted."""
    from ...sampling.events import SamplerStep
    from ..events import Preview

    state = {"done": 0, "denoised": None}

    def on_event(event) -> None:
        ctx.emit(event)
        if isinstance(event, SamplerStep):
            state["done"] += 1
            state["denoised"] = event.denoised
            ctx.progress(state["done"], node_total)
            if ctx.env is not None and getattr(ctx.env, "preview", "none") != "none":
                ctx.emit(Preview(ctx.prompt_id, ctx.node_id, _preview_image(event.denoised, family)))
            ctx.check_interrupt()

    return on_event, state


def _preview_image(denoised, family: str):
    from ...models.vae import latent_preview, to_pil

    return to_pil(latent_preview(denoised[:1], family) * 2 - 1)[0]


def _params(model, positive, negative, result, *, steps, cfg, width, height, convention, extra=None) -> dict:
    from ...infotext import a1111_schedule_label

    schedule = result.schedule if result.schedule in SCHEDULES else "Automatic"
    return {
        "prompt": positive.text,
        "negative_prompt": negative.text,
        "steps": steps,
        "sampler": result.sampler.name,
        "schedule": a1111_schedule_label(result.sampler.name, schedule),
        "cfg_scale": cfg,
        "seeds": list(result.seeds),
        "width": width,
        "height": height,
        "model": model.managed.path.stem,
        "model_hash": model.managed.hash,
        "clip_skip": positive.clip_skip,
        "convention": convention,
        # A1111 ignores keys it does not know; glassforge reads it back: ComfyUI's noise is not A1111's
        "extra": {
            **model.patcher.infotext(),
            **(extra or {}),
            **({"Noise convention": "ComfyUI"} if convention == "comfyui" else {}),
        },
    }


def _a1111_schedules(model, positive, negative, steps: int) -> dict:
    """A1111's prompt handling that needs the step count: prompt editing (``[from:to:when]``, ``[a|b]``)
    as per-step schedules, and SDXL's all-zero uncond for an empty negative prompt (txt2img's rules)."""
    from ...txt2img import encode_schedule, text_schedule

    out = {}
    for key, value, negative_side in (
        ("cond_schedule", positive, False),
        ("uncond_schedule", negative, True),
    ):
        if value.clip is None:
            continue
        # parsing is cheap; the text encoder runs again only where the CLIPTextEncode node's vectors differ
        # from A1111's (an edited prompt, SDXL's empty negative), so plain prompts keep their cached encoding
        edited = len(text_schedule(value.text, steps, negative_side)) > 1
        sdxl_empty = negative_side and model.family == "sdxl" and value.text == ""
        if edited or sdxl_empty:
            out[key] = encode_schedule(
                value.clip.model, value.text, steps, value.clip_skip, negative=negative_side
            )
    return out


def run_sampler(ctx, model, positive, negative, latent, *, sampler, cfg, seed, convention="comfyui",
                scheduler="Automatic", steps=20, denoise=1.0, sigmas=None, add_noise=True, extra=None, **seeds):  # fmt: skip
    """The one sampling path of every sampling node; returns (Latent, last denoised Latent, SampleResult)."""
    import torch

    from ...txt2img import sample_model

    m = model.model
    factor = m.vae_downscale
    b, c, h, w = latent.samples.shape
    if latent.downscale != factor or c != m.latent_channels:
        if not latent.empty:
            raise ValueError(
                f"the latent has {c} channels at 1/{latent.downscale} of the pixel size, this model's VAE makes "
                f"{m.latent_channels} at 1/{factor}: encode images with this model's VAE"
            )
        h, w = h * latent.downscale // factor, w * latent.downscale // factor
        latent = Latent(torch.zeros(b, m.latent_channels, h, w), downscale=factor, empty=True)
    total = steps if sigmas is None else max(len(sigmas) - 1, 0)
    listener, state = _sampling_listener(ctx, total, m.family)
    schedules = _a1111_schedules(m, positive, negative, total) if convention == "a1111" else {}
    result = sample_model(
        m, model.patcher, positive.encoded, negative.encoded,
        width=w * factor, height=h * factor, batch_size=b, sampler=sampler, schedule=scheduler, steps=steps,
        cfg_scale=cfg, seed=seed, convention=convention, sigmas=sigmas, denoise=denoise,
        latent_image=None if latent.empty else latent.samples, add_noise=add_noise,
        on_event=listener, **schedules, **seeds,
    )  # fmt: skip
    params = _params(model, positive, negative, result, steps=steps, cfg=cfg, width=w * factor,
                     height=h * factor, convention=convention, extra=extra)  # fmt: skip
    if seeds.get("subseed_strength"):
        params["variation_seed"] = seeds.get("subseed", 0)
        params["variation_seed_strength"] = seeds["subseed_strength"]
    if seeds.get("eta_noise_seed_delta"):
        params["ensd"] = seeds["eta_noise_seed_delta"]
    if denoise < 1:
        params["denoising_strength"] = denoise
    out = Latent(result.latents, params, downscale=factor)
    last = state["denoised"] if state["denoised"] is not None else result.latents
    return out, Latent(last, params, downscale=factor), result


KSAMPLER_COMMON = (
    Input("steps", "INT", "number of sampler steps", default=20, min=1, max=10000),
    Input(
        "cfg",
        "FLOAT",
        "classifier-free guidance scale",
        default=8.0,
        min=0.0,
        max=100.0,
        step=0.1,
        extra={"round": 0.01},
    ),
    Input("sampler_name", "COMBO", "the update rule", default="euler", choices=SAMPLER_CHOICES),
    Input("scheduler", "COMBO", "how σ falls over the steps", default="normal", choices=SCHEDULER_CHOICES),
    Input("positive", "CONDITIONING", "what to draw"),
    Input("negative", "CONDITIONING", "what to steer away from"),
    Input("latent_image", "LATENT", "the starting latent (empty for text to image)"),
)
KSAMPLER_INPUTS = (
    Input("model", "MODEL"),
    Input("seed", "INT", "noise seed", **SEED),
    *KSAMPLER_COMMON,
    Input(
        "denoise",
        "FLOAT",
        "fraction of the schedule to run (1 = from pure noise)",
        default=1.0,
        min=0.0,
        max=1.0,
        step=0.01,
    ),
)


def register(reg: NodeRegistry) -> None:
    common = KSAMPLER_COMMON

    @reg.node(
        NodeSchema(
            "KSampler", "KSampler", "sampling",
            "Denoises the latent: noise from the seed, then the sampler's steps over the σ schedule with CFG.",
            (*KSAMPLER_INPUTS, CONVENTION, *A1111_SEED_INPUTS),
            (Output("LATENT"),),
            role="NoiseConditioning + IterativeRefinement: seed → noise x_T, then x_T → x_0 one step at a time.",
        )
    )  # fmt: skip
    def ksampler(ctx, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                 denoise, convention="comfyui", **seeds):  # fmt: skip
        out, _, _ = run_sampler(ctx, model, positive, negative, latent_image, sampler=sampler_name, cfg=cfg,
                             seed=seed, convention=convention, scheduler=scheduler, steps=steps, denoise=denoise,
                             **seeds)  # fmt: skip
        return (out,)

    @reg.node(
        NodeSchema(
            "KSamplerAdvanced", "KSampler (Advanced)", "sampling",
            "KSampler over a slice of the schedule (start/end step), with or without adding noise.",
            (Input("model", "MODEL"),
             Input("add_noise", "COMBO", default="enable", choices=("enable", "disable")),
             Input("noise_seed", "INT", "noise seed", **SEED), *common,
             Input("start_at_step", "INT", default=0, min=0, max=10000),
             Input("end_at_step", "INT", default=10000, min=0, max=10000),
             Input("return_with_leftover_noise", "COMBO", default="disable", choices=("disable", "enable")),
             CONVENTION),
            (Output("LATENT"),),
            role="IterativeRefinement over part of the σ schedule (for two-stage workflows).",
        )
    )  # fmt: skip
    def ksampler_advanced(ctx, model, add_noise, noise_seed, steps, cfg, sampler_name, scheduler, positive,
                          negative, latent_image, start_at_step, end_at_step, return_with_leftover_noise,
                          convention="comfyui"):  # fmt: skip
        from ...sampling.schedules import build_sigmas

        info, named = resolve_sampler(sampler_name)
        sigmas = build_sigmas(model.model.schedule.sigmas, steps, named or scheduler, sampler=info)
        if end_at_step < steps:
            sigmas = sigmas[: end_at_step + 1].clone()
            if return_with_leftover_noise != "enable":
                sigmas[-1] = 0
        if start_at_step >= len(sigmas) - 1:
            return (latent_image,)
        sigmas = sigmas[start_at_step:]
        out, _, _ = run_sampler(ctx, model, positive, negative, latent_image, sampler=sampler_name, cfg=cfg,
                             seed=noise_seed, convention=convention, steps=steps, sigmas=sigmas,
                             add_noise=add_noise == "enable")  # fmt: skip
        return (out,)

    @reg.node(NodeSchema("KSamplerSelect", "KSamplerSelect", "sampling/custom_sampling/samplers",
                         "Picks a sampler (the update rule) for SamplerCustomAdvanced.",
                         (Input("sampler_name", "COMBO", default="euler", choices=SAMPLER_CHOICES),),
                         (Output("SAMPLER"),), role="Chooses the IterativeRefinement rule."))  # fmt: skip
    def ksampler_select(ctx, sampler_name):
        return (SamplerValue(sampler_name),)

    @reg.node(NodeSchema("BasicScheduler", "BasicScheduler", "sampling/custom_sampling/schedulers",
                         "The model's σ schedule for a number of steps.",
                         (Input("model", "MODEL"),
                          Input("scheduler", "COMBO", default="normal", choices=SCHEDULER_CHOICES),
                          Input("steps", "INT", default=20, min=1, max=10000),
                          Input("denoise", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01)),
                         (Output("SIGMAS"),), role="Decides how much noise is left after each step."))  # fmt: skip
    def basic_scheduler(ctx, model, scheduler, steps, denoise):
        from ...sampling.schedules import build_sigmas

        return (
            SigmasValue(
                build_sigmas(model.model.schedule.sigmas, steps, scheduler, denoise=denoise), scheduler
            ),
        )

    @reg.node(NodeSchema("KarrasScheduler", "KarrasScheduler", "sampling/custom_sampling/schedulers",
                         "Karras et al.'s σ schedule: σ_i = (σ_max^(1/ρ) + i/(n−1)(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ.",
                         (Input("steps", "INT", default=20, min=1, max=10000),
                          Input("sigma_max", "FLOAT", default=14.614642, min=0.0, max=5000.0, step=0.01),
                          Input("sigma_min", "FLOAT", default=0.0291675, min=0.0, max=5000.0, step=0.01),
                          Input("rho", "FLOAT", default=7.0, min=0.0, max=100.0, step=0.01)),
                         (Output("SIGMAS"),), role="Decides how much noise is left after each step."))  # fmt: skip
    def karras_scheduler(ctx, steps, sigma_max, sigma_min, rho):
        import torch

        ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
        lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
        sigmas = (hi + ramp * (lo - hi)) ** rho
        return (SigmasValue(torch.cat([sigmas, sigmas.new_zeros(1)]).float(), "karras"),)

    @reg.node(NodeSchema("CFGGuider", "CFGGuider", "sampling/custom_sampling/guiders",
                         "Classifier-free guidance: D = D_uncond + cfg·(D_cond − D_uncond).",
                         (Input("model", "MODEL"), Input("positive", "CONDITIONING"),
                          Input("negative", "CONDITIONING"),
                          Input("cfg", "FLOAT", default=8.0, min=0.0, max=100.0, step=0.1, extra={"round": 0.01})),
                         (Output("GUIDER"),), role="Combines the prompt's and the negative prompt's predictions."))  # fmt: skip
    def cfg_guider(ctx, model, positive, negative, cfg):
        return (GuiderValue(model, positive, negative, cfg),)

    @reg.node(NodeSchema("RandomNoise", "RandomNoise", "sampling/custom_sampling/noise",
                         "Initial noise from a seed (ComfyUI: one CPU draw for the whole batch).",
                         (Input("noise_seed", "INT", **SEED), CONVENTION), (Output("NOISE"),),
                         role="NoiseConditioning: the seed's Gaussian noise, the starting point x_T."))  # fmt: skip
    def random_noise(ctx, noise_seed, convention="comfyui"):
        return (NoiseValue(noise_seed, convention),)

    @reg.node(NodeSchema("DisableNoise", "DisableNoise", "sampling/custom_sampling/noise",
                         "No initial noise: sampling starts from the latent as it is.", (), (Output("NOISE"),),
                         role="Starts IterativeRefinement from a given latent."))  # fmt: skip
    def disable_noise(ctx):
        return (NoiseValue(0, "comfyui", add=False),)

    @reg.node(NodeSchema("SamplerCustomAdvanced", "SamplerCustomAdvanced", "sampling/custom_sampling",
                         "Runs a sampler with separately chosen noise, guider and σ schedule.",
                         (Input("noise", "NOISE"), Input("guider", "GUIDER"), Input("sampler", "SAMPLER"),
                          Input("sigmas", "SIGMAS"), Input("latent_image", "LATENT")),
                         (Output("LATENT", "output"), Output("LATENT", "denoised_output")),
                         role="SamplerApplication: the pieces of the sampling step wired by hand."))  # fmt: skip
    def sampler_custom_advanced(ctx, noise, guider, sampler, sigmas, latent_image):
        out, denoised, _ = run_sampler(
            ctx, guider.model, guider.positive, guider.negative, latent_image, sampler=sampler.name,
            cfg=guider.cfg, seed=noise.seed, convention=noise.convention, steps=max(len(sigmas.sigmas) - 1, 1),
            sigmas=sigmas.sigmas, add_noise=noise.add,
        )  # fmt: skip
        return (out, denoised)
