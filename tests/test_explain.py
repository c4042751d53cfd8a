"""The explainer: the recorded trace is self-consistent, explain equals generate, the report is self-contained.

Tiny random-weight SD1 checkpoints in the real layout (``checkpoint_fixtures``). The recomputations below
are written out here from the published formulas (Karras et al. for Euler/Heun, k-diffusion's ancestral
split, DPM-Solver++(2M)); they read only the trace files, never the explainer's own arithmetic.
"""

import argparse
import io
import json
import math
import re
from contextlib import redirect_stdout
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image

import checkpoint_fixtures as fx
from glassforge import generate_cli
from glassforge.explain import cli as explain_cli
from glassforge.explain.recorder import TraceRecorder
from glassforge.explain.trace import load_trace
from glassforge.explain.walk import step_walk
from glassforge.models.loader import load_model
from glassforge.models.tokenizer import BOS_ID, EOS_ID, tokenizers_for_family
from glassforge.pipeline_events import Decoded, PromptEncoded, Sampled
from glassforge.pngfile import read_infotext
from glassforge.sampling.events import Guidance, ModelCall, SamplerStep
from glassforge.txt2img import Txt2ImgParams, txt2img

PROMPT = "a red (circle:1.2) on a blue background"
SIZE = {"width": 32, "height": 32}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("explain") / "tiny-sd1.safetensors"
    return fx.write_single_file(fx.build(fx.TINY["sd1"]), path)


@pytest.fixture(scope="module")
def models(checkpoint):
    return {"eps": load_model(checkpoint), "v": load_model(checkpoint, prediction="v")}


def _record(model, tmp_path, **params):
    recorder = TraceRecorder()
    recorder.describe_model(model)
    args = {"prompt": PROMPT, "negative_prompt": "blurry", "seed": 7, "steps": 4, **SIZE, **params}
    result = txt2img(model, Txt2ImgParams(**args), on_event=recorder)
    recorder.save(tmp_path)
    return load_trace(tmp_path), result


def _close(actual, expected, what):
    torch.testing.assert_close(actual.double(), expected.double(), rtol=1e-5, atol=1e-5, msg=what)


def _denoised(x, raw, sigma, prediction):
    s = sigma.double().reshape(-1, 1, 1, 1)
    x, raw = x.double(), raw.double()
    if prediction == "eps":
        return x - s * raw
    return x / (s**2 + 1) - s / (s**2 + 1).sqrt() * raw


def _check_calls_and_guidance(trace):
    """Every denoised estimate from the raw output; cond/uncond are the calls' rows; CFG from them."""
    batch = trace.batch(0)
    for call in batch["model_calls"]:
        x, raw = trace.t(call["tensors"]["x"]), trace.t(call["tensors"]["raw"])
        sigma = torch.tensor(call["sigma"])
        _close(trace.t(call["tensors"]["denoised"]), _denoised(x, raw, sigma, call["prediction"]), "D(x, σ)")
        _close(torch.tensor(call["c_in"]), 1 / (sigma.double() ** 2 + 1).sqrt(), "c_in")
    for g in batch["guidance"]:
        calls = [batch["model_calls"][k] for k in g["calls"]]
        rows = {role: [] for role in ("cond", "uncond")}
        for call in calls:
            den = trace.t(call["tensors"]["denoised"])
            for k, role in enumerate(call["rows"]):
                rows[role].append(den[k])
        cond = trace.t(g["tensors"]["cond"])
        _close(cond, torch.stack(rows["cond"]), "cond half")
        if g["tensors"]["uncond"] is None:
            assert not rows["uncond"] and g["scale"] == 1.0
            _close(trace.t(g["tensors"]["guided"]), cond, "guided at CFG 1")
            continue
        uncond = trace.t(g["tensors"]["uncond"])
        _close(uncond, torch.stack(rows["uncond"]), "uncond half")
        _close(
            trace.t(g["tensors"]["guided"]),
            uncond.double() + g["scale"] * (cond.double() - uncond.double()),
            "CFG",
        )


