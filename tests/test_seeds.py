"""Seeds and initial noise with A1111's semantics."""

import pytest
import torch

from glassforge.sampling.noise import (
    MAX_SEED,
    a1111_noise,
    comfy_noise,
    image_seeds,
    resolve_seed,
    slerp,
)

SHAPE = (4, 8, 6)


def test_resolve_seed():
    seeds = {resolve_seed(-1) for _ in range(5)}
    assert all(0 <= s < MAX_SEED for s in seeds) and len(seeds) > 1
    assert resolve_seed(None) >= 0
    assert resolve_seed(1234) == 1234
    with pytest.raises(ValueError, match="non-negative"):
        resolve_seed(-5)


def test_image_seeds():
    assert image_seeds(10, 3) == ([10, 11, 12], [0, 1, 2])
    assert image_seeds(10, 3, subseed=7, subseed_strength=0.3) == ([10, 10, 10], [7, 8, 9])


def test_noise_is_per_image_stream_and_batch_equals_singles():
    batch = a1111_noise(SHAPE, [5, 6, 7])
    for i, seed in enumerate([5, 6, 7]):
        single = a1111_noise(SHAPE, [seed])
        assert torch.equal(batch.noise[i], single.noise[0])
        assert torch.equal(batch.noise[i], torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed)))
    # the per-image generators continue the same stream: their next draw is the stream's second draw
    g = torch.Generator().manual_seed(6)
    torch.randn(SHAPE, generator=g)
    assert torch.equal(torch.randn(SHAPE, generator=batch.generators[1]), torch.randn(SHAPE, generator=g))
    assert not torch.equal(batch.noise[0], batch.noise[1])


def test_eta_noise_seed_delta_restarts_streams():
    out = a1111_noise(SHAPE, [5], eta_noise_seed_delta=31337)
    assert torch.equal(out.noise[0], a1111_noise(SHAPE, [5]).noise[0])  # initial noise unchanged
    expected = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5 + 31337))
    assert torch.equal(torch.randn(SHAPE, generator=out.generators[0]), expected)


def test_slerp_endpoints_symmetry_and_fallback():
    a = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    b = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(slerp(0.0, a, b), a)
    torch.testing.assert_close(slerp(1.0, a, b), b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(slerp(0.3, a, b), slerp(0.7, b, a), atol=1e-5, rtol=1e-5)
    # halfway between two unit columns at angle ω: both weights sin(ω/2)/sin ω
    mid = slerp(0.5, a, b)
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((an * bn).sum(1))
    w = (torch.sin(omega / 2) / torch.sin(omega)).unsqueeze(1)
    torch.testing.assert_close(mid, w * a + w * b, atol=1e-5, rtol=1e-5)
    # nearly parallel: linear fallback with A1111's (swapped) weights
    torch.testing.assert_close(slerp(0.25, a, a * 1.0001), a * 0.25 + a * 1.0001 * 0.75)


def test_variation_seed():
    base = a1111_noise(SHAPE, [5]).noise[0]
    sub = torch.randn(SHAPE, generator=torch.Generator().manual_seed(9))
    none = a1111_noise(SHAPE, [5], subseeds=[9], subseed_strength=0.0).noise[0]
    assert torch.equal(none, base)
    half = a1111_noise(SHAPE, [5], subseeds=[9], subseed_strength=0.5).noise[0]
    torch.testing.assert_close(half, slerp(0.5, base, sub))
    full = a1111_noise(SHAPE, [5], subseeds=[9], subseed_strength=1.0).noise[0]
    torch.testing.assert_close(full, sub, atol=1e-5, rtol=1e-5)


def test_seed_resize_pastes_old_size_noise_centred():
    # 64x48 px → latent 8x6; resized from 32x16 px → latent 4x2, pasted at (dx, dy) = (1, 2)
    out = a1111_noise(SHAPE, [5], seed_resize_from=(32, 16)).noise[0]
    small = torch.randn((4, 2, 4), generator=torch.Generator().manual_seed(5))
    fresh = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    assert torch.equal(out[:, 3:5, 1:5], small)
    mask = torch.ones(SHAPE, dtype=torch.bool)
    mask[:, 3:5, 1:5] = False
    assert torch.equal(out[mask], fresh[mask])
    # a larger source is cropped centrally
    big = a1111_noise((4, 2, 2), [5], seed_resize_from=(48, 32)).noise[0]
    src = torch.randn((4, 4, 6), generator=torch.Generator().manual_seed(5))
    assert torch.equal(big, src[:, 1:3, 2:4])


def test_comfy_noise_is_one_batch_draw():
    torch.manual_seed(42)
    expected = torch.randn((2, *SHAPE))
    assert torch.equal(comfy_noise((2, *SHAPE), 42), expected)
    assert not torch.equal(comfy_noise((2, *SHAPE), 42)[1], a1111_noise(SHAPE, [43]).noise[0])
