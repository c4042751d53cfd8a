"""The 2-D toy world: a word-labelled Gaussian mixture with an exact denoiser (the "pseudo-space")."""

from .mixture import GaussianMixture
from .world import ToyConditioning, ToyGuider, ToyWorld, UnknownWordError, parse_emphasis

__all__ = [
    "GaussianMixture",
    "ToyConditioning",
    "ToyGuider",
    "ToyWorld",
    "UnknownWordError",
    "parse_emphasis",
]
