"""``glassforge explain --toy``: the toy world's run, its worked-out steps, its trace and its report.

Oracles: the toy mixture's exact distribution (particles sampled with its exact denoiser must land in
the clusters with the clusters' own spread), the published update formulas written out here (Karras et
al. for Euler/Heun, k-diffusion's ancestral split, DPM-Solver++(2M)), and torch's seeded generator.
"""

import json
import math
from html.parser import HTMLParser

import pytest
import torch

from glassforge.cli import main
from glassforge.explain.toy_report import render_toy_html, toy_walkthrough
from glassforge.explain.toy_trace import run_toy, toy_trace_json, vec, worked_step
from glassforge.toy.world import ToyWorld, UnknownWordError

WORLD = ToyWorld.default()


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize("sampler", ["Euler", "Heun", "DPM++ 2M"])
def test_particles_land_in_the_prompts_cluster_with_its_spread(sampler):
    """With the exact denoiser and CFG 1, the run samples p(x0 | "cat"): ~98 % near cat (leak 2 %), and
    the cat points scatter around μ_cat with the cluster's own s (E|x − μ|² = 2s² in the plane)."""
    trace = run_toy(WORLD, "cat", sampler=sampler, steps=30, cfg=1.0, seed=5, particles=400)
    assert len(trace.steps) == 30 and trace.final.shape == (400, 2)
    cat = WORLD.words.index("cat")
    (k,) = [j for j, c in enumerate(WORLD.clusters) if c.word == "cat"]
    mu, s = _t(WORLD.clusters[k].mean), WORLD.clusters[k].std
    near_cat = WORLD.nearest_word(trace.final) == cat
    assert near_cat.double().mean() >= 0.94
    r2 = ((trace.final[near_cat] - mu) ** 2).sum(-1)
    spread = math.sqrt(float(r2.mean()) / 2)  # estimates s to ±3 % (1 sd) with ~390 points
    if sampler == "Euler":  # first order: 30 steps still shrink the spread (measured 0.86 s)
        assert 0.75 * s < spread < 0.95 * s
    else:
        assert spread == pytest.approx(s, rel=0.1)
    # every particle ends inside some cluster (5 s: a miss of ~1e-5 per point for a Gaussian)
    d = torch.cdist(trace.final, WORLD.means)
    nearest = d.argmin(-1)
    assert (d.min(-1).values <= 5 * WORLD.stds[nearest]).all()


def test_noise_is_the_seeds_generator_and_x_T_is_sigma_max_times_it():
    trace = run_toy(WORLD, "dog", steps=3, seed=1234, particles=7)
    expected = torch.randn((7, 2), generator=torch.Generator().manual_seed(1234))
    torch.testing.assert_close(trace.noise, expected.double(), rtol=0, atol=0)
    # sample() scales in the noise's float32, as for an image latent, then the sampler runs in float64
    x_t = (expected * trace.sigmas[0]).double()
    torch.testing.assert_close(trace.steps[0].x, x_t, rtol=0, atol=0)
    assert trace.sigmas[0] == pytest.approx(14.6146, abs=1e-4) and trace.sigmas[-1] == 0.0


def _update(sampler, n, prev):
    """x_{i+1} from the followed particle's numbers, by the published formulas."""
    x, s, sn = (_t(n["x"]), n["sigma"], n["sigma_next"])
    D = _t(n["denoised"][0])
    if sampler == "Euler":
        return x + (sn - s) * (x - D) / s
    if sampler == "Euler a":
        up = min(sn, math.sqrt(sn**2 * (s**2 - sn**2) / s**2)) if sn > 0 else 0.0
        down = math.sqrt(sn**2 - up**2)
        z = _t(n["noise"]) if n["noise"] is not None else torch.zeros(2, dtype=torch.float64)
        return x + (down - s) * (x - D) / s + up * z
    if sampler == "Heun":
        d = (x - D) / s
        x1 = x + (sn - s) * d
        if sn == 0:
            return x1
        d2 = (x1 - _t(n["denoised"][1])) / sn
        return x + (sn - s) * (d + d2) / 2
    assert sampler == "DPM++ 2M"
    if sn == 0:
        return D
    h = math.log(s / sn)
    Dp = D
    if prev is not None:
        r = math.log(prev["sigma"] / prev["sigma_next"]) / h
        Dp = (1 + 1 / (2 * r)) * D - (1 / (2 * r)) * _t(n["previous_denoised"])
    return (sn / s) * x - math.expm1(-h) * Dp


@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "Heun", "DPM++ 2M"])
def test_the_shown_numbers_recompute_each_update(sampler):
    """From the followed particle's x_i, σ_i, σ_{i+1}, D̃ (and z, the previous D̃): x_{i+1} to 1e-6; CFG and
    the exact denoiser from D_c, D_u; the written lines carry those numbers."""
    trace = run_toy(
        WORLD, "dog, cat", negative="fish", sampler=sampler, steps=8, cfg=3.0, seed=9, particles=50
    )
    cond, uncond = WORLD.denoiser(trace.cond), WORLD.denoiser(trace.uncond)
    prev = None
    for i in range(len(trace.steps)):
        w = worked_step(trace, i)
        n = w.numbers
        assert n["particle"] == trace.followed
        expected = _update(sampler, n, prev)
        assert torch.allclose(expected, _t(n["x_next"]), rtol=0, atol=1e-6)
        assert w.check is not None and w.check < 1e-9  # all particles, by the explainer's own arithmetic
        for j, (dc, du, dg) in enumerate(zip(n["cond"], n["uncond"], n["denoised"], strict=True)):
            dc, du, dg = _t(dc), _t(du), _t(dg)
            assert torch.allclose(du + 3.0 * (dc - du), dg, rtol=0, atol=1e-9)
            at = trace.steps[i].evaluations[j]
            x_eval = _t(n["x"]) if j == 0 else None
            if x_eval is not None:  # the first evaluation is at x_i: the exact posterior means
                sig = torch.tensor([at.sigma], dtype=torch.float64)
                assert torch.allclose(cond(x_eval[None], sig)[0], dc, atol=1e-12)
                assert torch.allclose(uncond(x_eval[None], sig)[0], du, atol=1e-12)
        text = "\n".join(w.lines)
        assert vec(_t(n["x_next"])) in w.lines[-1] and vec(_t(n["denoised"][0])) in text
        if n["sigma_next"] > 0 and sampler != "Euler a":
            assert any(f"{n['sigma_next']:.6g}" in line for line in w.filled)
        prev = n


