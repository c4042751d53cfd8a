"""The 2-D toy world: a word-labelled Gaussian mixture with an exact denoiser (the "pseudo-space")."""

from .mixture import GaussianMixture

__all__ = ["GaussianMixture"]
