"""Text to image with A1111's semantics, end to end.

prompt → tokens → text encoder → Conditioning (cond, uncond)
seed → per-image CPU generators → ε × σ_0 → x_T
UNet → ε/v adapter → D(x, σ) → CFG on denoised → sampler over the σ schedule → x_0
x_0 / scale factor → VAE decode → clamp((x + 1)/2) → uint8 (truncated, as A1111) → PNG with infotext
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from PIL import Image
from torch import Tensor

from .infotext import GenerationParams, a1111_schedule_label
from .models.patcher import UNetPatcher
from .models.text_encoding import Conditioning, encode_prompt
from .models.unet import UNetNetwork, sdxl_time_ids
from .models.vae import decode, encode, to_pil, vae_factor
from .pipeline_events import Decoded, PromptEncoded, Sampled
from .prompts import parse_prompt
from .sampling.denoisers import PredictionDenoiser
from .sampling.events import EventHandler
from .sampling.guidance import CFGDenoiser
from .sampling.names import resolve_sampler
from .sampling.noise import resolve_seed
from .sampling.run import CONVENTIONS, SampleResult, sample_sigmas
from .sampling.schedules import SCHEDULES, build_sigmas


class GenerationError(ValueError):
    """Parameters that cannot be generated; the message says what is expected."""


@dataclass
class Txt2ImgParams:
    prompt: str
    negative_prompt: str = ""
    seed: int = -1
    sampler: str = "DPM++ 2M"
    schedule: str = "Automatic"
    steps: int = 20
    cfg_scale: float = 7.0
    width: int | None = None  # None → the family's default size
    height: int | None = None
    batch_size: int = 1
    batch_count: int = 1
    clip_skip: int = 1
    subseed: int = 0
    subseed_strength: float = 0.0
    eta_noise_seed_delta: int = 0
    sampler_options: dict = field(default_factory=dict)
    convention: str = "a1111"  # or "comfyui": whose seed, noise and σ → timestep rules (sampling/run.py)


@dataclass
class Txt2ImgResult:
    images: list[Image.Image]
    infotexts: list[str]
    seeds: list[int]
    latents: Tensor
    params: Txt2ImgParams  # with the seed and size resolved


def validate(params: Txt2ImgParams, default_size: int) -> Txt2ImgParams:
    width, height = params.width or default_size, params.height or default_size
    problems = []
    for name, value in (("width", width), ("height", height)):
        if value < 8 or value % 8:
            problems.append(f"{name} {value} must be a positive multiple of 8")
    if params.steps < 1:
        problems.append(f"steps {params.steps} must be at least 1")
    if params.batch_size < 1 or params.batch_count < 1:
        problems.append("batch size and batch count must be at least 1")
    if params.clip_skip < 1:
        problems.append(f"clip skip {params.clip_skip} must be at least 1")
    if params.convention not in CONVENTIONS:
        problems.append(f"convention {params.convention!r} must be one of {', '.join(CONVENTIONS)}")
    if problems:
        raise GenerationError("; ".join(problems))
    resolve_sampler(params.sampler)  # raises UnknownNameError naming the samplers
    SCHEDULES[params.schedule]  # likewise
    return replace(params, width=width, height=height, seed=resolve_seed(params.seed))


def text_schedule(prompt: str, steps: int, negative: bool) -> tuple[tuple[int, str], ...]:
    """A1111's prompt-editing schedule: (last step, text) pairs — one pair without ``[from:to:when]`` or
    ``[a|b]``."""
    parsed = parse_prompt(prompt, steps, negative=negative)
    if len(parsed.subprompts) > 1:
        raise GenerationError(
            "composable prompts ('AND') are not supported yet; remove 'AND' from the prompt"
        )
    (schedule,) = parsed.schedules
    return tuple((s.end_at_step, s.text) for s in schedule)


def encode_schedule(
    model, prompt: str, steps: int, clip_skip: int, negative: bool
) -> list[tuple[int, Conditioning]]:
    """Each text of a prompt's editing schedule encoded once: [(last step, Conditioning)]."""
    encoded: dict[str, Conditioning] = {}
    out = []
    for end, text in text_schedule(prompt, steps, negative):
        if text not in encoded:
            encoded[text] = encode_prompt(model, text, clip_skip=clip_skip, is_negative=negative)
        out.append((end, encoded[text]))
    return out


