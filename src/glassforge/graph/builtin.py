"""Built-in workflows: ``glassforge generate`` is the text-to-image graph below, run by the executor —
the same nodes a ComfyUI workflow uses, with A1111's convention and file naming selected.

    CheckpointLoaderSimple ─MODEL─▶ [FreeU_V2] ─▶ KSampler ─LATENT─▶ VAEDecode ─IMAGE─▶ SaveImage
                           ─CLIP──▶ CLIPSetLastLayer ─▶ CLIPTextEncode ×2 ─CONDITIONING─▶ KSampler
                           ─VAE───▶ VAEDecode                   EmptyLatentImage ─LATENT─▶ KSampler
"""

from __future__ import annotations

from ..sampling.names import resolve_sampler


def txt2img_workflow(
    params,
    ckpt_name: str,
    *,
    freeu=None,
    convention: str = "a1111",
    filename_format: str = "a1111",
    filename_prefix: str = "glassforge",
) -> dict:
    """An API-format workflow for one batch of ``params`` (a validated ``Txt2ImgParams``: seed and size
    resolved). ``freeu``: a resolved :class:`~glassforge.models.freeu.FreeU` or None."""
    info, named = resolve_sampler(params.sampler)
    scheduler = named if named is not None and params.schedule.casefold() == "automatic" else params.schedule
    model = ["1", 0]
    wf: dict[str, dict] = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "3": {
            "class_type": "CLIPSetLastLayer",
            "inputs": {"clip": ["1", 1], "stop_at_clip_layer": -params.clip_skip},
        },
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": params.prompt, "clip": ["3", 0]}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": params.negative_prompt, "clip": ["3", 0]}},
        "6": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": params.width, "height": params.height, "batch_size": params.batch_size},
        },
    }
    if freeu is not None:
        wf["2"] = {
            "class_type": "FreeU_V2" if freeu.version == 2 else "FreeU",
            "inputs": {"model": ["1", 0], "b1": freeu.b1, "b2": freeu.b2, "s1": freeu.s1, "s2": freeu.s2},
        }
        model = ["2", 0]
    wf["7"] = {
        "class_type": "KSampler",
        "inputs": {
            "model": model,
            "seed": params.seed,
            "steps": params.steps,
            "cfg": params.cfg_scale,
            "sampler_name": info.name,
            "scheduler": scheduler,
            "positive": ["4", 0],
            "negative": ["5", 0],
            "latent_image": ["6", 0],
            "denoise": 1.0,
            "convention": convention,
            "subseed": params.subseed,
            "subseed_strength": params.subseed_strength,
            "eta_noise_seed_delta": params.eta_noise_seed_delta,
        },
    }
    wf["8"] = {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}}
    wf["9"] = {
        "class_type": "SaveImage",
        "inputs": {
            "images": ["8", 0],
            "filename_prefix": filename_prefix,
            "filename_format": filename_format,
        },
    }
    return dict(sorted(wf.items(), key=lambda kv: int(kv[0])))
