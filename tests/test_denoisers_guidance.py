"""Prediction adapters and classifier-free guidance, checked against the exact Gaussian-mixture denoiser."""

import math

import pytest
import torch

from glassforge.sampling.denoisers import PredictionDenoiser, scalings
from glassforge.sampling.events import Guidance, ModelCall
from glassforge.sampling.guidance import CFGDenoiser
from glassforge.sampling.noise_schedule import DiscreteSchedule
from glassforge.toy import GaussianMixture

SCHEDULE = DiscreteSchedule.stable_diffusion()
GMM = GaussianMixture.create([[-1.0, 0.5], [1.5, -0.5], [0.0, 2.0]], [0.3, 0.5, 0.2], [0.2, 0.5, 0.3])


def exact_network(gmm, schedule, prediction):
    """A fake UNet that answers exactly, in the VP terms a real network is trained in.

    It receives x_vp = c_in·x and a timestep; it recovers σ from t, ᾱ = 1/(1 + σ²), and returns
    ε* = (x_vp − √ᾱ·x̂0)/√(1 − ᾱ) or v* = √ᾱ·ε* − √(1 − ᾱ)·x̂0 (math_and_explainers §5.1).
    """

    def net(x_vp, t):
        sigma = schedule.t_to_sigma(t).to(x_vp.dtype)
        abar = (1 / (1 + sigma**2))[:, None]
        x_ve = x_vp / abar.sqrt()
        x0 = gmm.denoise(x_ve, sigma)
        eps = (x_vp - abar.sqrt() * x0) / (1 - abar).sqrt()
        return eps if prediction == "eps" else abar.sqrt() * eps - (1 - abar).sqrt() * x0

    return net


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("sigma", [14.6, 3.0, 0.7, 0.05])
def test_adapter_recovers_exact_denoiser(prediction, sigma):
    g = torch.Generator().manual_seed(0)
    x = GMM.sample_noisy(64, sigma, g)
    s = torch.full((64,), sigma, dtype=torch.float64)
    d = PredictionDenoiser(exact_network(GMM, SCHEDULE, prediction), SCHEDULE, prediction)
    torch.testing.assert_close(d(x, s), GMM.denoise(x, s), rtol=1e-9, atol=1e-9)


def test_scalings_match_k_diffusion_forms():
    s = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    c_skip, c_out, c_in = scalings(s, "v")
    torch.testing.assert_close(c_skip, 1 / (s**2 + 1))
    torch.testing.assert_close(c_out, -s / (s**2 + 1).sqrt())
    torch.testing.assert_close(c_in, 1 / (s**2 + 1).sqrt())
    c_skip, c_out, _ = scalings(s, "eps")
    assert torch.equal(c_skip, torch.ones_like(s)) and torch.equal(c_out, -s)
    with pytest.raises(ValueError, match="expected one of eps, v"):
        scalings(s, "x0")


def test_adapter_timestep_rules_and_events():
    seen = []

    def net(x_in, t):
        seen.append(t.clone())
        return torch.zeros_like(x_in)

    x = torch.randn(3, 2, dtype=torch.float64)
    sigma = torch.tensor([10.0, 1.0, 0.1], dtype=torch.float64)
    events = []
    PredictionDenoiser(net, SCHEDULE, on_event=events.append)(x, sigma)
    PredictionDenoiser(net, SCHEDULE.with_timestep_rule("nearest"))(x, sigma)
    interp, nearest = seen
    assert not torch.equal(interp, interp.round())  # A1111: fractional timesteps
    assert torch.equal(nearest, nearest.round())  # ComfyUI: table indices
    assert (interp - nearest).abs().max() < 1
    (event,) = events
    assert isinstance(event, ModelCall) and event.prediction == "eps"
    torch.testing.assert_close(event.c_in, 1 / (sigma**2 + 1).sqrt())
    torch.testing.assert_close(event.denoised, x)  # zero ε → D = x