def _inpainting_concat(model, height: int, width: int) -> Tensor:
    """What A1111 feeds an inpainting UNet in txt2img: a mask of ones and the latent of an all-grey
    (fully masked) image. A1111 samples that latent; the posterior mean is used here (deterministic)."""
    grey = torch.zeros(1, 3, height, width)  # 0.5 in [0, 1] is 0 in the VAE's [−1, 1]
    latent = encode(model.vae, grey.to(next(model.vae.parameters()).device), model.vae_scale_factor)
    return torch.cat([torch.ones_like(latent[:, :1]), latent], dim=1)


def _cond_dict(c: Conditioning, batch: int, time_ids: Tensor | None, concat: Tensor | None) -> dict:
    d = {"context": c.context.expand(batch, -1, -1)}
    if concat is not None:
        d["concat"] = concat.expand(batch, -1, -1, -1)
    if c.pooled is not None:
        d["pooled"] = c.pooled.expand(batch, -1)
        d["time_ids"] = time_ids.expand(batch, -1)
    return d


def sample_model(
    model,
    patcher: UNetPatcher,
    cond: Conditioning,
    uncond: Conditioning,
    *,
    width: int,
    height: int,
    batch_size: int = 1,
    sampler: str = "Euler",
    schedule: str = "Automatic",
    steps: int = 20,
    cfg_scale: float = 7.0,
    seed: int = 0,
    subseed: int = 0,
    subseed_strength: float = 0.0,
    eta_noise_seed_delta: int = 0,
    convention: str = "a1111",
    sigmas: Tensor | None = None,
    latent_image: Tensor | None = None,
    add_noise: bool = True,
    denoise: float = 1.0,
    on_event: EventHandler | None = None,
    sampler_options: dict | None = None,
    cond_schedule: list[tuple[int, Conditioning]] | None = None,
    uncond_schedule: list[tuple[int, Conditioning]] | None = None,
) -> SampleResult:
    """The sampling path every front end shares (txt2img, the workflow's sampler nodes, the servers):
    a model and encoded prompts → guided denoiser → sampler over the σ schedule → latents (model space).

    ``convention`` "a1111" or "comfyui" selects whose seed/noise and σ → timestep rules apply
    (see :mod:`glassforge.sampling.run`). ``sigmas``: an explicit schedule (ComfyUI's custom sampling);
    else one is built from ``schedule``, ``steps`` and ``denoise``. ``latent_image``: the starting latent
    the noise is added to (model space, default zeros). ``cond_schedule``/``uncond_schedule``: A1111's
    prompt editing, [(last step, Conditioning)]: step i (from 0, counted by the sampler's steps) uses the first
    entry with i ≤ last step, as A1111's ``reconstruct_cond_batch`` does.
    """
    info, named_schedule = resolve_sampler(sampler)
    if named_schedule is not None and schedule.casefold() == "automatic":
        schedule = named_schedule
    if sigmas is None:
        sigmas = build_sigmas(model.schedule.sigmas, steps, schedule, sampler=info, denoise=denoise)
    else:
        schedule = "custom"
    factor = vae_factor(model.vae)
    if width % factor or height % factor:
        raise GenerationError(f"width and height must be multiples of {factor} for this model's VAE")
    time_ids = sdxl_time_ids(height, width) if cond.pooled is not None else None
    device = next(model.unet.parameters()).device
    net = UNetNetwork(patcher, micro_batch=1 if device.type == "cpu" else None, images=batch_size)
    table = model.schedule.with_timestep_rule("nearest") if convention == "comfyui" else model.schedule
    denoiser = PredictionDenoiser(net, table, model.prediction, on_event=on_event)
    concat = _inpainting_concat(model, height, width) if model.in_channels == 9 else None
    guider = CFGDenoiser(
        denoiser,
        _cond_dict(cond, batch_size, time_ids, concat),
        _cond_dict(uncond, batch_size, time_ids, concat),
        cfg_scale,
        on_event=on_event,
        hooks=patcher.cfg_hooks(),
    )
    stepper = on_event
    if cond_schedule or uncond_schedule:
        stepper = _edit_prompts(guider, on_event, [
            [(end, _cond_dict(c, batch_size, time_ids, concat)) for end, c in sched or [(steps, default)]]
            for sched, default in ((cond_schedule, cond), (uncond_schedule, uncond))
        ])  # fmt: skip
    return sample_sigmas(
        guider,
        sigmas,
        (model.latent_channels, height // factor, width // factor),
        info,
        seed=seed,
        batch_size=batch_size,
        subseed=subseed,
        subseed_strength=subseed_strength,
        eta_noise_seed_delta=eta_noise_seed_delta,
        convention=convention,
        device=device,
        on_event=stepper,
        latent_image=latent_image,
        add_noise=add_noise,
        model_sigma_max=model.schedule.sigma_max,
        schedule=schedule,
        **(sampler_options or {}),
    )


def _edit_prompts(guider: CFGDenoiser, on_event: EventHandler | None, schedules: list) -> EventHandler:
    """Switch the guider's cond/uncond per sampler step (A1111's prompt editing); returns the sampler's listener."""
    from .sampling.events import SamplerStep

    state = {"step": 0}

    def pick(schedule):
        return next((d for end, d in schedule if state["step"] <= end), schedule[-1][1])

    def apply() -> None:
        guider.cond, guider.uncond = pick(schedules[0]), pick(schedules[1])

    def listener(event) -> None:
        if on_event is not None:
            on_event(event)
        if isinstance(event, SamplerStep):
            state["step"] += 1
            apply()

    apply()
    return listener


@torch.no_grad()
def txt2img(
    model,
    params: Txt2ImgParams,
    *,
    model_name: str | None = None,
    model_hash: str | None = None,
    on_event: EventHandler | None = None,
    on_image: Callable[[int, Image.Image, str, int], None] | None = None,
    unet: UNetPatcher | None = None,
) -> Txt2ImgResult:
    """Generate ``batch_count`` × ``batch_size`` images with ``model`` (a LoadedModel).

    ``unet``: a patcher clone of ``model.unet`` whose patches (FreeU, attention observers, CFG hooks,
    weight patches) apply to this generation and are recorded in the infotext; default: no patches.
    """
    p = validate(params, model.default_size)
    patcher = unet if unet is not None else UNetPatcher(model.unet)
    if patcher.model is not model.unet:
        raise GenerationError("the UNet patcher holds a different UNet than the model; clone model.unet's")
    cond_schedule = encode_schedule(model, p.prompt, p.steps, p.clip_skip, negative=False)
    uncond_schedule = encode_schedule(model, p.negative_prompt, p.steps, p.clip_skip, negative=True)
    cond, uncond = cond_schedule[0][1], uncond_schedule[0][1]
    if on_event is not None:
        on_event(PromptEncoded(cond, uncond, p.clip_skip))
    images, infotexts, seeds, latents = [], [], [], []
    for n in range(p.batch_count):
        result = sample_model(
            model,
            patcher,
            cond,
            uncond,
            width=p.width,
            height=p.height,
            batch_size=p.batch_size,
            sampler=p.sampler,
            schedule=p.schedule,
            steps=p.steps,
            cfg_scale=p.cfg_scale,
            seed=p.seed + n * p.batch_size if not p.subseed_strength else p.seed,
            subseed=p.subseed + n * p.batch_size,
            subseed_strength=p.subseed_strength,
            eta_noise_seed_delta=p.eta_noise_seed_delta,
            convention=p.convention,
            on_event=on_event,
            sampler_options=p.sampler_options,
            cond_schedule=cond_schedule if len(cond_schedule) > 1 else None,
            uncond_schedule=uncond_schedule if len(uncond_schedule) > 1 else None,
        )
        if on_event is not None:
            on_event(Sampled.of(n, result, model.schedule))
        pixels = decode(model.vae, result.latents, model.vae_scale_factor)
        if on_event is not None:
            on_event(Decoded(n, result.latents, model.vae_scale_factor, pixels))
        for i, image in enumerate(to_pil(pixels)):
            text = GenerationParams(
                prompt=p.prompt,
                negative_prompt=p.negative_prompt,
                steps=p.steps,
                sampler=result.sampler.name,
                schedule=a1111_schedule_label(result.sampler.name, result.schedule),
                cfg_scale=p.cfg_scale,
                seed=result.seeds[i],
                width=p.width,
                height=p.height,
                model_hash=model_hash,
                model=model_name,
                variation_seed=p.subseed + n * p.batch_size + i if p.subseed_strength else None,
                variation_seed_strength=p.subseed_strength,
                clip_skip=p.clip_skip,
                ensd=p.eta_noise_seed_delta,
                extra=patcher.infotext(),
            ).to_infotext()
            images.append(image)
            infotexts.append(text)
            seeds.append(result.seeds[i])
            if on_image is not None:
                on_image(len(images) - 1, image, text, result.seeds[i])
        latents.append(result.latents)
    return Txt2ImgResult(images, infotexts, seeds, torch.cat(latents), p)
