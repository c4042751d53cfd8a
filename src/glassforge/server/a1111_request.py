"""A1111's ``/sdapi/v1/txt2img`` request and settings, checked and turned into a txt2img job.

Every base field of A1111 1.10 (and Forge's additions) is accepted with A1111's defaults; unknown
fields are ignored, as A1111's pydantic model does. Fields asking for something glassforge cannot do
yet (hires fix, styles, face restoration, scripts, ...) are refused with a 422 saying so, instead of
being silently dropped; fields that do not change a txt2img result (save flags, Forge's distilled CFG,
the hires fields while ``enable_hr`` is false) are accepted and ignored.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..txt2img import GenerationError, Txt2ImgParams
from .generation import Txt2ImgSpec
from .state import ApiError, ServerState

# A1111's timestep samplers take eta from ``eta_ddim`` and write it as "Eta DDIM".
TIMESTEP_SAMPLERS = frozenset({"DDIM", "DDIM CFG++", "PLMS", "UniPC"})
_SIGMA_KEYS = {
    "s_churn": "Sigma churn",
    "s_tmin": "Sigma tmin",
    "s_tmax": "Sigma tmax",
    "s_noise": "Sigma noise",
}


class Txt2ImgRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    denoising_strength: float | None = 0.75
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    firstpass_image: str | None = None
    comments: dict[str, Any] | None = None
    enable_hr: bool = False
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    force_task_id: str | None = None
    sampler_index: str = "Euler"
    script_name: str | None = None
    script_args: list[Any] = []
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = {}
    infotext: str | None = None
    # Forge
    distilled_cfg_scale: float = 3.5
    hr_cfg: float = 1.0
    hr_distilled_cfg: float = 3.5
    hr_additional_modules: list[str] | None = None


# ---------------------------------------------------------------- settings (/options)


def default_options(state: ServerState) -> dict[str, Any]:
    """A1111's settings that glassforge has, with A1111's defaults (``sd_model_checkpoint`` is computed)."""
    return {
        "CLIP_stop_at_last_layers": 1,
        "eta_noise_seed_delta": 0,
        "eta_ancestral": 1.0,
        "eta_ddim": 0.0,
        "s_churn": 0.0,
        "s_tmin": 0.0,
        "s_tmax": 0.0,
        "s_noise": 1.0,
        "randn_source": "CPU",
        "return_grid": True,
        "samples_format": "png",
        "sd_vae": "Automatic",
        "outdir_txt2img_samples": str(state.config.output_dir / "txt2img"),
        "enable_pnginfo": True,
        "live_previews_enable": True,
        "show_progress_every_n_steps": 1,
    }


def _int(key: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ApiError(422, f"option {key}: expected an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError(422, f"option {key}: {value} must be {limit}")
    return int(value)


def _float(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(422, f"option {key}: expected a number, got {value!r}")
    return float(value)


def check_options(values: dict[str, Any]) -> dict[str, Any]:
    """Settings with the types glassforge uses; 422 for a value it cannot honour. Unknown keys pass
    through unchanged (A1111 has hundreds; they are stored and reported back, not used)."""
    out = dict(values)
    for key, value in values.items():
        if key == "CLIP_stop_at_last_layers":
            out[key] = _int(key, value, 1, 12)
        elif key == "eta_noise_seed_delta":
            out[key] = _int(key, value, 0)
        elif key in ("eta_ancestral", "eta_ddim", "s_churn", "s_tmin", "s_tmax", "s_noise"):
            out[key] = _float(key, value)
        elif key == "return_grid":
            if not isinstance(value, bool):
                raise ApiError(422, f"option return_grid: expected true or false, got {value!r}")
        elif key == "randn_source" and value != "CPU":
            raise ApiError(
                422,
                f"option randn_source: glassforge draws noise on the CPU only; got {value!r}, expected 'CPU'",
            )
        elif key == "samples_format" and str(value).lower() != "png":
            raise ApiError(
                422, f"option samples_format: glassforge saves PNG only; got {value!r}, expected 'png'"
            )
        elif key == "sd_model_checkpoint" and not isinstance(value, str):
            raise ApiError(
                422, f"option sd_model_checkpoint: expected a checkpoint title or name, got {value!r}"
            )
    return out


# ---------------------------------------------------------------- txt2img


def _refuse(req: Txt2ImgRequest) -> None:
    def no(message: str) -> None:
        raise ApiError(422, message)

    if req.enable_hr:
        no("enable_hr: the hires fix is not supported yet; send enable_hr false and the final width/height")
    if req.styles:
        no(f"styles: no prompt styles are defined (got {req.styles}); put the style text in the prompt")
    if req.restore_faces:
        no("restore_faces: face restoration is not available; send restore_faces false")
    if req.tiling:
        no("tiling: tileable images are not supported yet; send tiling false")
    if req.seed_resize_from_w > 0 or req.seed_resize_from_h > 0:
        no("seed_resize_from_w/h: seed resize is not supported yet; send -1 (or 0)")
    if req.s_min_uncond:
        no("s_min_uncond: negative guidance minimum sigma is not supported yet; send 0")
    if req.refiner_checkpoint not in (None, "", "None"):
        no("refiner_checkpoint: the refiner is not supported yet; send null")
    if req.firstpass_image:
        no("firstpass_image: not supported (no hires fix yet)")
    if req.script_name:
        no(
            f"script_name: no scripts are available (got {req.script_name!r}); GET /sdapi/v1/scripts lists them"
        )
    if req.alwayson_scripts:
        no(f"alwayson_scripts: no scripts are available (got {', '.join(req.alwayson_scripts)}); send {{}}")
    if req.infotext:
        no("infotext: applying an infotext is not supported; send its values as fields")


def to_spec(state: ServerState, req: Txt2ImgRequest) -> Txt2ImgSpec:
    """Check a request (422 / 404 with one message) and resolve what it leaves open: the model, the
    seeds, the sampler's extra options from the request or the settings."""
    from ..sampling.names import resolve_sampler
    from ..sampling.noise import resolve_seed
    from ..sampling.registry import UnknownNameError
    from ..sampling.schedules import SCHEDULES
    from ..txt2img import validate

    _refuse(req)
    overrides = check_options(req.override_settings or {})
    opts = {**state.options, **overrides}
    model = overrides.get("sd_model_checkpoint") or state.current_model
    state.model_path(model)  # 404 naming the models
    cfg = state.config
    problems = []
    for key in ("width", "height"):
        value = getattr(req, key)
        if not 8 <= value <= cfg.max_size:
            problems.append(f"{key} {value} must be between 8 and {cfg.max_size}")
    if not 1 <= req.steps <= cfg.max_steps:
        problems.append(f"steps {req.steps} must be between 1 and {cfg.max_steps}")
    if req.batch_size < 1 or req.n_iter < 1:
        problems.append(f"batch_size {req.batch_size} and n_iter {req.n_iter} must be at least 1")
    elif req.batch_size * req.n_iter > cfg.max_images:
        problems.append(
            f"batch_size × n_iter = {req.batch_size * req.n_iter} images; at most {cfg.max_images}"
        )
    if not math.isfinite(req.cfg_scale):
        problems.append(f"cfg_scale {req.cfg_scale} must be a finite number")
    if problems:
        raise ApiError(422, "; ".join(problems))
    sampler = req.sampler_name or req.sampler_index or "Euler"
    schedule = req.scheduler or "Automatic"
    try:
        info, _ = resolve_sampler(sampler)
        SCHEDULES[schedule]
        seed = resolve_seed(req.seed)
        subseed = resolve_seed(req.subseed)
    except UnknownNameError as e:
        raise ApiError(422, f"{'sampler_name' if e.kind == 'sampler' else 'scheduler'}: {e}") from None
    except ValueError as e:
        raise ApiError(422, str(e)) from None
    options, extra = _sampler_options(info, req, opts)
    params = Txt2ImgParams(
        prompt=req.prompt,
        negative_prompt=req.negative_prompt,
        seed=seed,
        sampler=sampler,
        schedule=schedule,
        steps=req.steps,
        cfg_scale=req.cfg_scale,
        width=req.width,
        height=req.height,
        batch_size=req.batch_size,
        batch_count=req.n_iter,
        clip_skip=opts["CLIP_stop_at_last_layers"],
        subseed=subseed,
        subseed_strength=req.subseed_strength,
        eta_noise_seed_delta=opts["eta_noise_seed_delta"],
        sampler_options=options,
    )
    try:
        params = validate(params, default_size=512)
    except GenerationError as e:
        raise ApiError(422, str(e)) from None
    return Txt2ImgSpec(params, model, tuple(extra))


