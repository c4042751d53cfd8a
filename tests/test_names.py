"""Sampler and schedule names as A1111, Forge and ComfyUI users write them."""

import pytest

from glassforge.sampling import SAMPLERS, SCHEDULES
from glassforge.sampling.names import resolve_sampler
from glassforge.sampling.registry import UnknownNameError

# The list: A1111 1.10 / Forge 2 labels plus Forge-only and CFG++ ones.
A1111_LABELS = [
    "Euler", "Euler a", "Heun", "DPM2", "DPM2 a", "DPM++ 2S a", "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE",
    "DPM++ 2M SDE Heun", "DPM++ 3M SDE", "LMS", "DPM fast", "DPM adaptive", "Restart", "DDIM", "DDIM CFG++",
    "PLMS", "UniPC", "LCM", "DDPM", "HeunPP2", "IPNDM", "IPNDM_V", "DEIS", "Euler CFG++",
]  # fmt: skip
# ComfyUI KSAMPLER names that map onto the samplers above.
COMFY_NAMES = {
    "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "heunpp2": "HeunPP2", "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a", "lms": "LMS", "dpm_fast": "DPM fast", "dpm_adaptive": "DPM adaptive",
    "dpmpp_2s_ancestral": "DPM++ 2S a", "dpmpp_sde": "DPM++ SDE", "dpmpp_sde_gpu": "DPM++ SDE",
    "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_2m_sde_gpu": "DPM++ 2M SDE",
    "dpmpp_2m_sde_heun": "DPM++ 2M SDE Heun", "dpmpp_2m_sde_heun_gpu": "DPM++ 2M SDE Heun",
    "dpmpp_3m_sde": "DPM++ 3M SDE", "dpmpp_3m_sde_gpu": "DPM++ 3M SDE", "ddpm": "DDPM", "lcm": "LCM",
    "ipndm": "IPNDM", "ipndm_v": "IPNDM_V", "deis": "DEIS", "euler_cfg_pp": "Euler CFG++",
}  # fmt: skip
COMFY_SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                    "linear_quadratic", "kl_optimal"]  # fmt: skip
A1111_SCHEDULES = ["Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform", "KL Optimal",
                   "Align Your Steps", "Simple", "Normal", "DDIM", "Beta", "Turbo"]  # fmt: skip


@pytest.mark.parametrize("label", A1111_LABELS)
def test_every_a1111_label_is_registered(label):
    assert label in list(SAMPLERS)  # a display name, not only an alias
    assert SAMPLERS[label].formula and SAMPLERS[label].reference and SAMPLERS[label].description


@pytest.mark.parametrize(("comfy", "label"), COMFY_NAMES.items())
def test_comfy_names_resolve_to_the_same_sampler(comfy, label):
    assert SAMPLERS[comfy].fn is SAMPLERS[label].fn


def test_gpu_variants_share_function_and_options():
    assert SAMPLERS["dpmpp_2m_sde_heun_gpu"] is SAMPLERS["DPM++ 2M SDE Heun"]
    assert SAMPLERS["DPM++ 2M SDE Heun"].defaults.get("solver_type") == "heun"


@pytest.mark.parametrize("name", A1111_SCHEDULES + COMFY_SCHEDULERS)
def test_schedule_names(name):
    assert name in SCHEDULES


def test_comfy_schedule_names_are_aliases():
    assert SCHEDULES["karras"] is SCHEDULES["Karras"]
    assert SCHEDULES["sgm_uniform"] is SCHEDULES["SGM Uniform"]
    assert SCHEDULES["ddim_uniform"] is SCHEDULES["DDIM"]


@pytest.mark.parametrize(
    ("name", "sampler", "schedule"),
    [
        ("DPM++ 2M Karras", "DPM++ 2M", "Karras"),
        ("DPM++ 2M SDE Exponential", "DPM++ 2M SDE", "Exponential"),
        ("DPM++ 2M SDE Heun Karras", "DPM++ 2M SDE Heun", "Karras"),
        ("DPM++ 3M SDE Karras", "DPM++ 3M SDE", "Karras"),
        ("LMS Karras", "LMS", "Karras"),
        ("Euler SGMUniform", "Euler", "SGM Uniform"),
        ("Euler A SGMUniform", "Euler a", "SGM Uniform"),
        ("Euler A Turbo", "Euler a", "Turbo"),
        ("DPM++ 2M Turbo", "DPM++ 2M", "Turbo"),
        ("DPM++ 2M SDE Turbo", "DPM++ 2M SDE", "Turbo"),
        ("DDPM Karras", "DDPM", "Karras"),
        ("LCM Karras", "LCM", "Karras"),
        ("euler_ancestral_turbo", "Euler a", "Turbo"),
        ("dpmpp_2m_sde_sgm_uniform", "DPM++ 2M SDE", "SGM Uniform"),
        ("k_dpmpp_2m_ka", "DPM++ 2M", "Karras"),
        ("k_dpmpp_2m_sde_heun_exp", "DPM++ 2M SDE Heun", "Exponential"),
        ("DPM++ 2M", "DPM++ 2M", None),
        ("k_euler_a", "Euler a", None),
        ("euler_ancestral", "Euler a", None),
    ],
)
def test_combined_and_legacy_names(name, sampler, schedule):
    info, sched = resolve_sampler(name)
    assert info is SAMPLERS[sampler]
    assert sched == schedule


def test_unknown_sampler_names_the_known_ones():
    with pytest.raises(UnknownNameError) as err:
        resolve_sampler("Euler b Karras")
    assert "unknown sampler 'Euler b Karras'" in str(err.value)
    assert "DPM++ 2M" in str(err.value)
    with pytest.raises(UnknownNameError, match="unknown schedule 'Karras2'"):
        SCHEDULES["Karras2"]


def test_default_schedules_follow_a1111():
    assert SAMPLERS["DPM++ 2M"].default_schedule == "Karras"
    assert SAMPLERS["DPM++ 2M SDE"].default_schedule == "Exponential"
    assert SAMPLERS["Euler a"].default_schedule is None
    assert SAMPLERS["DPM2"].discard_penultimate_sigma
    assert SAMPLERS["DPM++ 3M SDE"].discard_penultimate_sigma
