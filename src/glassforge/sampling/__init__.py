"""The sampling core: noise schedules, sigma schedules, denoiser adapters, guidance, samplers, seeds."""

from .events import Guidance, ModelCall, SamplerStep
from .noise_schedule import DiscreteSchedule
from .samplers import SAMPLERS, SamplerInfo
from .schedules import SCHEDULES, ScheduleInfo

__all__ = [
    "SAMPLERS",
    "SCHEDULES",
    "DiscreteSchedule",
    "Guidance",
    "ModelCall",
    "SamplerInfo",
    "SamplerStep",
    "ScheduleInfo",
]