def test_trace_json_is_complete_and_consistent(tmp_path):
    trace = run_toy(WORLD, "(dog:1.5) a bird", sampler="Euler a", steps=5, cfg=2.0, seed=3, particles=11)
    doc = json.loads(json.dumps(toy_trace_json(trace)))
    assert (doc["format"], doc["version"]) == ("glassforge-toy-trace", 1)
    assert doc["params"]["seed"] == 3 and doc["params"]["particles"] == 11 and doc["params"]["steps"] == 5
    assert doc["prompt"]["cond"]["words"] == {"dog": 1.5, "bird": 1.0}
    assert doc["prompt"]["cond"]["ignored"] == ["a"]
    assert sum(doc["prompt"]["cond"]["mixture"]) == pytest.approx(1.0)
    assert len(doc["xs"]) == 6 and len(doc["steps"]) == 5 and len(doc["sigmas"]) == 6
    for i, step in enumerate(doc["steps"]):
        x, xn = _t(doc["xs"][i]), _t(doc["xs"][i + 1])
        e = step["evaluations"][0]
        guided = _t(e["uncond"]) + 2.0 * (_t(e["cond"]) - _t(e["uncond"]))
        assert torch.allclose(guided, _t(e["guided"]), atol=1e-12)
        s, sn = step["sigma"], step["sigma_next"]
        up, down = step["terms"].get("sigma_up", 0.0), step["terms"].get("sigma_down", sn)
        z = _t(step["noise"]) if step["noise"] is not None else torch.zeros_like(x)
        assert torch.allclose(x + (down - s) * (x - guided) / s + up * z, xn, atol=1e-9)
    assert sum(doc["end_fractions"].values()) == pytest.approx(1.0)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.tags, self.ids = [], [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.links += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href", "action")]
        self.ids |= {v for k, v in attrs if k == "id"}


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_report_is_self_contained(lang):
    trace = run_toy(WORLD, "dog, cat", steps=6, cfg=1.0, seed=2, particles=30)
    page = render_toy_html(trace, lang)
    parser = _Links()
    parser.feed(page)
    assert all(link.startswith(("data:", "#")) for link in parser.links), parser.links
    assert not [t for t, a in parser.tags if t == "link" or (t == "script" and "src" in a)]
    assert "http://" not in page and "https://" not in page and "@import" not in page
    assert {"step-slider", "play", "view-far", "view-near", "step-formula", "toy-data"} <= parser.ids
    start = page.index('id="toy-data">') + len('id="toy-data">')
    data = json.loads(page[start : page.index("</script>", start)])
    assert len(data["steps"]) == 6 and len(data["xs"]) == 7 and len(data["xs"][0]) == 30
    assert data["followed"] == trace.followed
    if lang == "ja":
        assert "トイワールド" in page


def test_cli_toy_text_and_files(tmp_path, capsys):
    out = tmp_path / "toy"
    args = [
        "explain",
        "--toy",
        "dog",
        "--steps",
        "3",
        "--seed",
        "4",
        "--particles",
        "12",
        "--sampler",
        "Euler",
    ]
    assert main([*args, "--out", str(out), "--format", "text", "--lang", "ja"]) == 0
    text = capsys.readouterr().out
    assert "ステップ 3 / 3" in text and "x_{i+1} = x_i + (σ_{i+1} − σ_i)·(x_i − D̃_i)/σ_i" in text
    assert (out / "trace.json").is_file() and not (out / "index.html").exists()
    assert json.loads((out / "trace.json").read_text())["params"]["sampler"] == "Euler"
    assert main([*args, "--out", str(out)]) == 0
    assert (out / "index.html").is_file()
    assert text.count("✓ x_{i+1}") == 3


def test_cli_toy_rejects_bad_input(tmp_path, capsys):
    out = str(tmp_path / "bad")
    assert main(["explain", "--toy", "zebra", "--out", out]) == 2
    assert "unknown word 'zebra'; known: dog" in capsys.readouterr().err
    assert main(["explain", "--toy", "dog", "--model", "x.safetensors", "--out", out]) == 2
    assert "--model does not apply with --toy" in capsys.readouterr().err
    with pytest.raises(UnknownWordError):
        run_toy(WORLD, "dog unicorn")


def test_text_walkthrough_has_every_step():
    trace = run_toy(WORLD, "flower", sampler="DPM++ 2M", steps=4, cfg=1.0, seed=0, particles=10)
    text = toy_walkthrough(trace)
    assert text.count("-- step ") == 4 and "D*(x; σ) = Σ_k w_k·(…)" in text and "flower" in text