class Counting:
    """An inner denoiser D(x, σ, weights) over the mixture, counting calls and rows."""

    def __init__(self):
        self.calls, self.rows = 0, 0

    def __call__(self, x, sigma, weights):
        self.calls += 1
        self.rows += x.shape[0]
        return torch.stack([GMM.denoise(x[i : i + 1], sigma[i : i + 1], weights[i]) for i in range(len(x))])[
            :, 0
        ]


def _cfg(scale, rescale=0.0, events=None):
    n = 32
    cond = {"weights": torch.tensor([[0.9, 0.05, 0.05]] * n, dtype=torch.float64)}
    uncond = {"weights": GMM.weights.expand(n, 3).clone()}
    inner = Counting()
    return CFGDenoiser(
        inner, cond, uncond, scale, rescale=rescale, on_event=None if events is None else events.append
    ), inner


def test_cfg_formula_on_denoised_equals_eps_form():
    events = []
    guider, inner = _cfg(7.5, events=events)
    x = GMM.sample_noisy(32, 2.0, torch.Generator().manual_seed(1))
    s = torch.full((32,), 2.0, dtype=torch.float64)
    out = guider(x, s)
    assert inner.calls == 1 and inner.rows == 64  # cond and uncond in one batched call
    d_c = GMM.denoise(x, s, torch.tensor([0.9, 0.05, 0.05], dtype=torch.float64))
    d_u = GMM.denoise(x, s)
    eps_c, eps_u = (x - d_c) / 2.0, (x - d_u) / 2.0
    torch.testing.assert_close(out, x - 2.0 * (eps_u + 7.5 * (eps_c - eps_u)))
    (ev,) = events
    assert isinstance(ev, Guidance) and ev.scale == 7.5
    torch.testing.assert_close(ev.cond, d_c)
    torch.testing.assert_close(ev.uncond, d_u)


def test_cfg_scale_one_skips_uncond():
    guider, inner = _cfg(1.0)
    x = torch.randn(32, 2, dtype=torch.float64)
    s = torch.full((32,), 1.0, dtype=torch.float64)
    out = guider(x, s)
    assert inner.rows == 32
    torch.testing.assert_close(out, GMM.denoise(x, s, torch.tensor([0.9, 0.05, 0.05], dtype=torch.float64)))
    guided, uncond = guider.guided_and_uncond(x, s)  # CFG++ still gets the uncond branch
    assert inner.rows == 32 + 64
    torch.testing.assert_close(guided, out)
    torch.testing.assert_close(uncond, GMM.denoise(x, s))


def test_cfg_rescale():
    x = GMM.sample_noisy(32, 1.5, torch.Generator().manual_seed(2))
    s = torch.full((32,), 1.5, dtype=torch.float64)
    plain, _ = _cfg(9.0)
    zero, _ = _cfg(9.0, rescale=0.0)
    full, _ = _cfg(9.0, rescale=1.0)
    torch.testing.assert_close(zero(x, s), plain(x, s))
    eps_full = (x - full(x, s)) / 1.5
    d_c = GMM.denoise(x, s, torch.tensor([0.9, 0.05, 0.05], dtype=torch.float64))
    eps_c = (x - d_c) / 1.5
    torch.testing.assert_close(eps_full.std(dim=1), eps_c.std(dim=1))  # φ = 1: std matches the cond ε
    assert not torch.allclose(full(x, s), plain(x, s))
    with pytest.raises(ValueError, match="rescale"):
        _cfg(9.0, rescale=1.5)


def test_cfg_rejects_mismatched_conditioning():
    with pytest.raises(ValueError, match="same keys"):
        CFGDenoiser(Counting(), {"weights": torch.zeros(1)}, {"context": torch.zeros(1)}, 7.0)


def test_alpha_bar_identity():
    # c_in = 1/sqrt(1 + σ²) = sqrt(ᾱ) on the SD table
    abar = SCHEDULE.alphas_cumprod
    sig = ((1 - abar) / abar).sqrt()
    assert math.isclose(float((1 / (1 + sig**2)).sqrt()[500]), float(abar[500].sqrt()), rel_tol=1e-12)
