"""The 2-D toy world: a word-labelled Gaussian mixture with an exact denoiser (the "pseudo-space").

Names are imported on first use, so that importing the command line does not import torch.
"""

from importlib import import_module

_EXPORTS = {
    "GaussianMixture": ".mixture",
    "ToyConditioning": ".world",
    "ToyGuider": ".world",
    "ToyWorld": ".world",
    "UnknownWordError": ".world",
    "parse_emphasis": ".world",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
