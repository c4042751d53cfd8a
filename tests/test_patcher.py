"""The UNet patcher (patches as data on clones of one shared diffusers UNet) and FreeU, its first patch."""

import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

import checkpoint_fixtures as fx
from glassforge.cli import main
from glassforge.infotext import GenerationParams
from glassforge.models.freeu import PRESETS, FreeU, FreeUSpec, fourier_filter, parse_freeu, scale_backbone
from glassforge.models.loader import load_model
from glassforge.models.patcher import (
    AttentionInputPatch,
    AttentionObserver,
    AttentionOutputPatch,
    AttentionReplace,
    BlockArgs,
    BlockRef,
    CFGFunction,
    InputBlockPatch,
    OutputBlockPatch,
    PatchError,
    PostCFG,
    PreCFG,
    UNetPatcher,
    WeightPatch,
    scaled_dot_product_attention,
    unet_layout,
)
from glassforge.models.unet import UNetNetwork
from glassforge.pngfile import read_infotext
from glassforge.sampling.guidance import CFGDenoiser, CFGHooks
from glassforge.txt2img import Txt2ImgParams, txt2img

# ---------------------------------------------------------------- fixtures


def _tiny_unet(name: str):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**fx.TINY[name].unet)
    fx._randomize(unet, torch.Generator().manual_seed(3))
    return unet.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def xl():
    """A tiny SDXL-shaped UNet (three stages: FreeU's b1/s1 and b2/s2 blocks both exist) and inputs."""
    unet = _tiny_unet("sdxl")
    g = torch.Generator().manual_seed(0)
    inputs = {
        "sample": torch.randn(2, 4, 16, 8, generator=g),
        "timestep": torch.tensor([700.0, 250.0]),
        "encoder_hidden_states": torch.randn(2, 77, 96, generator=g),
        "added_cond_kwargs": {"text_embeds": torch.randn(2, 48, generator=g), "time_ids": torch.rand(2, 6)},
    }
    with torch.no_grad():
        base = unet(**inputs).sample
    return unet, inputs, base


def _run(target, inputs):
    with torch.no_grad():
        return target(**inputs).sample


def _snapshot(unet):
    return {k: (v.clone(), v.data_ptr()) for k, v in unet.state_dict().items()}


def _assert_pristine(unet, snapshot):
    """Same tensors (storage and bits), no hooks left, every attention layer on its default processor."""
    state = unet.state_dict()
    assert state.keys() == snapshot.keys()
    for k, (value, ptr) in snapshot.items():
        assert state[k].data_ptr() == ptr and torch.equal(state[k], value), k
    for name, m in unet.named_modules():
        assert not (m._forward_hooks or m._forward_pre_hooks), name
        if hasattr(m, "processor"):
            assert type(m.processor).__name__ == "AttnProcessor2_0", name


# ---------------------------------------------------------------- FreeU math


