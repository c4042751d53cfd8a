"""The toy world: prompt → cluster weights, the exact denoiser, CFG, and the ``toy`` demo end to end."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
from PIL import Image

from glassforge.sampling.events import Guidance
from glassforge.sampling.noise_schedule import DiscreteSchedule
from glassforge.sampling.samplers import SAMPLERS
from glassforge.sampling.schedules import build_sigmas
from glassforge.toy import cli as toy_cli
from glassforge.toy import demo
from glassforge.toy.world import ToyGuider, ToyWorld, UnknownWordError, parse_emphasis

SD_SIGMAS = DiscreteSchedule.stable_diffusion().sigmas
SIGMA_MAX = float(SD_SIGMAS[-1])


def karras(steps: int) -> torch.Tensor:
    return build_sigmas(SD_SIGMAS, steps, "Karras").double()


def numpy_posterior_mean(x, sigma, means, stds, weights):
    """E[x0 | x] for x0 ~ Σ π_k N(μ_k, s_k² I), x = x0 + σ n — written out in numpy."""
    x, means, stds, weights = (np.asarray(a, dtype=np.float64) for a in (x, means, stds, weights))
    var = stds**2 + sigma**2  # [K]
    d = means.shape[1]
    sq = ((x[:, None, :] - means[None]) ** 2).sum(-1)  # [N, K]
    logp = np.log(weights) - 0.5 * sq / var - 0.5 * d * np.log(2 * np.pi * var)
    logp -= logp.max(1, keepdims=True)
    r = np.exp(logp)
    r /= r.sum(1, keepdims=True)
    per_k = means[None] + (stds**2 / var)[None, :, None] * (x[:, None, :] - means[None])
    return (r[..., None] * per_k).sum(1)


def numpy_log_density(x, sigma, means, stds, weights):
    var = stds**2 + sigma**2
    sq = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    logp = np.log(weights) - 0.5 * sq / var - np.log(2 * np.pi * var)
    m = logp.max(1, keepdims=True)
    return (m + np.log(np.exp(logp - m).sum(1, keepdims=True)))[:, 0]


# ---------------------------------------------------------------------- the world and its prompts


def test_world_has_the_words_on_a_ring_with_separated_clusters():
    world = ToyWorld.default()
    assert {"dog", "cat", "bird", "fish", "tree", "car", "house", "flower"} <= set(world.words)
    radii = world.means.norm(dim=-1)
    assert float(radii.min()) >= 2.0 and float(radii.max()) <= 3.0
    assert float(world.stds.min()) >= 0.25 and float(world.stds.max()) <= 0.4
    sub_clusters = [sum(c.word == w for c in world.clusters) for w in world.words]
    assert 2 in sub_clusters
    # clusters of different words are far apart compared to their spread: "nearest" is meaningful
    dist = torch.cdist(world.means, world.means)
    other = world.word_index[:, None] != world.word_index[None, :]
    assert float(dist[other].min()) > 4 * float(world.stds.max())
    assert math.isclose(float(world.prior_weights().sum()), 1.0)


def test_emphasis_weights_follow_a1111():
    chunks = parse_emphasis("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).")
    weight = {text.strip(): w for text, w in chunks if text.strip()}
    assert weight["house"] == pytest.approx(1.573)
    assert weight["on"] == pytest.approx(1.0)
    assert weight["hill"] == pytest.approx(0.55)
    assert weight["sky"] == pytest.approx(1.4641)
    assert parse_emphasis("(unbalanced") == [("unbalanced", pytest.approx(1.1))]
    assert "".join(t for t, _ in parse_emphasis(r"\(literal\]")) == "(literal]"


def test_prompt_parsing_weights_unknown_and_filler_words():
    world = ToyWorld.default()
    words = world.parse("A photo of two (Dogs:1.5) and [cat], ((fish)) zebra, fish")
    assert words.weights == pytest.approx({"dog": 1.5, "cat": 1 / 1.1, "fish": 1.21 + 1.0})
    assert words.unknown == ("photo", "two", "zebra")
    assert set(words.ignored) == {"a", "of", "and"}
    with pytest.raises(UnknownWordError) as err:
        world.condition("dog zebra")
    message = str(err.value)
    assert message.startswith("unknown word 'zebra'; known: dog, cat, bird, fish")
    assert "\n" not in message
    # not strict: the unknown words are reported, the known ones used
    cond = world.condition("dog zebra", strict=False)
    assert cond.words.unknown == ("zebra",)
    with pytest.raises(ValueError, match="weight 0"):
        world.condition("(dog:0)")
    with pytest.raises(ValueError, match="negative"):
        world.condition("(dog:-1)")


def test_conditioning_weights_over_components():
    world = ToyWorld.default(leak=0.0)
    words = np.array([c.word for c in world.clusters])
    w = world.condition("dog").weights.numpy()
    assert w[words == "dog"].sum() == pytest.approx(1.0) and w[words != "dog"].sum() == 0
    w = world.condition("(cat:1.5) fish").weights.numpy()
    assert w[words == "cat"].sum() == pytest.approx(0.6) and w[words == "fish"].sum() == pytest.approx(0.4)
    # the empty prompt (and a prompt of filler words) is the unconditional prior: every word equally
    for prompt in ("", "a the of"):
        w = world.condition(prompt).weights.numpy()
        per_word = [w[words == word].sum() for word in world.words]
        assert per_word == pytest.approx([1 / len(world.words)] * len(world.words))
    # leak: that part of the prior stays in every prompt's distribution
    leaky = ToyWorld.default(leak=0.1).condition("dog").weights.numpy()
    assert leaky[words == "dog"].sum() == pytest.approx(0.9 + 0.1 / 8)


@pytest.mark.parametrize("prompt", ["dog", "(cat:1.5) fish", "", "flower, [tree]"])
def test_denoiser_is_the_exact_posterior_mean_of_the_prompts_mixture(prompt):
    world = ToyWorld.default()
    weights = world.condition(prompt).weights.numpy()
    means, stds = world.means.numpy(), world.stds.numpy()
    denoiser = world.denoiser(prompt)
    g = torch.Generator().manual_seed(1)
    for sigma in (0.03, 0.4, 2.0, SIGMA_MAX):
        x = torch.randn(64, 2, generator=g, dtype=torch.float64) * (3 + sigma)
        got = denoiser(x, torch.full((64,), sigma, dtype=torch.float64)).numpy()
        expect = numpy_posterior_mean(x.numpy(), sigma, means, stds, weights)
        np.testing.assert_allclose(got, expect, rtol=0, atol=1e-12)
        # Tweedie: (D − x)/σ² is the score of p_σ, checked by central differences of log p_σ
        h = 1e-5 * (1 + sigma)
        xn = x.numpy()
        score = np.stack(
            [
                (
                    numpy_log_density(xn + h * e, sigma, means, stds, weights)
                    - numpy_log_density(xn - h * e, sigma, means, stds, weights)
                )
                / (2 * h)
                for e in np.eye(2)
            ],
            -1,
        )
        np.testing.assert_allclose((got - xn) / sigma**2, score, rtol=1e-5, atol=1e-6 / sigma**2)


# ---------------------------------------------------------------------- CFG


class Counting:
    def __init__(self, denoiser):
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.denoiser(x, sigma)


@pytest.mark.parametrize("scale, uncond_calls", [(1.0, 0), (3.0, 10)])
def test_guider_calls_uncond_only_when_guiding(scale, uncond_calls):
    world = ToyWorld.default()
    cond, uncond = Counting(world.denoiser("dog")), Counting(world.denoiser(""))
    events = []
    guider = ToyGuider(cond, uncond, scale, on_event=events.append)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * SIGMA_MAX
    SAMPLERS["Euler"](guider, x, karras(10))
    assert (cond.calls, uncond.calls) == (10, uncond_calls)
    guidance = [e for e in events if isinstance(e, Guidance)]
    assert len(guidance) == 10 and all(e.scale == scale for e in guidance)
    assert all((e.uncond is None) == (scale == 1.0) for e in guidance)


def test_guider_formula_and_guided_and_uncond():
    world = ToyWorld.default()
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 3
    sigma = torch.full((32,), 1.7, dtype=torch.float64)
    c, u = world.denoiser("cat")(x, sigma), world.denoiser("fish")(x, sigma)
    guider = world.guided("cat", negative="fish", cfg=4.0)
    torch.testing.assert_close(guider(x, sigma), u + 4.0 * (c - u), rtol=0, atol=1e-12)
    guided, uncond = guider.guided_and_uncond(x, sigma, scale_factor=0.25)
    torch.testing.assert_close(guided, u + 1.0 * (c - u), rtol=0, atol=1e-12)
    torch.testing.assert_close(uncond, u, rtol=0, atol=0)


def test_cfg_pushes_particles_into_the_prompts_cluster():
    world = ToyWorld.default(leak=0.2)  # a blurry conditional model: ~18 % of its mass on other words
    sigmas = karras(10)
    fractions = {}
    for cfg in (1.0, 3.0):
        x = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * sigmas[0]
        out = SAMPLERS["Euler"](world.guided("dog", "", cfg), x, sigmas)
        fractions[cfg] = world.word_fractions(out)["dog"]
    assert 0.75 < fractions[1.0] < 0.88  # ≈ 0.8 + 0.2/8 without guidance
    assert fractions[3.0] > 0.98 and fractions[3.0] > fractions[1.0] + 0.1


def test_euler_from_the_exact_prior_lands_on_dog():
    world = ToyWorld.default()
    mixture = world.mixture("dog")
    g = torch.Generator().manual_seed(3)
    x = mixture.sample_noisy(2000, SIGMA_MAX, g)
    out = SAMPLERS["Euler"](world.denoiser("dog"), x, karras(50))
    assert world.word_fractions(out)["dog"] >= 0.95
    # and the two dog sub-clusters get their halves
    dog = [k for k, c in enumerate(world.clusters) if c.word == "dog"]
    counts = torch.bincount(world.nearest_cluster(out), minlength=len(world.clusters)).double() / 2000
    assert counts[dog].tolist() == pytest.approx([0.49, 0.49], abs=0.04)


# ---------------------------------------------------------------------- the demo


def parse(argv):
    parser = argparse.ArgumentParser(prog="glassforge")
    toy_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["toy", *argv])


def test_simulate_records_every_step_from_the_seeded_noise():
    world = ToyWorld.default()
    run = demo.simulate(world, "cat", sampler="Euler", steps=6, schedule="Karras", seed=5, particles=30)
    assert run.xs.shape == (7, 30, 2) and run.denoised.shape == (6, 30, 2)
    sigmas = karras(6)
    torch.testing.assert_close(run.sigmas, sigmas)
    noise = torch.randn(30, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.testing.assert_close(run.xs[0], noise * sigmas[0])
    for i in range(6):  # the recorded path is the Euler update with the recorded x̂0
        s, s_next = sigmas[i], sigmas[i + 1]
        expect = run.xs[i] + (s_next - s) * (run.xs[i] - run.denoised[i]) / s
        torch.testing.assert_close(run.xs[i + 1], expect, rtol=0, atol=1e-12)
    assert run.calls == {"cond": 6, "uncond": 0}
    assert run.end_fractions()["cat"] > 0.9


def test_demo_writes_a_png_and_prints_the_summary(tmp_path, capsys):
    out = tmp_path / "toy.png"
    options = ["--steps=5", "--cfg=2", "--negative=fish", "--particles=24", "--seed=1"]
    argv = ["(dog:1.2) cat", "--sampler", "DPM++ 2M", *options, "--out", str(out)]
    assert demo.run(parse(argv)) == 0
    text = capsys.readouterr().out
    assert "sampler DPM++ 2M" in text and "Automatic → Karras" in text and "CFG 2" in text
    step_lines = [line for line in text.splitlines() if line.strip()[:1].isdigit() and "→" in line]
    assert len(step_lines) == 5
    assert "end: particles nearest each word's cluster: dog" in text and "cat" in text
    assert out.stat().st_size > 50_000
    with Image.open(out) as image:
        assert image.width > 1000 and image.height > 600


@pytest.mark.parametrize(
    "argv, message",
    [
        (["dog zebra"], "unknown word 'zebra'; known: dog, cat"),
        (["dog", "--negative", "unicorn", "--cfg", "3"], "unknown word 'unicorn'"),
        (["dog", "--sampler", "Eulr"], "unknown sampler 'Eulr'; expected one of: DPM++ 2M"),
        (["dog", "--schedule", "Karass"], "unknown schedule 'Karass'; expected one of: Automatic"),
    ],
)
def test_demo_bad_input_is_a_one_line_error(argv, message, tmp_path, capsys):
    out = tmp_path / "toy.png"
    assert demo.run(parse([*argv, "--out", str(out)])) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("sampler", ["Heun", "DPM++ 2M SDE", "Euler a"])
def test_every_step_is_recorded_for_second_order_and_noisy_samplers(sampler):
    run = demo.simulate(ToyWorld.default(), "bird", sampler=sampler, steps=4, particles=8, seed=0)
    assert run.steps == len(run.sigmas) - 1 == 4
    torch.testing.assert_close(run.step_sigmas[:, 0], run.sigmas[:-1])
    assert torch.isfinite(run.xs).all()
    assert run.calls["cond"] >= 4
