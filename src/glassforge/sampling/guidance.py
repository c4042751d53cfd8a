"""Classifier-free guidance as a wrapper around a denoiser.

D̃ = D_u + w·(D_c − D_u) on denoised estimates (A1111 and ComfyUI apply it there; it equals the ε-form
ε̃ = ε_u + w·(ε_c − ε_u) because D is affine in ε at fixed x and σ). Cond and uncond are evaluated
in one batched call; with w = 1 the uncond pass is skipped. Optional CFG rescale (Lin et al. 2024,
"Common Diffusion Noise Schedules and Sample Steps are Flawed", §3.4) with factor φ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from .events import EventHandler, Guidance


def _cat(a: Any, b: Any) -> Any:
    return torch.cat([a, b]) if isinstance(a, Tensor) else a


def _batchable(cond: Mapping[str, Any], uncond: Mapping[str, Any]) -> bool:
    """Cond and uncond can share one call when their tensors agree in every dimension but the batch."""
    return all(not isinstance(cond[k], Tensor) or cond[k].shape[1:] == uncond[k].shape[1:] for k in cond)


def _expand(x: Tensor, sigma: Tensor) -> Tensor:
    return sigma.reshape(-1, *[1] * (x.ndim - 1))


def rescale_guidance(x: Tensor, sigma: Tensor, guided: Tensor, cond: Tensor, phi: float) -> Tensor:
    """CFG rescale: match the per-image std of the guided ε to the conditional ε, mixed by φ.

    Applied to ε̂ = (x − D)/σ (as diffusers does for ε-models), then mapped back to D.
    """
    s = _expand(x, sigma)
    eps_g, eps_c = (x - guided) / s, (x - cond) / s
    dims = tuple(range(1, x.ndim))
    std_g = eps_g.std(dim=dims, keepdim=True)
    std_c = eps_c.std(dim=dims, keepdim=True)
    eps = phi * eps_g * (std_c / std_g) + (1 - phi) * eps_g
    return x - s * eps


class CFGDenoiser:
    """Guided denoiser D̃(x, σ) over ``denoiser(x, σ, **cond)`` with a prompt and a negative prompt.

    ``cond`` and ``uncond`` map the inner denoiser's keyword names to tensors batched like ``x``
    (e.g. the text embeddings). ``uncond=None`` means there is no negative branch (plain conditional).
    """

    def __init__(
        self,
        denoiser: Callable[..., Tensor],
        cond: Mapping[str, Any],
        uncond: Mapping[str, Any] | None,
        scale: float,
        *,
        rescale: float = 0.0,
        on_event: EventHandler | None = None,
    ):
        if uncond is not None and set(uncond) != set(cond):
            raise ValueError(
                f"cond and uncond must have the same keys, got {sorted(cond)} and {sorted(uncond)}"
            )
        if not 0.0 <= rescale <= 1.0:
            raise ValueError(f"CFG rescale φ must be in [0, 1], got {rescale}")
        self.denoiser, self.cond, self.uncond = denoiser, dict(cond), None if uncond is None else dict(uncond)
        self.scale, self.rescale, self.on_event = float(scale), float(rescale), on_event

    def guided_and_uncond(self, x: Tensor, sigma: Tensor, scale_factor: float = 1.0) -> tuple[Tensor, Tensor]:
        """(guided, uncond) with the CFG scale multiplied by ``scale_factor`` (for CFG++ samplers).

        Always evaluates the uncond branch when there is one, even at scale 1: CFG++ needs it.
        """
        if self.uncond is None:
            cond_d = self.denoiser(x, sigma, **self.cond)
            self._emit(sigma, cond_d, None, cond_d, self.scale * scale_factor)
            return cond_d, cond_d
        return self._guide(x, sigma, self.scale * scale_factor)

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        if self.uncond is None or self.scale == 1.0:  # CFG = 1: the uncond pass changes nothing; skip it
            cond_d = self.denoiser(x, sigma, **self.cond)
            self._emit(sigma, cond_d, None, cond_d, self.scale)
            return cond_d
        return self._guide(x, sigma, self.scale)[0]

    def _guide(self, x: Tensor, sigma: Tensor, scale: float) -> tuple[Tensor, Tensor]:
        if _batchable(self.cond, self.uncond):
            batched = {k: _cat(self.cond[k], self.uncond[k]) for k in self.cond}
            both = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), **batched)
            cond_d, uncond_d = both.chunk(2)
        else:  # e.g. prompts of different chunk counts (A1111 then makes two calls too)
            cond_d = self.denoiser(x, sigma, **self.cond)
            uncond_d = self.denoiser(x, sigma, **self.uncond)
        guided = uncond_d + scale * (cond_d - uncond_d)
        if self.rescale > 0:
            guided = rescale_guidance(x, sigma, guided, cond_d, self.rescale)
        self._emit(sigma, cond_d, uncond_d, guided, scale)
        return guided, uncond_d

    def _emit(self, sigma, cond, uncond, guided, scale) -> None:
        if self.on_event is not None:
            self.on_event(Guidance(sigma, cond, uncond, guided, scale, self.rescale))
