"""Per-word cross-attention maps of the explainer: the DAAM aggregation against a direct computation,
the cond half of real-layout SD1/SD2/SDXL checkpoints and of the embedded model, images unchanged by
recording, the trace's names and shapes, and the maps in the report and the text walk-through."""

import argparse
import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch
from safetensors import safe_open

import checkpoint_fixtures as fx
from glassforge import generate_cli
from glassforge.explain import cli as explain_cli
from glassforge.explain.attention import AttentionCollector, record_attention, reduce_keys
from glassforge.explain.recorder import TraceRecorder
from glassforge.explain.trace import load_trace
from glassforge.models.loader import load_model
from glassforge.models.locate import embedded_model_path
from glassforge.models.patcher import (
    AttentionInputPatch,
    AttentionObserver,
    UNetPatcher,
    attention_probabilities,
)
from glassforge.models.unet import UNetNetwork
from glassforge.txt2img import Txt2ImgParams, txt2img

PROMPT = "a red circle on a blue background"


def _tiny_unet(name: str):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**fx.TINY[name].unet)
    fx._randomize(unet, torch.Generator().manual_seed(3))
    return unet.eval().requires_grad_(False)


def _bilinear(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[..., h, w] → [..., H, W]: linear interpolation between pixel centres, edges held
    (the convention of ``align_corners=False``), written out as two interpolation matrices."""

    def matrix(n: int, m: int) -> np.ndarray:
        out = np.zeros((m, n))
        for i in range(m):
            src = max((i + 0.5) * n / m - 0.5, 0.0)
            lo = min(int(np.floor(src)), n - 1)
            hi, f = min(lo + 1, n - 1), src - lo
            out[i, lo] += 1 - f
            out[i, hi] += f
        return out

    h, w = a.shape[-2:]
    return matrix(h, size[0]) @ a @ matrix(w, size[1]).T


@pytest.fixture(scope="module")
def sd2_unet():
    """Tiny SD2-shaped: cross-attention at the latent's resolution and at half of it; 1 and 2 heads."""
    return _tiny_unet("sd2")


def _inputs(rows: int, height: int = 16, width: int = 8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 4, height, width, generator=g)
    return x, torch.full((rows,), 500.0), torch.randn(rows, 77, 128, generator=g)


def test_aggregation_of_one_layer_matches_attention_probabilities(sd2_unet):
    patcher = UNetPatcher(sd2_unet)
    site, attn, _ = next(
        a for a in patcher.layout.attention if a[0].key == ("input", 3, 0) and a[0].kind == "cross"
    )
    seen = []
    collector = AttentionCollector(sites=frozenset({site.key}))
    probe = AttentionInputPatch(
        lambda h, c, args: seen.append((h, c, args.query_shape)) or (h, c), sites={site.key}
    )
    x, t, context = _inputs(2)
    with torch.no_grad():
        patcher.with_patch(probe, collector.patch())(x, t, encoder_hidden_states=context)
        got = collector.take((16, 8))
        ((hidden, ctx, (h, w)),) = seen
        probs = attention_probabilities(attn, hidden, ctx)  # [rows·heads, h·w, 77]
    assert (h, w) == (8, 4) and collector.layers == [site.name]  # half the latent's 16×8: upsampled
    torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:2]), atol=1e-5, rtol=0)  # all 77 keys
    heads = site.heads
    per_head = probs.double().numpy().reshape(2, heads, h, w, 77)
    expected = _bilinear(per_head.mean(1).transpose(0, 3, 1, 2), (16, 8))  # [rows, 77, 16, 8]
    assert got.shape == (2, 77, 16, 8) and got.dtype == torch.float32
    np.testing.assert_allclose(got.double().numpy(), expected, atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(got.sum(1).numpy(), np.ones((2, 16, 8)), atol=1e-5)
    assert collector.take((16, 8)) is None  # take() resets


def test_all_layers_average_to_probabilities_and_split_calls_keep_row_order(sd2_unet):
    patcher = UNetPatcher(sd2_unet)
    cross = [s for s in patcher.layout.sites if s.kind == "cross"]
    x, t, context = _inputs(4)
    results = []
    for micro_batch in (None, 1):  # one call of 4 rows, or CFG-style pairs (rows 0+2, then 1+3)
        collector = AttentionCollector()
        net = UNetNetwork(patcher.with_patch(collector.patch()), micro_batch=micro_batch, images=2)
        with torch.no_grad():
            net(x, t, context)
        assert collector.layers == [s.name for s in cross]
        results.append(collector.take((16, 8)))
    whole, pairs = results
    torch.testing.assert_close(whole.sum(1), torch.ones(4, 16, 8), atol=1e-5, rtol=0)
    torch.testing.assert_close(pairs, whole, atol=1e-5, rtol=1e-4)
    assert (whole[0] - whole[1]).abs().max() > 1e-4  # rows differ, so the order test has power


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attention")
    return {name: fx.write_single_file(fx.build(fx.TINY[name]), folder / f"{name}.safetensors")
            for name in ("sd1", "sd2", "sdxl")}  # fmt: skip


def _record(model, params: Txt2ImgParams, folder):
    recorder = TraceRecorder()
    recorder.describe_model(model)
    unet = record_attention(recorder, UNetPatcher(model.unet))
    (observer,) = unet.patches
    assert isinstance(observer, AttentionObserver) and observer.kind == "cross"
    result = txt2img(model, params, on_event=recorder, unet=unet)
    recorder.save(folder)
    return load_trace(folder), result


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("sd1", {"batch_size": 2}),
        ("sd2", {"cfg_scale": 1.0}),  # one cond pass per step: every row is the prompt's
        ("sdxl", {"width": 32, "height": 48}),
        ("embedded", {}),
    ],
)
def test_recording_keeps_the_image_and_stores_the_cond_maps(checkpoints, tmp_path, name, extra):
    # fp32: the reference path, where the direct recomputation below can be held to 1e-4
    model = load_model(
        embedded_model_path() if name == "embedded" else checkpoints[name], dtype=torch.float32
    )
    args = {"prompt": PROMPT, "negative_prompt": "green square", "seed": 11, "steps": 3, "sampler": "Euler",
            "width": 32, "height": 32, **extra}  # fmt: skip
    params = Txt2ImgParams(**args)
    trace, recorded = _record(model, params, tmp_path)
    plain = txt2img(model, params)
    assert torch.equal(recorded.latents, plain.latents)
    for a, b in zip(recorded.images, plain.images, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))

    att = trace.doc["attention"]
    batch = trace.batch(0)
    images = params.batch_size
    latent_hw = tuple(trace.t(batch["latents"]).shape[-2:])
    assert att["half"] == "cond" and att["keys"] == 77 and att["layers"]
    tokens = att["tokens"]
    (enc,) = trace.prompt["cond"]["encoders"][:1]
    kinds = enc["chunks"][0]["kinds"]
    kept = [k for k, kind in enumerate(kinds) if kind != "padding"]
    assert [r["position"] for r in tokens] == [*kept, None] and tokens[-1]["kind"] == "padding"
    assert [r["text"] for r in tokens[:-1]] == [enc["chunks"][0]["texts"][k] for k in kept]
    assert [e["step"] for e in att["maps"]] == list(range(len(batch["steps"])))
    with safe_open(str(tmp_path / "trace.safetensors"), "pt") as f:
        stored = set(f.keys())
    for entry in att["maps"]:
        assert entry["tensor"] in stored
        maps = trace.t(entry["tensor"])
        assert maps.shape == (images, len(tokens), *latent_hw) and maps.dtype == torch.float32
        torch.testing.assert_close(maps.sum(1), torch.ones(images, *latent_hw), atol=1e-5, rtol=0)

    # the stored rows are the prompt's half: recompute step 0 from its recorded input and the cond context
    call = batch["model_calls"][att["maps"][0]["call"]]
    x, sigma = trace.t(call["tensors"]["x"]), torch.tensor(call["sigma"])
    rows = [k for k, role in enumerate(call["rows"]) if role == "cond"]
    assert len(rows) == images
    unet = UNetPatcher(model.unet)
    cond = trace.t(trace.prompt["cond"]["context"])
    uncond = trace.t(trace.prompt["uncond"]["context"])
    dtype = torch.float32
    added = {}
    if model.family == "sdxl":
        from glassforge.models.unet import sdxl_time_ids

        added = {
            "added_cond_kwargs": {"text_embeds": None, "time_ids": sdxl_time_ids(params.height, params.width)}
        }
    direct = {}
    for side, context in (("cond", cond), ("uncond", uncond)):
        collector = AttentionCollector()
        if added:
            pooled = trace.t(trace.prompt[side]["pooled"])
            added["added_cond_kwargs"]["text_embeds"] = pooled.to(dtype)
        xin = (x[rows[:1]] / (sigma[rows[:1]] ** 2 + 1).sqrt().reshape(-1, 1, 1, 1)).to(dtype)
        with torch.no_grad():
            unet.with_patch(collector.patch())(
                xin,
                torch.tensor(call["timestep"])[rows[:1]],
                encoder_hidden_states=context.to(dtype),
                **added,
            )
        direct[side] = reduce_keys(collector.take(latent_hw), tokens)[0]
    first = trace.attention_maps(0)[0]
    torch.testing.assert_close(first, direct["cond"], atol=1e-4, rtol=0)
    if params.cfg_scale != 1:
        # the negative prompt's half is farther off by an order of magnitude (so the check has power)
        off = float((first - direct["cond"]).abs().max())
        assert float((first - direct["uncond"]).abs().max()) > 10 * max(off, 1e-6)


