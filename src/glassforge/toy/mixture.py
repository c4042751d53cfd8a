"""Gaussian mixtures with their exact denoiser — the oracle every sampler is checked against.

Data p0 = Σ_k π_k·N(μ_k, s_k²·I) (isotropic components). Noising in σ-space, x = x0 + σ·n, gives
p_σ = Σ_k π_k·N(μ_k, (s_k² + σ²)·I), and the posterior mean has the closed form

    D*(x; σ) = E[x0 | x] = Σ_k w_k(x)·(μ_k + s_k²/(s_k² + σ²)·(x − μ_k)),
    w_k(x) ∝ π_k·N(x; μ_k, (s_k² + σ²)·I).

With a single component the probability-flow ODE dx/dσ = (x − D*)/σ has the exact solution
x(σ) = μ + (x(σ_a) − μ)·sqrt((s² + σ²)/(s² + σ_a²)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GaussianMixture:
    means: Tensor  # [K, D]
    stds: Tensor  # [K]   isotropic standard deviation s_k of each component
    weights: Tensor  # [K] mixture weights π_k (sum to 1)

    def __post_init__(self):
        if (
            self.means.ndim != 2
            or self.stds.shape != self.means.shape[:1]
            or self.weights.shape != self.stds.shape
        ):
            raise ValueError("expected means [K, D], stds [K] and weights [K]")

    @classmethod
    def create(cls, means, stds, weights=None, dtype=torch.float64) -> GaussianMixture:
        means = torch.as_tensor(means, dtype=dtype)
        if means.ndim == 1:
            means = means.unsqueeze(-1)
        stds = torch.as_tensor(stds, dtype=dtype).expand(means.shape[0]).clone()
        if weights is None:
            weights = torch.full((means.shape[0],), 1.0 / means.shape[0], dtype=dtype)
        weights = torch.as_tensor(weights, dtype=dtype)
        return cls(means, stds, weights / weights.sum())

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def mean(self) -> Tensor:
        return (self.weights[:, None] * self.means).sum(0)

    def covariance(self) -> Tensor:
        m = self.mean()
        centred = self.means - m
        between = (self.weights[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(0)
        within = (self.weights * self.stds**2).sum() * torch.eye(self.dim, dtype=self.means.dtype)
        return between + within

    def log_responsibilities(self, x: Tensor, sigma: Tensor, weights: Tensor | None = None) -> Tensor:
        """log w_k(x) for x [N, D] at noise σ ([N] or scalar); ``weights`` [K] or [N, K] overrides π."""
        x = x.to(self.means.dtype)
        sigma = torch.as_tensor(sigma, dtype=self.means.dtype).reshape(-1, 1)  # [N or 1, 1]
        var = self.stds**2 + sigma**2  # [N, K]
        sq = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)  # [N, K]
        pi = self.weights if weights is None else torch.as_tensor(weights, dtype=self.means.dtype)
        logp = pi.clamp_min(1e-300).log() - 0.5 * sq / var - 0.5 * self.dim * (2 * math.pi * var).log()
        return logp - logp.logsumexp(-1, keepdim=True)

    def denoise(self, x: Tensor, sigma: Tensor | float, weights: Tensor | None = None) -> Tensor:
        """Exact E[x0 | x_σ] for x [N, D]."""
        dtype = x.dtype
        x64 = x.to(self.means.dtype)
        sigma = torch.as_tensor(sigma, dtype=self.means.dtype).reshape(-1, 1)
        w = self.log_responsibilities(x64, sigma, weights).exp()  # [N, K]
        shrink = self.stds**2 / (self.stds**2 + sigma**2)  # [N, K]
        per_k = self.means[None] + shrink[..., None] * (x64[:, None, :] - self.means[None])  # [N, K, D]
        return (w[..., None] * per_k).sum(1).to(dtype)

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The mixture as a denoiser D(x, σ) with the sampler contract (σ of shape [batch])."""
        return self.denoise(x, sigma)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=self.means.dtype)
        return self.means[k] + self.stds[k, None] * z

    def sample_noisy(self, n: int, sigma: float, generator: torch.Generator | None = None) -> Tensor:
        """Exact samples of p_σ (the data convolved with N(0, σ²I))."""
        z = torch.randn(n, self.dim, generator=generator, dtype=self.means.dtype)
        return self.sample(n, generator) + sigma * z

    def ode_solution(self, x_start: Tensor, sigma_start: float, sigma_end: float) -> Tensor:
        """Closed-form probability-flow ODE solution; only for a single component."""
        if self.means.shape[0] != 1:
            raise ValueError("the closed-form ODE solution exists only for a single Gaussian")
        mu, s2 = self.means[0], float(self.stds[0]) ** 2
        return mu + (x_start.to(mu.dtype) - mu) * math.sqrt((s2 + sigma_end**2) / (s2 + sigma_start**2))
