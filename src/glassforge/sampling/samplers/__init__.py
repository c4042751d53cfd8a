"""Samplers: plain functions with one signature, registered by the names users see.

Importing this package registers every sampler in :data:`SAMPLERS`.
"""

from . import euler  # noqa: F401  (registers)
from ._common import SAMPLERS, SamplerFn, SamplerInfo

__all__ = ["SAMPLERS", "SamplerFn", "SamplerInfo"]