def test_a_two_chunk_prompt_keeps_each_chunks_positions(checkpoints, tmp_path):
    model = load_model(checkpoints["sd1"])
    params = Txt2ImgParams("a red circle BREAK on a blue background", seed=2, steps=1, width=32, height=32)
    trace, _ = _record(model, params, tmp_path)
    att = trace.attention
    assert att["keys"] == 154 and trace.prompt["cond"]["chunks"] == 2
    words = [(r["chunk"], r["index"], r["text"]) for r in att["tokens"] if r["kind"] == "token"]
    assert words == [(0, 1, "a</w>"), (0, 2, "red</w>"), (0, 3, "circle</w>"),
                     (1, 1, "on</w>"), (1, 2, "a</w>"), (1, 3, "blue</w>"), (1, 4, "background</w>")]  # fmt: skip
    assert all(
        r["position"] == 77 * r["chunk"] + r["index"] for r in att["tokens"] if r["position"] is not None
    )
    maps = trace.attention_maps(0)
    assert maps.shape == (1, len(att["tokens"]), 16, 16)  # the tiny VAE halves 32 px
    torch.testing.assert_close(maps.sum(1), torch.ones(1, 16, 16), atol=1e-5, rtol=0)


def _run(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    generate_cli.add_parsers(sub)
    explain_cli.add_parser(sub)
    args = parser.parse_args(argv)
    out = io.StringIO()
    with redirect_stdout(out):
        assert args.func(args) == 0
    return out.getvalue()


def _script_json(page: str, element_id: str):
    return json.loads(page.split(f'id="{element_id}">', 1)[1].split("</script>", 1)[0].replace("<\\/", "</"))


def test_report_and_text_show_each_steps_maps(checkpoints, tmp_path):
    common = [PROMPT, "--model", str(checkpoints["sd1"]), "--steps", "3", "--width", "32", "--height", "32",
              "--seed", "4", "--precision", "fp32", "--sampler", "Euler"]  # fmt: skip
    _run(["explain", *common, "--out", str(tmp_path / "html")])
    trace = load_trace(tmp_path / "html")
    page = (tmp_path / "html" / "index.html").read_text(encoding="utf-8")
    words = _script_json(page, "attention-data")["words"]
    assert [w["label"] for w in words] == [*PROMPT.split(), "EOS"]
    steps = _script_json(page, "steps-data")
    assert len(steps) == 3 == len(trace.attention["maps"])
    for step in steps:
        att = step["att"]
        assert len(att["maps"]) == len(words) == len(att["share"]) == len(att["info"])
        assert all(uri.startswith("data:image/png;base64,") for uri in att["maps"])
    assert steps[0]["att"]["maps"] != steps[-1]["att"]["maps"]  # the maps follow the step
    shares = [float(v.rstrip("%")) for v in steps[-1]["att"]["share"]]
    stored = trace.attention_maps(2)[0]
    rows = [r["row"] for r in trace.attention["tokens"] if r["kind"] in ("token", "eos")]
    np.testing.assert_allclose(shares, [100 * float(stored[r].mean()) for r in rows], atol=0.051)

    text = _run(["explain", *common, "--format", "text", "--lang", "ja", "--out", str(tmp_path / "text")])
    assert text.count("各単語が見ている場所") == 3
    block = text.split("各単語が見ている場所", 3)[3].split("\n\n", 1)[0].splitlines()[1:]
    assert [line.split()[0] for line in block] == [*PROMPT.split(), "EOS"]
