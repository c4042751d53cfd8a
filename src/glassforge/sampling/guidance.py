"""Classifier-free guidance as a wrapper around a denoiser.

D̃ = D_u + w·(D_c − D_u) on denoised estimates (A1111 and ComfyUI apply it there; it equals the ε-form
ε̃ = ε_u + w·(ε_c − ε_u) because D is affine in ε at fixed x and σ). Cond and uncond are evaluated
in one batched call; with w = 1 the uncond pass is skipped. Optional CFG rescale (Lin et al. 2024,
"Common Diffusion Noise Schedules and Sample Steps are Flawed", §3.4) with factor φ.

CFG-stage hooks (Forge's ``sampler_pre_cfg`` / ``sampler_cfg_function`` / ``sampler_post_cfg``; a UNet
patcher clone supplies them as :class:`CFGHooks`): pre-CFG functions may change the conditioning and the
scale before the model calls; a combine function replaces D_u + w·(D_c − D_u); post-CFG functions map
the guided estimate to the result. All work on denoised estimates D, not on ε.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from .events import EventHandler, Guidance


@dataclass(frozen=True, eq=False)
class PreCFGArgs:
    """Before the model calls. A pre-CFG function returns these (``dataclasses.replace``) with its
    changes to ``cond``, ``uncond`` or ``scale``; ``x`` and ``sigma`` are for reading."""

    x: Tensor
    sigma: Tensor
    cond: Mapping[str, Any]
    uncond: Mapping[str, Any] | None
    scale: float


@dataclass(frozen=True, eq=False)
class CFGArgs:
    """The two denoised estimates (``uncond_denoised`` None when the uncond pass was skipped)."""

    x: Tensor
    sigma: Tensor
    cond_denoised: Tensor
    uncond_denoised: Tensor | None
    scale: float


@dataclass(frozen=True, eq=False)
class PostCFGArgs(CFGArgs):
    denoised: Tensor  # the guided estimate so far


@dataclass(frozen=True)
class CFGHooks:
    """Functions the guider calls around the CFG combine, in order. With ``disable_cfg1_optimization``
    the uncond pass runs even at scale 1 (Forge's flag for post-CFG patches that need it)."""

    pre: tuple[Callable[[PreCFGArgs], PreCFGArgs], ...] = ()
    combine: Callable[[CFGArgs], Tensor] | None = None
    post: tuple[Callable[[PostCFGArgs], Tensor], ...] = ()
    disable_cfg1_optimization: bool = False


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
    ``hooks``: CFG-stage functions (:class:`CFGHooks`), e.g. from a UNet patcher clone.
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
        hooks: CFGHooks | None = None,
    ):
        if uncond is not None and set(uncond) != set(cond):
            raise ValueError(
                f"cond and uncond must have the same keys, got {sorted(cond)} and {sorted(uncond)}"
            )
        if not 0.0 <= rescale <= 1.0:
            raise ValueError(f"CFG rescale φ must be in [0, 1], got {rescale}")
        self.denoiser, self.cond, self.uncond = denoiser, dict(cond), None if uncond is None else dict(uncond)
        self.scale, self.rescale, self.on_event = float(scale), float(rescale), on_event
        self.hooks = hooks or CFGHooks()

    def _pre(self, x: Tensor, sigma: Tensor, scale: float) -> tuple[dict, dict | None, float]:
        args = PreCFGArgs(x, sigma, self.cond, self.uncond, scale)
        for fn in self.hooks.pre:
            args = fn(args)
        uncond = None if args.uncond is None else dict(args.uncond)
        return dict(args.cond), uncond, float(args.scale)

    def _post(self, x, sigma, guided, cond_d, uncond_d, scale) -> Tensor:
        if self.hooks.post:
            args = PostCFGArgs(x, sigma, cond_d, uncond_d, scale, guided)
            for fn in self.hooks.post:
                args = replace(args, denoised=fn(args))
            guided = args.denoised
        return guided

    def guided_and_uncond(self, x: Tensor, sigma: Tensor, scale_factor: float = 1.0) -> tuple[Tensor, Tensor]:
        """(guided, uncond) with the CFG scale multiplied by ``scale_factor`` (for CFG++ samplers).

        Always evaluates the uncond branch when there is one, even at scale 1: CFG++ needs it.
        """
        cond, uncond, scale = self._pre(x, sigma, self.scale * scale_factor)
        if uncond is None:
            cond_d = self.denoiser(x, sigma, **cond)
            guided = self._post(x, sigma, cond_d, cond_d, None, scale)
            self._emit(sigma, cond_d, None, guided, scale)
            return guided, cond_d
        return self._guide(x, sigma, scale, cond, uncond)

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        cond, uncond, scale = self._pre(x, sigma, self.scale)
        # CFG = 1: the uncond pass changes nothing; skip it (unless a hook needs it)
        if uncond is None or (scale == 1.0 and not self.hooks.disable_cfg1_optimization):
            cond_d = self.denoiser(x, sigma, **cond)
            guided = self._post(x, sigma, cond_d, cond_d, None, scale)
            self._emit(sigma, cond_d, None, guided, scale)
            return guided
        return self._guide(x, sigma, scale, cond, uncond)[0]

    def _guide(
        self, x: Tensor, sigma: Tensor, scale: float, cond: dict, uncond: dict
    ) -> tuple[Tensor, Tensor]:
        if _batchable(cond, uncond):
            batched = {k: _cat(cond[k], uncond[k]) for k in cond}
            both = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), **batched)
            cond_d, uncond_d = both.chunk(2)
        else:  # e.g. prompts of different chunk counts (A1111 then makes two calls too)
            cond_d = self.denoiser(x, sigma, **cond)
            uncond_d = self.denoiser(x, sigma, **uncond)
        if self.hooks.combine is not None:
            guided = self.hooks.combine(CFGArgs(x, sigma, cond_d, uncond_d, scale))
        else:
            guided = uncond_d + scale * (cond_d - uncond_d)
        if self.rescale > 0:
            guided = rescale_guidance(x, sigma, guided, cond_d, self.rescale)
        guided = self._post(x, sigma, guided, cond_d, uncond_d, scale)
        self._emit(sigma, cond_d, uncond_d, guided, scale)
        return guided, uncond_d

    def _emit(self, sigma, cond, uncond, guided, scale) -> None:
        if self.on_event is not None:
            self.on_event(Guidance(sigma, cond, uncond, guided, scale, self.rescale))