def _expected_update(trace, i, sampler):
    """x_{i+1} recomputed from the recorded x_i, σ's, guided estimates (and noise) alone."""
    steps = trace.steps()
    step = steps[i]
    x = trace.step_tensor(step, "x").double()
    s, sn = float(step["sigma"]), float(step["sigma_next"])
    guided = [trace.t(g["tensors"]["guided"]).double() for g in trace.guidance(step)]
    D = guided[0]
    if sampler == "Euler":
        return x + (sn - s) * (x - D) / s
    if sampler == "Euler a":
        up = min(sn, math.sqrt(sn**2 * (s**2 - sn**2) / s**2)) if sn > 0 else 0.0
        down = math.sqrt(sn**2 - up**2)
        assert step["terms"]["sigma_up"] == pytest.approx(up, rel=1e-6)
        assert step["terms"]["sigma_down"] == pytest.approx(down, rel=1e-6)
        out = x + (down - s) * (x - D) / s
        z = trace.step_tensor(step, "noise")
        assert (z is None) == (up == 0)
        return out if z is None else out + up * z.double()
    if sampler == "Heun":
        d = (x - D) / s
        x_euler = x + (sn - s) * d
        if sn == 0:
            assert len(guided) == 1
            return x_euler
        second = trace.calls(step)[-1]  # the model was asked again at x′ = x + (σ_{i+1} − σ_i)·d
        inputs = trace.t(second["tensors"]["x"]).double()
        _close(inputs[: x.shape[0]], x_euler, "Heun's second model input")
        assert second["sigma"][0] == pytest.approx(sn, rel=1e-6)
        d2 = (x_euler - guided[1]) / sn
        return x + (sn - s) * (d + d2) / 2
    if sampler == "DPM++ 2M":
        if sn == 0:
            return D
        h = math.log(s / sn)
        if i > 0:
            prev = steps[i - 1]
            h_last = math.log(float(prev["sigma"]) / float(prev["sigma_next"]))
            D_prev = trace.t(trace.guidance(prev)[0]["tensors"]["guided"]).double()
            r = h_last / h
            D = (1 + 1 / (2 * r)) * D - (1 / (2 * r)) * D_prev
        return (sn / s) * x - math.expm1(-h) * D
    raise AssertionError(sampler)


@pytest.mark.parametrize(
    ("sampler", "prediction", "cfg"),
    [
        ("Euler", "eps", 7.0),
        ("Euler a", "eps", 7.0),
        ("Heun", "eps", 5.0),
        ("DPM++ 2M", "eps", 7.0),
        ("Euler", "v", 7.0),
        ("DPM++ 2M", "eps", 1.0),  # CFG 1: one cond pass, no negative
    ],
)
def test_the_trace_is_self_consistent(models, tmp_path, sampler, prediction, cfg):
    trace, result = _record(models[prediction], tmp_path, sampler=sampler, cfg_scale=cfg)
    batch = trace.batch(0)
    steps = batch["steps"]
    assert len(steps) == 4 and batch["sampler"] == sampler and trace.doc["version"] == 1
    _check_calls_and_guidance(trace)
    sigmas = batch["sigmas"]
    noise = trace.t(batch["noise"])
    _close(trace.t(batch["x_T"]), sigmas[0] * noise.double(), "x_T = σ_0·ε")
    for i, step in enumerate(steps):
        assert (step["sigma"], step["sigma_next"]) == pytest.approx((sigmas[i], sigmas[i + 1]))
        calls = trace.calls(step)
        assert calls and calls[0]["sigma"][0] == pytest.approx(step["sigma"], rel=1e-6)
        assert calls[0]["timestep"][0] == pytest.approx(batch["timesteps"][i], abs=1e-3)
        _close(
            trace.step_tensor(step, "denoised"), trace.t(trace.guidance(step)[0]["tensors"]["guided"]), "D_i"
        )
        if i:
            _close(
                trace.step_tensor(step, "x"),
                trace.step_tensor(steps[i - 1], "x_next"),
                "x_i = x_{i-1}'s next",
            )
        _close(trace.step_tensor(step, "x_next"), _expected_update(trace, i, sampler), f"{sampler} step {i}")
        assert step_walk(trace, i).check <= 1e-5  # the report's own recomputation agrees
    _close(trace.t(batch["latents"]), trace.step_tensor(steps[-1], "x_next"), "final latent")
    _close(trace.t(batch["latents"]), result.latents, "txt2img's latents")


def test_events_arrive_in_pipeline_order_and_batches_are_kept_apart(models, tmp_path):
    seen = []
    params = Txt2ImgParams(PROMPT, seed=3, steps=2, batch_size=2, batch_count=2, sampler="Euler", **SIZE)
    txt2img(models["eps"], params, on_event=lambda e: seen.append(type(e)))
    assert seen[0] is PromptEncoded and seen.count(PromptEncoded) == 1
    per_batch = [ModelCall, Guidance, SamplerStep] * 2 + [Sampled, Decoded]
    assert seen[1:] == per_batch * 2
    trace, result = _record(models["eps"], tmp_path, sampler="Euler", steps=2, batch_size=2, batch_count=2)
    assert [b["seeds"] for b in trace.doc["batches"]] == [[7, 8], [9, 10]]
    assert trace.batch(1)["model_calls"][0]["rows"] == ["cond", "cond", "uncond", "uncond"]
    _close(trace.t(trace.batch(1)["latents"]), result.latents[2:], "second batch's latents")