def _fft_oracle(x: np.ndarray, threshold: int, scale: float) -> np.ndarray:
    """The published FreeU filter, literally, in numpy: FFT, fftshift, box mask, ifftshift, IFFT, real."""
    freq = np.fft.fftshift(np.fft.fft2(x.astype(np.float64)), axes=(-2, -1))
    h, w = freq.shape[-2:]
    mask = np.ones((h, w))
    mask[h // 2 - threshold : h // 2 + threshold, w // 2 - threshold : w // 2 + threshold] = scale
    return np.fft.ifft2(np.fft.ifftshift(freq * mask, axes=(-2, -1))).real


@pytest.mark.parametrize("shape", [(8, 8), (7, 9), (6, 5), (4, 12), (2, 3), (1, 4), (32, 32)])
@pytest.mark.parametrize("scale", [0.2, 0.9, 1.7])
def test_fourier_filter_matches_numpy_fft(shape, scale):
    x = torch.randn(2, 3, *shape, generator=torch.Generator().manual_seed(1))
    got = fourier_filter(x, 1, scale)
    assert got.dtype == x.dtype and got.shape == x.shape
    np.testing.assert_allclose(got.numpy(), _fft_oracle(x.numpy(), 1, scale), atol=3e-6)
    if shape == (8, 8):  # a wider box
        np.testing.assert_allclose(
            fourier_filter(x, 2, scale).numpy(), _fft_oracle(x.numpy(), 2, scale), atol=3e-6
        )
    bf = fourier_filter(x.bfloat16(), 1, scale)  # computed in float32 for low-precision inputs
    assert bf.dtype == torch.bfloat16
    torch.testing.assert_close(bf.float(), got, atol=0.03, rtol=0.02)


def test_backbone_scaling_v1_and_v2():
    h = torch.randn(3, 8, 5, 4, generator=torch.Generator().manual_seed(2))
    v1 = scale_backbone(h, 1.4, 1)
    assert torch.equal(v1[:, :4], h[:, :4] * 1.4) and torch.equal(v1[:, 4:], h[:, 4:])
    v2 = scale_backbone(h, 1.4, 2).numpy()
    a = h.numpy().astype(np.float64)
    for i in range(3):  # per sample: channel-mean map, min-max normalised to [0, 1]
        mean = a[i].mean(0)
        m = (mean - mean.min()) / (mean.max() - mean.min())
        np.testing.assert_allclose(v2[i, :4], a[i, :4] * (1 + 0.4 * m), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(v2[i, 4:], h.numpy()[i, 4:])
    flat = torch.ones(1, 4, 3, 3)  # a constant mean map: factor 1, not Forge's 0/0
    assert torch.equal(scale_backbone(flat, 1.5, 2), flat)


def test_freeu_picks_blocks_by_backbone_channels_as_in_the_paper():
    # SD1.5 at full size (weightless): b1/s1 where h has 1280 = 4·320 channels, b2/s2 at 640.
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    with init_empty_weights():
        real = UNet2DConditionModel(**fx.REAL["sd1"].unet)
    layout = unet_layout(real)
    assert [c for _, _, c in layout.output_blocks] == [1280] * 7 + [640] * 3 + [320] * 2
    freeu = FreeU(*PRESETS["sd15"])
    expected = [(1.5, 0.9)] * 7 + [(1.6, 0.2)] * 3 + [None] * 2
    assert [freeu.factors(c, 320) for _, _, c in layout.output_blocks] == expected
    # Forge's attention block keys for SD1.5 (cross-attention in input 1,2,4,5,7,8, middle 0, output 3–11)
    cross = [s.key for s in layout.sites if s.kind == "cross"]
    assert cross == [("input", i, 0) for i in (1, 2, 4, 5, 7, 8)] + [("middle", 0, 0)] + [
        ("output", i, 0) for i in range(3, 12)
    ]
    assert len(layout.input_blocks) == 12 and layout.model_channels == 320


def test_freeu_identity_is_bit_identical_and_real_factors_change_the_output(xl):
    unet, inputs, base = xl
    before = _snapshot(unet)
    patcher = UNetPatcher(unet)
    assert torch.equal(_run(patcher, inputs), base)
    assert torch.equal(_run(patcher.with_patch(FreeU(1, 1, 1, 1).patch()), inputs), base)
    v2 = _run(patcher.with_patch(FreeU(1.3, 1.4, 0.9, 0.2).patch()), inputs)
    v1 = _run(patcher.with_patch(FreeU(1.3, 1.4, 0.9, 0.2, version=1).patch()), inputs)
    only_skip = _run(patcher.with_patch(FreeU(1, 1, 0.9, 0.2).patch()), inputs)
    for out in (v1, v2, only_skip):
        assert (out - base).abs().max() > 1e-3
    assert (v1 - v2).abs().max() > 1e-4
    _assert_pristine(unet, before)
    assert torch.equal(_run(unet, inputs), base)


# ---------------------------------------------------------------- clones and the shared module


def test_clones_share_the_module_and_differ_only_in_patches(xl):
    unet, inputs, base = xl
    root = UNetPatcher(unet)
    a = root.with_patch(FreeU(1.5, 1.6, 0.9, 0.2).patch())
    b = a.clone().with_patch(FreeU(1.1, 1.2, 1.0, 1.0, version=1).patch())
    assert root.patches == () and len(a.patches) == 1 and len(b.patches) == 2
    assert a.model is b.model is unet and b.without(OutputBlockPatch).patches == ()
    out_a, out_b = _run(a, inputs), _run(b, inputs)
    assert (out_a - out_b).abs().max() > 1e-4
    assert torch.equal(_run(root, inputs), base) and torch.equal(_run(a, inputs), out_a)
    assert a.infotext() == {
        "freeu_enabled": True,
        "freeu_b1": 1.5,
        "freeu_b2": 1.6,
        "freeu_s1": 0.9,
        "freeu_s2": 0.2,
    }
    assert "FreeU v2 (output_block)" in repr(a)


def test_an_exception_inside_a_patched_call_leaves_the_module_untouched(xl):
    unet, inputs, base = xl
    before = _snapshot(unet)

    def explode(h, skip, args):
        if args.block == BlockRef("output", 3):
            raise RuntimeError("boom")
        return h * 1.1, skip

    patched = UNetPatcher(unet).with_patch(
        AttentionObserver(lambda maps: None, kind="cross"),
        AttentionReplace(lambda q, k, v, a: v, kind="self"),
        AttentionInputPatch(lambda h, c, a: (h, c)),
        InputBlockPatch(lambda h, a: h * 0.9),
        WeightPatch("conv_in.weight", delta=torch.ones_like(unet.conv_in.weight)),
        OutputBlockPatch(explode),
    )
    with pytest.raises(RuntimeError, match="boom"):
        _run(patched, inputs)
    _assert_pristine(unet, before)
    assert torch.equal(_run(unet, inputs), base)


def test_clones_used_from_two_threads_give_their_own_results(xl):
    unet, inputs, base = xl
    freeu = UNetPatcher(unet).with_patch(FreeU(1.3, 1.4, 0.9, 0.2).patch())
    expected = {"base": base, "freeu": _run(freeu, inputs)}
    results: dict[str, list] = {"base": [], "freeu": []}

    def work(name, target):
        for _ in range(3):
            results[name].append(_run(target, inputs))

    threads = [threading.Thread(target=work, args=("base", UNetPatcher(unet))),
               threading.Thread(target=work, args=("freeu", freeu))]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, outs in results.items():
        assert len(outs) == 3 and all(torch.equal(o, expected[name]) for o in outs), name


# ---------------------------------------------------------------- attention hook points


def test_attention_observers_see_every_layer_with_its_query_resolution(xl):
    unet, inputs, base = xl
    seen = []
    patcher = UNetPatcher(unet)
    observing = patcher.with_patch(
        AttentionObserver(seen.append), AttentionObserver(seen.append, kind="self")
    )
    assert torch.equal(_run(observing, inputs), base)  # observing changes nothing
    sites = patcher.layout.sites
    assert [m.site for m in seen] == list(sites)  # every layer, once, in execution order
    assert len([s for s in sites if s.kind == "cross"]) == 11
    latent_h, latent_w = inputs["sample"].shape[-2:]
    for maps in seen:
        h, w = maps.query_shape
        stage = {"input": {3: 2, 5: 4}, "middle": {0: 4}, "output": {0: 4, 1: 4, 2: 2, 3: 2}}
        factor = stage[maps.site.block.stage][maps.site.block.index]
        assert (h, w) == (latent_h // factor, latent_w // factor), maps.block_name
        keys = 77 if maps.site.kind == "cross" else h * w
        assert maps.probs.shape == (2 * maps.site.heads, h * w, keys)
        torch.testing.assert_close(maps.probs.sum(-1), torch.ones(maps.probs.shape[:2]), atol=1e-5, rtol=0)
        assert maps.call.rows == range(2) and torch.equal(maps.call.timestep, inputs["timestep"])


def test_observed_maps_are_softmax_of_the_layers_own_q_and_k(xl):
    unet, inputs, base = xl
    site = ("output", 2, 0)
    observed, computed = [], []

    def explicit(q, k, v, args):  # softmax(q·kᵀ/√d) per head, from the projections the layer made
        b, heads = q.shape[0], args.site.heads
        qh, kh = (t.reshape(b, -1, heads, t.shape[-1] // heads).transpose(1, 2) for t in (q, k))
        weights = (qh @ kh.transpose(-1, -2) / qh.shape[-1] ** 0.5).softmax(-1)
        computed.append(weights.flatten(0, 1))
        return scaled_dot_product_attention(q, k, v, heads)

    patched = UNetPatcher(unet).with_patch(
        AttentionReplace(explicit, sites={site}), AttentionObserver(observed.append, sites={site})
    )
    assert torch.equal(_run(patched, inputs), base)  # the default op through the replacement hook
    (maps,) = observed
    torch.testing.assert_close(maps.probs, computed[0], atol=1e-6, rtol=1e-5)


def test_attention_replace_input_and_output_patches_change_only_where_attached(xl):
    unet, inputs, base = xl
    patcher = UNetPatcher(unet)
    calls = []

    def zero(q, k, v, args):
        calls.append(args.site.key)
        return torch.zeros_like(q)

    middle = _run(patcher.with_patch(AttentionReplace(zero, kind="self", sites={("middle", 0, 1)})), inputs)
    assert calls == [("middle", 0, 1)] and (middle - base).abs().max() > 1e-4
    no_text = _run(patcher.with_patch(AttentionInputPatch(lambda h, c, a: (h, c * 0))), inputs)
    assert (no_text - base).abs().max() > 1e-4
    same = _run(patcher.with_patch(AttentionOutputPatch(lambda out, a: out, kind="self")), inputs)
    assert torch.equal(same, base)
    louder = _run(patcher.with_patch(AttentionOutputPatch(lambda out, a: out * 2, kind="self")), inputs)
    assert (louder - base).abs().max() > 1e-4
    with pytest.raises(PatchError, match="'self' or 'cross'"):
        AttentionObserver(print, kind="both")


def test_block_patches_run_in_ldm_order_with_their_block(xl):
    unet, inputs, base = xl
    order = []

    def record_in(h, args: BlockArgs):
        order.append((str(args.block), h.shape[1]))
        return h

    def record_out(h, skip, args: BlockArgs):
        order.append((str(args.block), h.shape[1], skip.shape[1]))
        return h, skip

    patcher = UNetPatcher(unet)
    assert torch.equal(
        _run(patcher.with_patch(InputBlockPatch(record_in), OutputBlockPatch(record_out)), inputs), base
    )
    assert order[:12] == [  # tiny SDXL: widths 32, 64, 128; one layer per stage
        ("input.0", 32), ("input.1", 32), ("input.2", 32), ("input.3", 64), ("input.4", 64), ("input.5", 128),
        ("output.0", 128, 128), ("output.1", 128, 64), ("output.2", 128, 64),
        ("output.3", 64, 32), ("output.4", 64, 32), ("output.5", 32, 32),
    ] and len(order) == 12  # fmt: skip
    scaled = _run(
        patcher.with_patch(InputBlockPatch(lambda h, a: h * 2 if a.block.index == 0 else h)), inputs
    )
    assert (scaled - base).abs().max() > 1e-4


# ---------------------------------------------------------------- weight patches


def test_weight_patches_apply_to_copies_and_leave_shared_weights_bit_identical(xl):
    unet, inputs, base = xl
    before = _snapshot(unet)
    patcher = UNetPatcher(unet)
    key = "down_blocks.1.attentions.0.proj_in.weight"
    delta = torch.randn(unet.get_parameter(key).shape, generator=torch.Generator().manual_seed(5))
    lora = patcher.with_patch(WeightPatch(key, delta=delta, strength=0.5, label="lora"))
    out = _run(lora, inputs)
    assert (out - base).abs().max() > 1e-3 and torch.equal(_run(lora, inputs), out)  # cached copy reused
    _assert_pristine(unet, before)
    assert torch.equal(_run(patcher, inputs), base)
    zero = patcher.with_patch(WeightPatch(key, delta=torch.zeros_like(delta)))
    assert torch.equal(_run(zero, inputs), base)
    # delta then function, in order, on the same key
    both = patcher.with_patch(WeightPatch(key, delta=delta), WeightPatch(key, function=lambda w: w * 0))
    off = patcher.with_patch(WeightPatch(key, function=lambda w: w.mul_(0)))  # in place on its copy only
    assert torch.equal(_run(both, inputs), _run(off, inputs))
    _assert_pristine(unet, before)
    with pytest.raises(PatchError, match="not a UNet parameter"):
        patcher.with_patch(WeightPatch("conv_in.wieght", delta=delta))
    with pytest.raises(PatchError, match="delta shape"):
        patcher.with_patch(WeightPatch("conv_in.weight", delta=delta))


# ---------------------------------------------------------------- CFG-stage hooks


class Branches:
    """A denoiser whose answer says which conditioning it got: D = x + context (per row)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, sigma, context):
        self.calls += 1
        return x + context


def test_cfg_hooks_receive_cond_and_uncond_and_change_the_result():
    x, sigma = torch.zeros(2, 3), torch.ones(2)
    cond, uncond = {"context": torch.full((2, 3), 2.0)}, {"context": torch.full((2, 3), 1.0)}
    seen = []

    def post(args):
        seen.append(args)
        return args.denoised + 100

    guided = CFGDenoiser(Branches(), cond, uncond, 7.0, hooks=CFGHooks(post=(post,)))(x, sigma)
    (args,) = seen
    assert torch.equal(args.cond_denoised, torch.full((2, 3), 2.0))
    assert torch.equal(args.uncond_denoised, torch.full((2, 3), 1.0))
    assert torch.equal(args.denoised, torch.full((2, 3), 8.0)) and args.scale == 7.0  # 1 + 7·(2 − 1)
    assert torch.equal(guided, torch.full((2, 3), 108.0))

    combine = CFGDenoiser(Branches(), cond, uncond, 7.0, hooks=CFGHooks(combine=lambda a: a.uncond_denoised))
    assert torch.equal(combine(x, sigma), torch.full((2, 3), 1.0))

    inner = Branches()
    to_one = CFGDenoiser(inner, cond, uncond, 7.0, hooks=CFGHooks(pre=(lambda a: replace(a, scale=1.0),)))
    assert torch.equal(to_one(x, sigma), torch.full((2, 3), 2.0))
    assert inner.calls == 1  # at CFG 1 the uncond pass is skipped
    inner = Branches()
    needs_uncond = CFGHooks(post=(post,), disable_cfg1_optimization=True)
    CFGDenoiser(inner, cond, uncond, 1.0, hooks=needs_uncond)(x, sigma)
    assert inner.calls == 1 and seen[-1].uncond_denoised is not None  # one batched call with both branches


def test_patcher_supplies_cfg_hooks_and_txt2img_uses_them(tmp_path):
    path = fx.write_single_file(fx.build(fx.TINY["sd1"]), tmp_path / "tiny.safetensors")
    model = load_model(path)
    seen = []

    def post(args):
        seen.append((args.cond_denoised.shape, args.uncond_denoised.shape))
        return args.cond_denoised  # drop the guidance

    clone = UNetPatcher(model.unet).with_patch(
        PreCFG(lambda a: a),
        CFGFunction(lambda a: a.uncond_denoised),
        PostCFG(post, disable_cfg1_optimization=True),
    )
    hooks = clone.cfg_hooks()
    assert len(hooks.pre) == 1 and hooks.combine is not None and hooks.disable_cfg1_optimization
    assert UNetPatcher(model.unet).cfg_hooks() is None
    fast = {"steps": 2, "width": 32, "height": 32, "seed": 4}
    plain = txt2img(model, Txt2ImgParams("a red circle", **fast))
    hooked = txt2img(model, Txt2ImgParams("a red circle", **fast), unet=clone.without(PreCFG, CFGFunction))
    assert seen == [(torch.Size([1, 4, 16, 16]),) * 2] * 2  # each step: both branches
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(hooked.images[0]))
    net = UNetNetwork(clone)
    assert net.unet is model.unet and net.patcher is clone


# ---------------------------------------------------------------- --freeu and the infotext


def test_parse_freeu():
    assert parse_freeu("1.5,1.6,0.9,0.2") == FreeUSpec(2, (1.5, 1.6, 0.9, 0.2))
    assert parse_freeu("v1:1.3, 1.4, 0.9, 0.2") == FreeUSpec(1, (1.3, 1.4, 0.9, 0.2))
    assert parse_freeu("v2").resolve("sd1") == FreeU(1.5, 1.6, 0.9, 0.2)
    assert parse_freeu("V1").resolve("sdxl") == FreeU(1.3, 1.4, 0.9, 0.2, version=1)
    assert parse_freeu("v2").resolve("sd2") == FreeU(1.4, 1.6, 0.9, 0.2)
    assert parse_freeu("sd14").resolve("sdxl") == FreeU(1.3, 1.4, 0.9, 0.2)
    for bad in ("1,2,3", "a,b,c,d", "v3", "1,1,-1,1", "nan,1,1,1"):
        with pytest.raises(ValueError, match=r"b1,b2,s1,s2|≥ 0"):
            parse_freeu(bad)
    assert FreeU(1.3, 1.4, 0.9, 0.2, version=1).infotext()[-1] == ("freeu_version", 1)


def test_generate_with_freeu_writes_forge_keys_and_a_different_image(tmp_path, capsys):
    path = fx.write_single_file(fx.build(fx.TINY["sd1"]), tmp_path / "tiny.safetensors")
    common = ["generate", "a red circle", "--model", str(path), "--steps", "3", "--width", "32", "--height", "32",
              "--seed", "7", "--precision", "fp32"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert main([*common, "--freeu", "1.5,1.6,0.9,0.2", "--out", str(tmp_path / "freeu")]) == 0
    (plain,), (freeu,) = (sorted((tmp_path / d).glob("*.png")) for d in ("plain", "freeu"))
    text = read_infotext(freeu)
    assert "freeu_enabled: True, freeu_b1: 1.5, freeu_b2: 1.6, freeu_s1: 0.9, freeu_s2: 0.2" in text
    assert "freeu" not in read_infotext(plain)
    params = GenerationParams.from_infotext(text)
    assert params.extra["freeu_b2"] == "1.6" and params.seed == 7
    from PIL import Image

    assert not np.array_equal(np.asarray(Image.open(plain)), np.asarray(Image.open(freeu)))
    capsys.readouterr()
    assert main([*common, "--freeu", "1.5,1.6", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected b1,b2,s1,s2" in err[0]
