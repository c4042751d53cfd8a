"""Sigma schedules: pure functions from the model's σ table and a step count to a list of σ.

Call shape: ``SCHEDULES[name](model_sigmas, steps, **options)`` where ``model_sigmas`` is the model's
ascending discrete σ table (e.g. ``DiscreteSchedule.stable_diffusion().sigmas``). Each returns a
decreasing float32 tensor that ends in 0 (normally ``steps + 1`` values).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from .registry import Registry

ScheduleFn = Callable[..., Tensor]


@dataclass(frozen=True)
class ScheduleInfo:
    name: str  # A1111/Forge display label
    fn: ScheduleFn
    description: str
    formula: str
    aliases: tuple[str, ...] = ()  # A1111 internal names, ComfyUI names

    def __call__(self, model_sigmas: Tensor, steps: int, **options: Any) -> Tensor:
        return self.fn(model_sigmas, steps, **options)


SCHEDULES: Registry[ScheduleInfo] = Registry("schedule")