def test_token_ids_in_the_trace_equal_the_tokenizers(models, tmp_path):
    trace, _ = _record(models["eps"], tmp_path, sampler="Euler", steps=1)
    tokenizer = tokenizers_for_family("sd1")[0]
    for side, text in (("cond", PROMPT), ("uncond", "blurry")):
        (enc,) = trace.prompt[side]["encoders"]
        expected = tokenizer.tokenize_prompt(text)
        assert [c["ids"] for c in enc["chunks"]] == [list(c.ids) for c in expected.chunks]
        assert [c["weights"] for c in enc["chunks"]] == [list(c.weights) for c in expected.chunks]
        ids, kinds = enc["chunks"][0]["ids"], enc["chunks"][0]["kinds"]
        n = expected.token_count
        assert (ids[0], ids[n + 1]) == (BOS_ID, EOS_ID) and len(ids) == 77
        assert kinds[0] == "bos" and kinds[1 : n + 1] == ["token"] * n and kinds[n + 1] == "eos"
        assert set(kinds[n + 2 :]) == {"padding"}
    weights = trace.prompt["cond"]["encoders"][0]["chunks"][0]["weights"]
    assert weights[3] == pytest.approx(1.2)  # "circle" carries its emphasis
    context = trace.t(trace.prompt["cond"]["context"])
    assert context.shape == (1, 77, models["eps"].unet.config.cross_attention_dim)


def _parser():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    generate_cli.add_parsers(sub)
    explain_cli.add_parser(sub)
    return parser


def _run(argv):
    args = _parser().parse_args(argv)
    out = io.StringIO()
    with redirect_stdout(out):
        assert args.func(args) == 0
    return out.getvalue()


class _Checker(HTMLParser):
    """Tags must nest and close (void elements aside); collects ids and every src/href."""

    VOID = frozenset({"meta", "img", "input", "br", "hr", "link", "circle", "rect", "line", "polyline"})

    def __init__(self):
        super().__init__()
        self.stack, self.links, self.ids = [], [], set()

    def handle_starttag(self, tag, attrs):
        self.links += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href", "action")]
        self.ids |= {v for k, v in attrs if k == "id"}
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, (
            f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        )
        self.stack.pop()


def test_explain_gives_generates_image_and_a_self_contained_report(checkpoint, tmp_path):
    common = [PROMPT, "--model", str(checkpoint), "--steps", "3", "--width", "32", "--height", "32",
              "--seed", "21", "--precision", "fp32", "--sampler", "DPM++ 2M", "--negative", "blurry"]  # fmt: skip
    _run(["generate", *common, "--out", str(tmp_path / "gen")])
    _run(["explain", *common, "--out", str(tmp_path / "exp"), "--lang", "ja"])
    (generated,) = sorted((tmp_path / "gen").glob("*.png"))
    explained = tmp_path / "exp" / "image-0.png"
    a, b = np.asarray(Image.open(generated)), np.asarray(Image.open(explained))
    assert a.shape == (32, 32, 3) and np.array_equal(a, b)
    assert read_infotext(generated) == read_infotext(explained)

    trace = load_trace(tmp_path / "exp")
    pixels = trace.t(trace.batch(0)["decoded"]["pixels"])[0]
    as_bytes = (255.0 * torch.clamp((pixels + 1) / 2, 0, 1).permute(1, 2, 0)).numpy().astype(np.uint8)
    assert np.array_equal(as_bytes, b)  # the recorded decoder output is what the PNG holds
    assert trace.doc["params"]["seed"] == 21 and trace.doc["images"] == ["image-0.png"]

    page = (tmp_path / "exp" / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"https?://", page), "the report must not reference the network"
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    assert {"a", "b", "c", "d", "e", "f", "g", "h", "step-slider", "play", "steps-data"} <= checker.ids
    assert checker.links and all(v.startswith(("data:image/", "#")) for v in checker.links), "inline only"
    data = json.loads(page.split('id="steps-data">', 1)[1].split("</script>", 1)[0].replace("<\\/", "</"))
    assert len(data) == 3 and all(step["x0"].startswith("data:image/png;base64,") for step in data)
    assert "言葉が画像になるまで" in page and "トークン化" in page
    gif = Image.open(tmp_path / "exp" / "denoise.gif")
    assert gif.n_frames == 3


def test_text_format_prints_the_formulas_with_numbers(checkpoint, tmp_path):
    text = _run(["explain", PROMPT, "--model", str(checkpoint), "--steps", "2", "--width", "32", "--height", "32",
                 "--seed", "5", "--precision", "fp32", "--sampler", "Euler", "--format", "text", "--out", str(tmp_path)])  # fmt: skip
    num = r"-?\d+(\.\d+)?(e[-+]\d+)?"
    assert re.search(rf"= x_i \+ \({num} − {num}\)·\(x_i − D̃_i\)/{num}", text)  # Euler filled in
    assert re.search(rf"D_c = x − σ·ε_c = {num} − {num}×\(?{num}\)? = {num}", text)  # ε → D
    assert re.search(rf"D̃ = D_u \+ w·\(D_c − D_u\) = {num} \+ 7×\({num} − \(?{num}\)?\) = {num}", text)  # CFG
    assert re.search(rf"x_T = σ_max·ε = 14\.6146 × \(?{num}\)? = {num}", text)
    assert "49406" in text and "circle</w>" in text  # the token table
    assert re.search(r"largest difference to the recorded x_\{i\+1\} = 0\b", text)
    assert not (tmp_path / "index.html").exists() and (tmp_path / "trace.json").is_file()
