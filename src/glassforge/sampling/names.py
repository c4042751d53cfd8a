"""Resolving what users type into a sampler and a schedule.

* Display labels, A1111 aliases and ComfyUI names: ``"DPM++ 2M"``, ``"k_dpmpp_2m"``, ``"dpmpp_2m"``.
* Legacy combined names (A1111 ≤ 1.8): ``"DPM++ 2M Karras"`` → DPM++ 2M + Karras. As in A1111 1.9+,
  a name ending in " " + a schedule's label or alias has that suffix split off.
* Forge 1's combined names: ``"Euler A Turbo"`` → Euler a + Turbo, ``"DDPM Karras"``, ``"LCM Karras"``,
  ``"Euler SGMUniform"``; and their aliases ``euler_ancestral_turbo``, ``dpmpp_2m_sde_sgm_uniform``, …
"""

from __future__ import annotations

from .registry import UnknownNameError
from .samplers import SAMPLERS, SamplerInfo
from .schedules import SCHEDULES

# Forge 1 aliases of combined names (label forms are handled by suffix splitting).
_FORGE1_ALIASES = {
    "ddpm_karras": ("ddpm", "Karras"),
    "euler_ancestral_turbo": ("euler_ancestral", "Turbo"),
    "dpmpp_2m_turbo": ("dpmpp_2m", "Turbo"),
    "dpmpp_2m_sde_turbo": ("dpmpp_2m_sde", "Turbo"),
    "lcm_karras": ("lcm", "Karras"),
    "euler_sgm_uniform": ("euler", "SGM Uniform"),
    "euler_ancestral_sgm_uniform": ("euler_ancestral", "SGM Uniform"),
    "dpmpp_2m_sgm_uniform": ("dpmpp_2m", "SGM Uniform"),
    "dpmpp_2m_sde_sgm_uniform": ("dpmpp_2m_sde", "SGM Uniform"),
}
# A1111 1.8 aliases with the schedule baked in (k_*_ka = Karras, k_*_exp = Exponential).
_SUFFIX_ALIASES = {"_ka": "Karras", "_exp": "Exponential"}


def resolve_sampler(name: str) -> tuple[SamplerInfo, str | None]:
    """(sampler, schedule label or None) for a sampler name as users write it.

    The schedule is None unless the name carried one ("DPM++ 2M Karras"). Raises
    :class:`UnknownNameError` listing the known samplers.
    """
    entry = SAMPLERS.get_entry(name)
    if entry is not None:
        return entry, None
    key = name.strip()
    if key.casefold() in _FORGE1_ALIASES:
        sampler, schedule = _FORGE1_ALIASES[key.casefold()]
        return SAMPLERS[sampler], schedule
    for suffix, schedule in _SUFFIX_ALIASES.items():
        if key.endswith(suffix) and SAMPLERS.get_entry(key[: -len(suffix)]) is not None:
            return SAMPLERS[key[: -len(suffix)]], schedule
    for label in SCHEDULES:
        schedule = SCHEDULES[label]
        for suffix in (schedule.name, *schedule.aliases):
            if key.casefold().endswith(" " + suffix.casefold()):
                entry = SAMPLERS.get_entry(key[: -len(suffix) - 1])
                if entry is not None:
                    return entry, schedule.name
    raise UnknownNameError("sampler", name, list(SAMPLERS))
