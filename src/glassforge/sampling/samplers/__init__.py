"""Samplers: plain functions with one signature, registered by the names users see.

Importing this package registers every sampler in :data:`SAMPLERS`. The import order is the listing
order (close to A1111's: DPM++ first, then Euler, Heun, multistep, timestep samplers, CFG++, extras).
"""
# isort: skip_file

from . import dpmpp  # noqa: F401  (registers)
from . import euler  # noqa: F401
from . import heun  # noqa: F401
from . import multistep  # noqa: F401
from . import timestep  # noqa: F401
from . import cfgpp  # noqa: F401
from . import extra  # noqa: F401
from ._common import SAMPLERS, SamplerFn, SamplerInfo

__all__ = ["SAMPLERS", "SamplerFn", "SamplerInfo"]