def _sampler_options(info, req: Txt2ImgRequest, opts: dict[str, Any]) -> tuple[dict, list[tuple[str, Any]]]:
    """A1111's extra sampler parameters: eta and the churn settings, from the request or else the
    settings, passed only to samplers that take them, and written to the infotext when they differ from
    the sampler's default (A1111: ``Eta``, ``Eta DDIM``, ``Sigma churn`` ...)."""
    timestep = info.name in TIMESTEP_SAMPLERS
    values = {
        "eta": req.eta if req.eta is not None else opts["eta_ddim" if timestep else "eta_ancestral"],
        "s_churn": req.s_churn if req.s_churn is not None else opts["s_churn"],
        "s_tmin": req.s_tmin if req.s_tmin is not None else opts["s_tmin"],
        "s_tmax": (req.s_tmax if req.s_tmax is not None else opts["s_tmax"]) or math.inf,
        "s_noise": req.s_noise if req.s_noise is not None else opts["s_noise"],
    }
    accepted = inspect.signature(info.fn).parameters
    options, extra = {}, []
    for key, value in values.items():
        if key not in accepted:
            continue
        default = info.defaults.get(key, accepted[key].default)
        if float(value) == float(default):
            continue
        options[key] = value
        name = ("Eta DDIM" if timestep else "Eta") if key == "eta" else _SIGMA_KEYS[key]
        extra.append((name, value))
    return options, extra
