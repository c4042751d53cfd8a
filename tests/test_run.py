"""Whole sampling runs: seeds → noise → schedule → sampler, batch against singles, conventions."""

import math

import pytest
import torch

from glassforge.sampling import SAMPLERS
from glassforge.sampling.events import SamplerStep
from glassforge.sampling.noise_schedule import DiscreteSchedule
from glassforge.sampling.run import sample
from glassforge.toy import GaussianMixture

TABLE = DiscreteSchedule.stable_diffusion().sigmas
SHAPE = (2, 2, 2)  # a tiny "latent": 8 numbers per image
_g = torch.Generator().manual_seed(3)
GMM = GaussianMixture.create(torch.randn(3, 8, generator=_g, dtype=torch.float64), [0.4, 0.6, 0.3])


def image_denoiser(x, sigma):
    return GMM.denoise(x.flatten(1).double(), sigma.double()).reshape(x.shape).to(x.dtype)


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M SDE", "DPM++ SDE", "DDPM", "Euler"])
def test_batch_equals_single_runs_bit_for_bit(sampler):
    batch = sample(image_denoiser, TABLE, SHAPE, sampler=sampler, steps=8, seed=1000, batch_size=3)
    assert batch.seeds == [1000, 1001, 1002]
    for i in range(3):
        single = sample(image_denoiser, TABLE, SHAPE, sampler=sampler, steps=8, seed=1000 + i)
        assert torch.equal(batch.latents[i], single.latents[0]), f"image {i} differs from its single run"


def test_same_seed_same_image_and_seed_minus_one_is_reported():
    a = sample(image_denoiser, TABLE, SHAPE, sampler="Euler a", steps=6, seed=7)
    b = sample(image_denoiser, TABLE, SHAPE, sampler="Euler a", steps=6, seed=7)
    c = sample(image_denoiser, TABLE, SHAPE, sampler="Euler a", steps=6, seed=8)
    assert torch.equal(a.latents, b.latents) and not torch.equal(a.latents, c.latents)
    r = sample(image_denoiser, TABLE, SHAPE, sampler="Euler", steps=2, seed=-1)
    again = sample(image_denoiser, TABLE, SHAPE, sampler="Euler", steps=2, seed=r.seeds[0])
    assert torch.equal(r.latents, again.latents)


def test_initial_latent_scaling_by_convention():
    seen = []

    def first(ev):
        if isinstance(ev, SamplerStep) and ev.i == 0:
            seen.append(ev.x)

    a = sample(image_denoiser, TABLE, SHAPE, sampler="Euler", steps=4, seed=5, on_event=first)
    c = sample(
        image_denoiser, TABLE, SHAPE, sampler="Euler", steps=4, seed=5, convention="comfyui", on_event=first
    )
    s0 = float(a.sigmas[0])
    torch.testing.assert_close(seen[0], a.initial_noise * s0)  # A1111: σ_0·ε
    torch.testing.assert_close(seen[1], c.initial_noise * math.sqrt(1 + s0**2))  # ComfyUI: sqrt(1 + σ_0²)·ε


def test_combined_name_selects_schedule_and_automatic_uses_default():
    karras = sample(image_denoiser, TABLE, SHAPE, sampler="DPM++ 2M Karras", steps=5, seed=1)
    auto = sample(image_denoiser, TABLE, SHAPE, sampler="DPM++ 2M", steps=5, seed=1)
    uniform = sample(image_denoiser, TABLE, SHAPE, sampler="DPM++ 2M", schedule="Uniform", steps=5, seed=1)
    assert karras.schedule == "Karras" and torch.equal(karras.sigmas, auto.sigmas)
    assert not torch.equal(uniform.sigmas, auto.sigmas)
    assert karras.sampler is SAMPLERS["DPM++ 2M"]


def test_bad_arguments_are_one_clear_error():
    with pytest.raises(ValueError, match="convention"):
        sample(image_denoiser, TABLE, SHAPE, convention="invokeai")
    with pytest.raises(ValueError, match="steps must be at least 1"):
        sample(image_denoiser, TABLE, SHAPE, steps=0)
    with pytest.raises(KeyError, match="unknown sampler"):
        sample(image_denoiser, TABLE, SHAPE, sampler="Eulerr")
